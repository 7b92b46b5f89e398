"""A thread-safe lookup of API resources for the kubernetes client's DynamicClient.

The DynamicClient's discovery cache is not safe to share between threads (two concurrent
lookups can corrupt it), and every lookup of a kind the server does not serve (a
LeaderWorkerSet without its CRD) invalidates the cache and fetches discovery again. kopf
runs sync handlers in a thread pool, so lookups go through this cache: one lock, found
resources kept until ``recheck`` or ``forget``, missing ones asked again at most every
``recheck_seconds`` (a CRD installed later is picked up by the next reconcile after that,
at the latest the safety resync). A found kind stays found, even once its CRD is deleted,
until one of those two drops it (with the discovery cache): the operator calls ``recheck``
on every event of a child kind's CRD and ``forget`` when an apply of the kind answers 404.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError


@dataclass
class Resources:
    """Resolve (apiVersion, kind) to a DynamicClient Resource, or None when not served."""

    api: ApiClient
    recheck_seconds: float = 20.0
    _dynamic: DynamicClient | None = None
    _found: dict[tuple[str, str], Any] = field(default_factory=dict)
    _missing_since: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, api_version: str, kind: str) -> Any | None:
        """The Resource for this kind, or None when the API server does not serve it."""
        key = (api_version, kind)
        with self._lock:
            if key in self._found:
                return self._found[key]
            missing = self._missing_since.get(key)
            if missing is not None and time.monotonic() - missing < self.recheck_seconds:
                return None
            if self._dynamic is None:
                self._dynamic = DynamicClient(self.api)  # type: ignore[no-untyped-call]
            try:
                resource = self._dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                self._missing_since[key] = time.monotonic()
                return None
            self._found[key] = resource
            self._missing_since.pop(key, None)
            return resource

    def recheck(self) -> None:
        """Forget every lookup, found or missing, with the discovery cache, so the next
        lookup asks discovery again (a CRD was just installed, changed or deleted)."""
        with self._lock:
            self._missing_since.clear()
            self._found.clear()
            self._invalidate()

    def forget(self, api_version: str, kind: str) -> None:
        """Forget that this kind was found, with the discovery cache, so the next lookup
        asks discovery again (the API answered 404 for the kind: its CRD may be gone)."""
        with self._lock:
            if self._found.pop((api_version, kind), None) is not None:
                self._invalidate()

    def _invalidate(self) -> None:
        if self._dynamic is not None:
            self._dynamic.resources.invalidate_cache()

    def require(self, api_version: str, kind: str) -> Any:
        """Like ``get``, but raises ResourceNotFoundError naming the kind when not served."""
        resource = self.get(api_version, kind)
        if resource is None:
            raise ResourceNotFoundError(f"the API server does not serve {kind} "
                                        f"({api_version}); is its CRD installed?")
        return resource
