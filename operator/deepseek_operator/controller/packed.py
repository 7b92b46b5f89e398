"""JSON documents kept in memory as zlib-compressed compact JSON.

The operator holds a copy of every child, every DeepSeekDeployment and each one's last
render. As parsed dicts those copies take several times their JSON size in Python objects,
and each read copied them anyway; compressed compact JSON at zlib's fastest level takes a
fraction of that, and ``unpack`` makes a fresh copy in microseconds.
"""

from __future__ import annotations

import json
import zlib
from typing import Any


def pack_text(text: str) -> bytes:
    """Compact JSON text (``json.dumps(..., separators=(",", ":"))``) compressed."""
    return zlib.compress(text.encode(), 1)


def pack(document: Any) -> bytes:
    """``document`` (JSON-serialisable: dicts, lists, str, numbers, bool, None) compressed.
    Raises TypeError or ValueError for what JSON cannot hold."""
    return pack_text(json.dumps(document, separators=(",", ":")))


def unpack(packed: bytes) -> Any:
    """A fresh copy of what ``pack`` or ``pack_text`` packed."""
    return json.loads(zlib.decompress(packed))
