"""Coalesce bursts of triggers into one reconcile per DeepSeekDeployment, and retry the
ones that fail.

Creating one DeepSeekDeployment makes about a dozen child events within a second or two
(each pod, Job, claim and Deployment moves through several states). Reconciling on each
one reads every child again. Instead, the first event of a burst schedules one reconcile
``delay_seconds`` later and later events of the burst ride on it. A reconcile that raises
(an API hiccup, a conflict) is scheduled again ``retry_seconds`` later, until it succeeds,
in memory: nothing is written to the object to remember it.

One scheduler thread keeps the due times and hands due actions to a small pool of worker
threads: a timer thread per request (what ``threading.Timer`` does) meant hundreds of
threads with a thousand deployments, and the operator's memory grew with them.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from deepseek_operator.controller.cluster import ApplyError

log = logging.getLogger(__name__)

Key = tuple[str, str]
_Due = tuple[float, int, Key, contextvars.Context]  # (monotonic due time, order, key, context)


@dataclass
class Debouncer:
    """Calls ``action(namespace, name)`` once per burst of ``request`` calls for a key.

    ``delay_seconds``: how long a burst may last. ``retry_seconds``: when the action raises,
    it is logged and the key requested again this long after (None: only logged; the next
    trigger tries again). ``workers``: how many actions run at once (threads).
    """

    action: Callable[[str, str], object]
    delay_seconds: float = 0.5
    retry_seconds: float | None = None
    workers: int = 4
    _pending: set[Key] = field(default_factory=set)
    _due: list[_Due] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _wakeup: threading.Condition = field(default_factory=threading.Condition)
    _scheduler: threading.Thread | None = None
    _pool: ThreadPoolExecutor | None = None

    def request(self, namespace: str, name: str, delay_seconds: float | None = None) -> bool:
        """Schedule the action for this key, ``delay_seconds`` (default: the Debouncer's)
        from now, unless it is already scheduled; True if new."""
        key = (namespace, name)
        delay = self.delay_seconds if delay_seconds is None else delay_seconds
        # The action runs in the caller's context: kopf keeps its event queue and settings
        # in context variables, which a bare worker thread would not see.
        context = contextvars.copy_context()
        with self._wakeup:
            if key in self._pending:
                return False
            self._pending.add(key)
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), key, context))
            if self._scheduler is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="reconcile")
                self._scheduler = threading.Thread(target=self._schedule, daemon=True,
                                                   name="debouncer")
                self._scheduler.start()
            self._wakeup.notify()
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

    def _schedule(self) -> None:
        """The scheduler thread: hand each due key to the pool, in due order."""
        while True:
            with self._wakeup:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wakeup.wait(self._due[0][0] - time.monotonic() if self._due
                                      else None)
                _, _, key, context = heapq.heappop(self._due)
                # Taken off before it runs: a request during the run schedules another.
                self._pending.discard(key)
            assert self._pool is not None
            self._pool.submit(context.run, self._fire, key)

    def _fire(self, key: Key) -> None:
        try:
            self.action(*key)
        except Exception as exc:  # reported and retried, never lost
            self.failed(*key, exc)
