"""The cache's safety net: every ``interval_seconds``, list each child kind once,
cluster-wide, and purge what a watch never reported gone.

kopf restarts a watch that expired (410 Gone) with a fresh list, but sends no DELETED
event for an object deleted while the watch was down; the cache would keep it, and the
operator would not recreate that child. One list per kind per interval (not per
DeepSeekDeployment) finds such objects whatever the number of deployments. The owners
that lost a child are reconciled at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes.client import ApiException

from deepseek_operator.controller.cache import Owner
from deepseek_operator.controller.cluster import Cluster

log = logging.getLogger(__name__)


@dataclass
class Relister:
    """Runs ``cluster.relist()`` every ``interval_seconds`` on a daemon thread and calls
    ``reconcile(namespace, name)`` for each owner that lost a child."""

    cluster: Cluster
    reconcile: Callable[[str, str], object]
    interval_seconds: float = 600.0
    namespaces: tuple[str, ...] = ()  # the watched ones; empty: all (Cluster.relist)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="relister", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread; returns without waiting for a list in flight."""
        self._stop.set()

    def run_once(self) -> set[Owner]:
        """One relist; returns the owners it reconciled. API errors are logged (the next
        interval tries again)."""
        try:
            lost = self.cluster.relist(self.namespaces)
        except ApiException as exc:
            log.warning("relisting the children failed (%s %s); next try in %.0f s",
                        exc.status, exc.reason, self.interval_seconds)
            return set()
        for namespace, name in sorted(lost):
            log.info("%s/%s: a child was deleted while a watch was down; reconciling",
                     namespace, name)
            self.reconcile(namespace, name)
        return lost

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.run_once()
