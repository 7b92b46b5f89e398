"""Coalesce bursts of triggers into one reconcile per DeepSeekDeployment, and retry the
ones that fail.

Creating one DeepSeekDeployment makes about a dozen child events within a second or two
(each pod, Job, claim and Deployment moves through several states). Reconciling on each
one reads every child again. Instead, the first event of a burst schedules one reconcile
``delay_seconds`` later and later events of the burst ride on it. A reconcile that raises
(an API hiccup, a conflict) is scheduled again ``retry_seconds`` later, until it succeeds,
in memory: nothing is written to the object to remember it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from deepseek_operator.controller.cluster import ApplyError

log = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass
class Debouncer:
    """Calls ``action(namespace, name)`` once per burst of ``request`` calls for a key.

    ``delay_seconds``: how long a burst may last; the action runs on a timer thread.
    ``retry_seconds``: when the action raises, it is logged and the key requested again
    this long after (None: only logged; the next trigger tries again).
    """

    action: Callable[[str, str], object]
    delay_seconds: float = 0.5
    retry_seconds: float | None = None
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
        timer = threading.Timer(delay, context.run, args=(self._fire, key))
        timer.daemon = True
        timer.start()
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
