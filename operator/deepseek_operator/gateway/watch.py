"""The DeepSeekDeployments in reach, kept current by a list + watch on a background thread.

The kubernetes client is synchronous, so the watch runs on its own thread and hands every
change to the event loop (`loop.call_soon_threadsafe`), which alone touches the route
table. A watch that expires (HTTP 410 Gone) or breaks lists again and replaces the whole
table, so a deletion missed while the watch was down is not kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch

from ..api import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

WATCH_SECONDS = 300
RETRY_SECONDS = 2.0


class DeploymentWatch:
    """List then watch DeepSeekDeployments in `namespace` ("" = all namespaces).

    `on_list(objects)` gets every object after each (re)list, `on_event(type, object)`
    each ADDED/MODIFIED/DELETED after it; both are called on the watch thread. `synced`
    is set once the first list succeeded.
    """

    def __init__(self, api: client.ApiClient, namespace: str,
                 on_list: Callable[[list[dict[str, Any]]], None],
                 on_event: Callable[[str, dict[str, Any]], None]) -> None:
        self._api = client.CustomObjectsApi(api)
        self.namespace = namespace
        self._on_list = on_list
        self._on_event = on_event
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name="dsd-watch", daemon=True)

    def start(self) -> None:
        """Start the watch thread."""
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Ask the thread to stop and wait up to `timeout_seconds` for it."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]
        self._thread.join(timeout_seconds)

    def _list(self, **kwargs: Any) -> Any:
        if self.namespace:
            return self._api.list_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                           PLURAL, **kwargs)
        return self._api.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                listed = self._list(_request_timeout=30)
                self._on_list(list(listed.get("items") or []))
                self.synced.set()
                self._watch_from(str(listed["metadata"]["resourceVersion"]))
            except client.ApiException as error:
                if error.status != 410:
                    log.warning("DeepSeekDeployment watch failed: HTTP %s %s; listing again "
                                "in %.0f s", error.status, error.reason, RETRY_SECONDS)
                    self._stop.wait(RETRY_SECONDS)
            except Exception as error:  # connection errors: keep trying, never die
                log.warning("DeepSeekDeployment watch failed: %s: %s; listing again in "
                            "%.0f s", type(error).__name__, error, RETRY_SECONDS)
                self._stop.wait(RETRY_SECONDS)

    def _watch_from(self, resource_version: str) -> None:
        """Stream events until the server ends the watch; raises ApiException(410) when
        the resource version expired."""
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        events = self._watch.stream(  # type: ignore[no-untyped-call]
            self._list, resource_version=resource_version, timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True, _request_timeout=WATCH_SECONDS + 30)
        for event in events:
            if self._stop.is_set():
                return
            kind = event.get("type")
            obj = event.get("object")
            if kind in ("ADDED", "MODIFIED", "DELETED") and isinstance(obj, dict):
                self._on_event(kind, obj)
