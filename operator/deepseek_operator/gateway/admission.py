"""Per-deployment admission: at most `capacity` requests at the engine, a bounded FIFO
queue for the rest.

`capacity` is readyReplicas x maxConcurrentSequences (`routing.Target.capacity`), so a
deployment at zero replicas holds every request in its queue (scale from zero: the queued
gauge tells the autoscaler to bring a replica up) and a burst waits at the gateway instead
of overloading one engine. A slot freed, or a capacity raised by the watch, hands slots to
the oldest waiters first. Event-loop only (not thread-safe).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Key = tuple[str, str]


class QueueFull(Exception):
    """The deployment's queue holds `max_queued` requests already."""


class QueueTimeout(Exception):
    """No slot came free within the wait."""


class DeploymentGone(Exception):
    """The deployment was deleted while the request waited."""


@dataclass
class _Lane:
    capacity: int = 0
    inflight: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class Admission:
    """Slots and queues per deployment key (namespace, name).

    `on_change(key, queued, inflight)` is called after every change (for the gauges).
    """

    def __init__(self, max_queued: int,
                 on_change: Callable[[Key, int, int], None] = lambda k, q, i: None) -> None:
        """Queue at most `max_queued` (>= 0) requests per deployment."""
        self.max_queued = max_queued
        self._on_change = on_change
        self._lanes: dict[Key, _Lane] = {}

    def set_capacity(self, key: Key, capacity: int) -> None:
        """Let `capacity` (>= 0) requests of deployment `key` run at once; wake waiters if
        slots came free."""
        lane = self._lanes.setdefault(key, _Lane())
        lane.capacity = max(0, capacity)
        self._wake(key, lane)

    def remove(self, key: Key) -> None:
        """The deployment is gone: its waiters get `DeploymentGone`; running requests
        finish."""
        lane = self._lanes.get(key)
        if lane is None:
            return
        lane.capacity = 0
        while lane.waiters:
            waiter = lane.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(DeploymentGone())
        if lane.inflight == 0:
            del self._lanes[key]
        self._on_change(key, 0, lane.inflight)

    def queued(self, key: Key) -> int:
        """Requests of `key` waiting for a slot."""
        lane = self._lanes.get(key)
        return len(lane.waiters) if lane else 0

    def inflight(self, key: Key) -> int:
        """Requests of `key` holding a slot."""
        lane = self._lanes.get(key)
        return lane.inflight if lane else 0

    async def acquire(self, key: Key, timeout_seconds: float,
                      max_queued: int | None = None) -> None:
        """Take a slot of deployment `key`, waiting in its queue up to `timeout_seconds`;
        `max_queued` overrides the queue bound for this deployment. Pair every successful
        call with `release`.

        Raises:
            QueueFull: `max_queued` requests wait already (nothing was queued).
            QueueTimeout: no slot within `timeout_seconds`.
            DeploymentGone: the deployment was removed while waiting.
            asyncio.CancelledError: the caller was cancelled (no slot is held).
        """
        lane = self._lanes.setdefault(key, _Lane())
        if lane.inflight < lane.capacity and not lane.waiters:
            lane.inflight += 1
            self._changed(key, lane)
            return
        if len(lane.waiters) >= (self.max_queued if max_queued is None else max_queued):
            raise QueueFull()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.waiters.append(waiter)
        self._changed(key, lane)
        try:
            async with asyncio.timeout(timeout_seconds):
                await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(key)  # a slot was handed over just as we gave up
            elif waiter in lane.waiters:
                lane.waiters.remove(waiter)
                self._changed(key, lane)
            if isinstance(error, TimeoutError):
                raise QueueTimeout() from None
            raise

    def release(self, key: Key) -> None:
        """Give back a slot taken by `acquire`."""
        lane = self._lanes.get(key)
        if lane is None:
            return
        lane.inflight -= 1
        self._wake(key, lane)
        if lane.inflight == 0 and not lane.waiters and lane.capacity == 0:
            del self._lanes[key]

    def _wake(self, key: Key, lane: _Lane) -> None:
        while lane.waiters and lane.inflight < lane.capacity:
            waiter = lane.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                lane.inflight += 1
        self._changed(key, lane)

    def _changed(self, key: Key, lane: _Lane) -> None:
        self._on_change(key, len(lane.waiters), lane.inflight)
