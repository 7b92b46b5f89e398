"""A bounded cache with a time-to-live, for authentication and authorization decisions.

Pure (no I/O); the clock is passed in so tests can drive it. Not thread-safe: the gateway
uses it from its event loop only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """At most `max_size` entries, each valid for `ttl_seconds` after it was put.

    Entries are kept in the order they were put, which (one TTL for all) is the order they
    expire in: a put first drops expired entries from the front, then, when still full, the
    oldest entries. Every operation is O(1) amortized.
    """

    def __init__(self, ttl_seconds: float, max_size: int) -> None:
        """`ttl_seconds` >= 0 (0: nothing is kept), `max_size` >= 0 entries.

        Raises:
            ValueError: a negative TTL or size.
        """
        if ttl_seconds < 0 or max_size < 0:
            raise ValueError(f"ttl_seconds and max_size must be >= 0, got {ttl_seconds}, "
                             f"{max_size}")
        self.ttl_seconds = ttl_seconds
        self.max_size = max_size
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        """The value put for `key` less than `ttl_seconds` before `now` (seconds, monotonic
        clock), else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if now >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V, now: float) -> None:
        """Keep `value` for `key` until `now + ttl_seconds`; drop expired entries, then the
        oldest ones, to stay within `max_size`."""
        if self.ttl_seconds == 0 or self.max_size == 0:
            return
        self._entries.pop(key, None)
        self._entries[key] = (now + self.ttl_seconds, value)
        while self._entries:
            oldest_key, (expires, _) = next(iter(self._entries.items()))
            if now < expires and len(self._entries) <= self.max_size:
                break
            del self._entries[oldest_key]
