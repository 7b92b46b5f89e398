"""Coalesce bursts of triggers into one reconcile per DeepSeekDeployment, and retry the
ones that fail.

Creating one DeepSeekDeployment makes about a dozen child events within a second or two
(each pod, Job, claim and Deployment moves through several states). Reconciling on each
one reads every child again. Instead, the first event of a burst schedules one reconcile
``delay_seconds`` later and later events of the burst ride on it. Scheduled reconciles run
on a few worker threads (``Scheduler``), however many are due. A reconcile that raises
(an API hiccup, a conflict) is scheduled again ``retry_seconds`` later, until it succeeds,
in memory: nothing is written to the object to remember it.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deepseek_operator.controller.cluster import ApplyError

log = logging.getLogger(__name__)

Key = tuple[str, str]

RECONCILE_WORKERS = 4
"""Threads that run debounced reconciles (controller-runtime's MaxConcurrentReconciles).
A thread per due reconcile (threading.Timer, before) ran hundreds at once when a thousand
deployments started together: they fought over the GIL, overflowed the API client's
connection pool (a new TLS handshake per discarded connection) and each left memory in
its own malloc arena. Four keep the apiserver busy while one waits on a response."""


class Scheduler:
    """Runs callables after a delay: one timer thread keeps them in due order, and
    ``workers`` daemon threads run the due ones (a queue, so a slow reconcile delays the
    next ones instead of adding threads). Threads start at the first ``call_later``.

    Hand-written rather than ``sched`` plus ``ThreadPoolExecutor``: ``sched.run`` blocks
    its caller and cannot be woken for an earlier entry, and the executor's threads are
    joined at interpreter exit, which would hold the operator's shutdown behind queued
    reconciles."""

    def __init__(self, workers: int = RECONCILE_WORKERS) -> None:
        self.workers = workers
        self._due: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._ready: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._started = False

    def call_later(self, delay_seconds: float, action: Callable[[], object]) -> None:
        """Run ``action()`` on a worker thread ``delay_seconds`` from now (or later, when
        every worker is busy). Exceptions it raises are logged."""
        with self._wake:
            if not self._started:
                self._started = True
                threading.Thread(target=self._timer, name="debounce-timer",
                                 daemon=True).start()
                for number in range(self.workers):
                    threading.Thread(target=self._worker, name=f"reconcile-{number}",
                                     daemon=True).start()
            heapq.heappush(self._due, (time.monotonic() + max(0.0, delay_seconds),
                                       next(self._order), action))
            self._wake.notify()

    def _timer(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, action = heapq.heappop(self._due)
            self._ready.put(action)

    def _worker(self) -> None:
        while True:
            action = self._ready.get()
            try:
                action()
            except Exception:  # the worker must live on; Debouncer actions catch their own
                log.exception("a scheduled action failed")


_SHARED = Scheduler()


@dataclass
class Debouncer:
    """Calls ``action(namespace, name)`` once per burst of ``request`` calls for a key.

    ``delay_seconds``: how long a burst may last; the action runs on one of the
    ``scheduler``'s worker threads (by default one Scheduler shared by every Debouncer,
    so RECONCILE_WORKERS bounds the reconciles they run at once). ``retry_seconds``: when
    the action raises, it is logged and the key requested again this long after (None:
    only logged; the next trigger tries again).
    """

    action: Callable[[str, str], object]
    delay_seconds: float = 0.5
    retry_seconds: float | None = None
    scheduler: Scheduler = field(default=_SHARED, repr=False)
    _pending: set[Key] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, namespace: str, name: str, delay_seconds: float | None = None) -> bool:
        """Schedule the action for this key, ``delay_seconds`` (default: the Debouncer's)
        from now, unless it is already scheduled; True if new."""
        key = (namespace, name)
        with self._lock:
            if key in self._pending:
                return False
            self._pending.add(key)
        # The action runs in the caller's context: kopf keeps its event queue and settings
        # in context variables, which a bare timer thread would not see.
        context = contextvars.copy_context()
        delay = self.delay_seconds if delay_seconds is None else delay_seconds
        self.scheduler.call_later(delay, lambda: context.run(self._fire, key))
        return True

    def failed(self, namespace: str, name: str, exc: Exception) -> None:
        """Report a failed action for this key (also one run elsewhere, e.g. in a kopf
        handler) and schedule its retry."""
        if isinstance(exc, ApplyError):  # the API's answer says it all: no traceback
            log.warning("reconcile of %s/%s failed, retrying: %s", namespace, name, exc)
        else:
            log.error("reconcile of %s/%s failed, retrying", namespace, name, exc_info=exc)
        if self.retry_seconds is not None:
            self.request(namespace, name, self.retry_seconds)

    def _fire(self, key: Key) -> None:
        with self._lock:
            self._pending.discard(key)
        try:
            self.action(*key)
        except Exception as exc:  # reported and retried, never lost
            self.failed(*key, exc)
