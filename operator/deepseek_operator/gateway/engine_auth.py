"""The engine's API key: read from the Secret that spec.engine.apiKeySecret names, kept for
a short time, sent to the engine as `Authorization: Bearer <key>`.

The caller's own Authorization header (its Kubernetes token) is never forwarded: the
gateway sends the engine only the headers it builds (server.py), plus this one.

- Read with `get` on the one Secret, which the Role `<name>.engine-api-key` the operator
  renders allows and nothing more (render/engine_key_access.py), on the gateway's review
  thread pool, one read per Secret at a time however many requests wait for it.
- Kept `ttl_seconds` (default 30): a rotated key is picked up within that time (the
  engine itself reads its key when its container starts, so rotation needs the engine
  pods restarted too). An engine answering 401 drops the cached key, so the next request
  reads the Secret again.
- Fails closed: a Secret that is missing, lacks the key, or cannot be read raises
  `EngineKeyUnavailable`, and the request is answered 503 and audited, never forwarded
  without the key. A read that fails for another reason than 404 or 403 may still use a
  key read less than `stale_seconds` (default 300) ago: the apiserver being briefly away
  does not stop traffic the key already authorized.
- The key is never logged, never put in a message or an audit line, and never kept
  beyond this cache.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS: Final = 30.0
DEFAULT_STALE_SECONDS: Final = 300.0


@dataclass(frozen=True)
class KeyRef:
    """Where a deployment's engine API key is: Secret `name`, data key `key`, in the
    deployment's namespace."""

    name: str
    key: str


class SecretMissing(Exception):
    """The Secret does not exist or the gateway may not read it (HTTP 404 or 403): never
    answered from a cached key."""


class EngineKeyUnavailable(Exception):
    """The engine's API key cannot be had now; the message names the Secret and the
    cause, never a key."""


SecretReader = Callable[[str, str], Mapping[str, str]]
"""`(namespace, name) -> data` of a Secret (values base64-encoded, as the API sends them).
Raises SecretMissing for 404/403, anything else for other failures. Called on a thread."""


@dataclass
class _Entry:
    data: Mapping[str, str]
    read_at: float  # monotonic


class EngineKeys:
    """Engine API keys by (namespace, Secret name), read through `reader` on `executor`.

    Not thread-safe: used from the event loop only.
    """

    def __init__(self, reader: SecretReader, executor: Executor, *,
                 ttl_seconds: float = DEFAULT_TTL_SECONDS,
                 stale_seconds: float = DEFAULT_STALE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._reader = reader
        self._executor = executor
        self._ttl = ttl_seconds
        self._stale = stale_seconds
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._reads: dict[tuple[str, str], asyncio.Future[Mapping[str, str]]] = {}

    async def headers(self, namespace: str, ref: KeyRef | None) -> dict[str, str]:
        """`{"Authorization": "Bearer <key>"}` for a deployment in `namespace` whose key is
        at `ref`; `{}` when it has none (ref None).

        Raises EngineKeyUnavailable when the Secret is missing, lacks `ref.key`, holds an
        empty or undecodable value, or cannot be read (see the module docstring).
        """
        if ref is None:
            return {}
        data = await self._data(namespace, ref.name)
        where = f"Secret {namespace}/{ref.name}"
        if ref.key not in data:
            raise EngineKeyUnavailable(f"{where} has no key {ref.key!r} "
                                       "(spec.engine.apiKeySecret.key)")
        try:
            key = base64.b64decode(data[ref.key], validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            raise EngineKeyUnavailable(f"{where}: key {ref.key!r} is not UTF-8 text") from None
        if not key or any(c in key for c in "\r\n"):
            raise EngineKeyUnavailable(f"{where}: key {ref.key!r} is empty or spans lines")
        return {"Authorization": f"Bearer {key}"}

    def forget(self, namespace: str, name: str) -> None:
        """Drop the cached Secret `namespace/name` (the engine refused its key)."""
        self._entries.pop((namespace, name), None)

    async def _data(self, namespace: str, name: str) -> Mapping[str, str]:
        slot = (namespace, name)
        now = self._clock()
        entry = self._entries.get(slot)
        if entry is not None and now - entry.read_at < self._ttl:
            return entry.data
        try:
            data = await self._read(slot)
        except SecretMissing:
            self._entries.pop(slot, None)
            raise EngineKeyUnavailable(
                f"Secret {namespace}/{name} (spec.engine.apiKeySecret) does not exist or "
                "the gateway may not read it") from None
        except Exception as error:
            if entry is not None and now - entry.read_at < self._stale:
                log.warning("reading Secret %s/%s failed (%s); using the key read %.0f s ago",
                            namespace, name, type(error).__name__, now - entry.read_at)
                return entry.data
            raise EngineKeyUnavailable(f"Secret {namespace}/{name} cannot be read now "
                                       f"({type(error).__name__})") from None
        self._entries[slot] = _Entry(data, self._clock())
        return data

    async def _read(self, slot: tuple[str, str]) -> Mapping[str, str]:
        """One read of the Secret at a time; concurrent callers share its result."""
        pending = self._reads.get(slot)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = asyncio.ensure_future(
                loop.run_in_executor(self._executor, self._reader, *slot))
            self._reads[slot] = pending
            pending.add_done_callback(lambda _: self._reads.pop(slot, None))
        return await asyncio.shield(pending)


def kube_secret_reader(api: Any) -> SecretReader:
    """A SecretReader over a kubernetes `ApiClient` (`get` on one Secret; 15 s timeout)."""
    from kubernetes import client

    core = client.CoreV1Api(api)

    def read(namespace: str, name: str) -> Mapping[str, str]:
        try:
            secret = core.read_namespaced_secret(name, namespace, _request_timeout=15)
        except client.ApiException as error:
            if error.status in (403, 404):
                raise SecretMissing(f"HTTP {error.status}") from None
            raise RuntimeError(f"HTTP {error.status}") from None  # never the response body
        return {key: str(value) for key, value in (secret.data or {}).items()}

    return read
