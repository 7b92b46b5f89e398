"""The local apiserver's audit log, read back by the e2e tests and benchmarks.

One JSON object per line. Lines are split at newline characters only: a request body
may carry any character, and ``str.splitlines`` would also split inside a JSON string at
U+2028, U+0085 and friends (which JSON allows unescaped).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from e2e.cluster import controlplane, paths


def operator_entries(since: str = "") -> Iterator[dict[str, Any]]:
    """The operator's completed requests (stage ResponseComplete) received at or after
    ``since`` (RFC 3339, as the log writes it; "" for all), oldest file first (the
    rotated one, then the current)."""
    state = paths.state_dir()
    for path in [*sorted(state.glob("audit-*.log")), state / "audit.log"]:
        if not path.exists():
            continue
        with path.open(encoding="utf-8", errors="replace", newline="\n") as lines:
            for line in lines:
                if controlplane.OPERATOR_USER not in line:
                    continue
                entry = json.loads(line)
                if (entry["user"]["username"] == controlplane.OPERATOR_USER
                        and entry["stage"] == "ResponseComplete"
                        and entry["requestReceivedTimestamp"] >= since):
                    yield entry


def resource_of(entry: dict[str, Any]) -> str:
    """``resource`` or ``resource/subresource`` of an audit entry ("" for none)."""
    ref = entry.get("objectRef") or {}
    resource = str(ref.get("resource", ""))
    return f"{resource}/{ref['subresource']}" if ref.get("subresource") else resource
