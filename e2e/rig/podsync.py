"""Pod sync: one stand-in per Ready pod of a DeepSeekDeployment, kept up to date by polling.

kwok makes the workload's pods Running and Ready without running anything, so nothing
would export engine metrics for them. ``PodSync`` lists the serving pods of one
DeepSeekDeployment (label selector ``deepseek_operator.render.pod_selector(name)``) every
``period_s`` seconds and calls ``StandInFleet.sync`` with the Ready ones, so Prometheus
scrapes exactly one stand-in per Ready pod, labelled with the real pod's namespace and
name: what the operator's default query (``render.default_qps_query``) filters on.

A pod counts while its ``Ready`` condition is ``True`` and it has no
``deletionTimestamp``: the rule Kubernetes uses to take a pod out of a Service's
endpoints, so the stand-ins get traffic exactly when the real pods would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import urllib3.exceptions
from kubernetes import client
from kubernetes.client import ApiException

from deepseek_operator.render import pod_selector
from e2e.rig.fleet import StandInFleet
from e2e.rig.prometheus import INSTANCE_LABEL, NAMESPACE_LABEL

# List failures worth another try at the next poll: the API server answered with an
# error or the connection broke (a loaded 2-core machine has both now and then).
TRANSIENT_ERRORS = (ApiException, urllib3.exceptions.HTTPError)


@dataclass(frozen=True)
class PodSetChange:
    """The set of Ready pods changed: at ``time`` (``time.monotonic()`` seconds, taken
    after the fleet matched it) the stand-ins were exactly ``pods`` (sorted)."""

    time: float
    pods: tuple[str, ...]


class PodSync:
    """Polls the serving pods of DeepSeekDeployment ``namespace/name`` and keeps ``fleet``
    at one stand-in per Ready pod. Use as a context manager, or ``start`` and ``stop``.

    Stand-ins carry the target labels ``NAMESPACE_LABEL`` (the pod's namespace),
    ``POD_LABEL`` (its name, added by the fleet) and ``INSTANCE_LABEL`` (``name``).
    ``stop`` leaves the stand-ins running; the fleet's owner stops them.
    """

    def __init__(self, api: client.ApiClient, fleet: StandInFleet, namespace: str, name: str,
                 *, period_s: float = 0.5) -> None:
        """Prepare a sync (nothing runs before ``start``).

        Raises:
            ValueError: ``period_s`` is not > 0.
        """
        if period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.fleet = fleet
        self.namespace = namespace
        self.name = name
        self.period_s = period_s
        self._core = client.CoreV1Api(api)
        self._selector = pod_selector(name)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._changes: list[PodSetChange] = []
        self._transient: list[str] = []
        self._failure: BaseException | None = None

    def sync_once(self) -> tuple[str, ...]:
        """List the Ready pods now and make the fleet match; return their names, sorted.

        Raises:
            ApiException, urllib3.exceptions.HTTPError: listing the pods failed.
            StandInError: a stand-in did not start or has exited (see ``StandInFleet.sync``).
        """
        pods = self._core.list_namespaced_pod(self.namespace, label_selector=self._selector)
        ready = sorted(str(pod.metadata.name) for pod in pods.items if _serving(pod))
        self.fleet.sync({pod: self._labels() for pod in ready})
        current = tuple(ready)
        with self._lock:
            if not self._changes or self._changes[-1].pods != current:
                self._changes.append(PodSetChange(time.monotonic(), current))
        return current

    def start(self) -> None:
        """Sync once in the caller's thread (so errors surface at once), then keep syncing
        every ``period_s`` seconds in a background thread.

        Raises:
            RuntimeError: already started.
            What ``sync_once`` raises, from the first sync.
        """
        if self._thread is not None:
            raise RuntimeError("pod sync already started")
        self.sync_once()
        self._thread = threading.Thread(target=self._run, name=f"podsync-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the thread; safe to call twice.

        Raises:
            The error that ended the background thread early, if one did.
        """
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self.check()

    def check(self) -> None:
        """Raise the error that ended the background thread, if any (else do nothing)."""
        with self._lock:
            failure = self._failure
        if failure is not None:
            raise RuntimeError(f"pod sync of {self.namespace}/{self.name} failed: "
                               f"{failure}") from failure

    def changes(self) -> list[PodSetChange]:
        """Every change of the Ready set seen so far, oldest first (a copy)."""
        with self._lock:
            return list(self._changes)

    def transient_errors(self) -> list[str]:
        """Messages of list calls that failed and were retried at the next poll."""
        with self._lock:
            return list(self._transient)

    def __enter__(self) -> PodSync:
        """Start and return self."""
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Stop; a background failure is raised unless the block already raised."""
        if error is None:
            self.stop()
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _labels(self) -> Mapping[str, str]:
        return {NAMESPACE_LABEL: self.namespace, INSTANCE_LABEL: self.name}

    def _run(self) -> None:
        while not self._stopping.wait(self.period_s):
            try:
                self.sync_once()
            except TRANSIENT_ERRORS as error:
                with self._lock:
                    self._transient.append(f"{type(error).__name__}: {error}")
            except Exception as error:  # reported by check()/stop(); polling ends
                with self._lock:
                    self._failure = error
                return


def _serving(pod: client.V1Pod) -> bool:
    """Ready and not being deleted."""
    if pod.metadata.deletion_timestamp is not None:
        return False
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)
