"""The objects the gateway follows, kept current by a list + watch on background threads:
the DeepSeekDeployments in reach and their gateway policy ConfigMaps.

The kubernetes client is synchronous, so each watch runs on its own thread and hands every
change to the event loop (`loop.call_soon_threadsafe`), which alone touches the gateway's
tables. A watch that expires (HTTP 410 Gone) or breaks lists again and replaces the whole
table, so a deletion missed while the watch was down is not kept. Failures back off from
2 s to 60 s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch

from ..api import GROUP, PLURAL, VERSION
from .policy import POLICY_SELECTOR

log = logging.getLogger(__name__)

WATCH_SECONDS = 300
RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 60.0

ListFunction = Callable[..., Any]


class ObjectWatch:
    """List then watch with `list_objects` (a kubernetes client list function taking the
    usual keyword arguments), `what` naming the objects in logs.

    `on_list(objects)` gets every object (as dicts) after each (re)list, `on_event(type,
    object)` each ADDED/MODIFIED/DELETED after it; both are called on the watch thread.
    `synced` is set once the first list succeeded. With `empty_on_first_failure`, a first
    list that fails calls `on_list([])` once, so a table that is optional (the policies,
    when the gateway may not read ConfigMaps) does not hold up readiness.
    """

    def __init__(self, api: client.ApiClient, what: str, list_objects: ListFunction,
                 on_list: Callable[[list[dict[str, Any]]], None],
                 on_event: Callable[[str, dict[str, Any]], None], *,
                 empty_on_first_failure: bool = False) -> None:
        self._api = api
        self.what = what
        self._list_objects = list_objects
        self._on_list = on_list
        self._on_event = on_event
        self._empty_on_first_failure = empty_on_first_failure
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{what}", daemon=True)

    def start(self) -> None:
        """Start the watch thread."""
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Ask the thread to stop and wait up to `timeout_seconds` for it."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]
        self._thread.join(timeout_seconds)

    def _plain(self, obj: Any) -> dict[str, Any]:
        """A client model object (typed APIs) as the dict the API sent."""
        if isinstance(obj, dict):
            return obj
        plain: dict[str, Any] = self._api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return plain

    def _run(self) -> None:
        delay = RETRY_SECONDS
        failed_once = False
        while not self._stop.is_set():
            try:
                listed = self._plain(self._list_objects(_request_timeout=30))
                self._on_list([self._plain(item) for item in listed.get("items") or []])
                self.synced.set()
                delay = RETRY_SECONDS
                self._watch_from(str(listed["metadata"]["resourceVersion"]))
                continue
            except client.ApiException as error:
                if error.status == 410:
                    continue
                reason = f"HTTP {error.status} {error.reason}"
            except Exception as error:  # connection errors: keep trying, never die
                reason = f"{type(error).__name__}: {error}"
            log.warning("%s watch failed: %s; listing again in %.0f s", self.what, reason,
                        delay)
            if self._empty_on_first_failure and not failed_once and not self.synced.is_set():
                self._on_list([])
            failed_once = True
            self._stop.wait(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    def _watch_from(self, resource_version: str) -> None:
        """Stream events until the server ends the watch; raises ApiException(410) when
        the resource version expired."""
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        events = self._watch.stream(  # type: ignore[no-untyped-call]
            self._list_objects, resource_version=resource_version,
            timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True,
            _request_timeout=WATCH_SECONDS + 30)
        for event in events:
            if self._stop.is_set():
                return
            kind = event.get("type")
            obj = event.get("object")
            if kind in ("ADDED", "MODIFIED", "DELETED") and obj is not None:
                self._on_event(kind, self._plain(obj))


def deployment_watch(api: client.ApiClient, namespace: str,
                     on_list: Callable[[list[dict[str, Any]]], None],
                     on_event: Callable[[str, dict[str, Any]], None]) -> ObjectWatch:
    """DeepSeekDeployments in `namespace` ("" = all namespaces)."""
    custom = client.CustomObjectsApi(api)

    def list_objects(**kwargs: Any) -> Any:
        if namespace:
            return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                        **kwargs)
        return custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)

    return ObjectWatch(api, "DeepSeekDeployment", list_objects, on_list, on_event)


def policy_watch(api: client.ApiClient, namespace: str,
                 on_list: Callable[[list[dict[str, Any]]], None],
                 on_event: Callable[[str, dict[str, Any]], None]) -> ObjectWatch:
    """The gateway policy ConfigMaps in `namespace` ("" = all), by their labels."""
    core = client.CoreV1Api(api)

    def list_objects(**kwargs: Any) -> Any:
        if namespace:
            return core.list_namespaced_config_map(namespace, label_selector=POLICY_SELECTOR,
                                                   **kwargs)
        return core.list_config_map_for_all_namespaces(label_selector=POLICY_SELECTOR,
                                                       **kwargs)

    return ObjectWatch(api, "gateway policy ConfigMap", list_objects, on_list, on_event,
                       empty_on_first_failure=True)
