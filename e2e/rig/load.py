"""A load generator: chat completions at a set total rate, round-robin over live stand-ins.

Arrivals are open-loop: request k after a rate change is due at ``t0 + k / qps`` whatever
the earlier responses did, so a slow stand-in does not lower the offered load. A pool of
worker threads sends them with ``requests`` (already installed with prometheus-api-client).
The target list is read again before every request, so stand-ins may come and go while it
runs. Every run is bounded by a request count and a duration and ends by itself; it sends
only to loopback addresses (127.0.0.0/8, ::1, localhost) and stops with an error otherwise.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

# Keep the first error messages for diagnosis; the counts cover all of them.
MAX_KEPT_ERRORS = 20


@dataclass(frozen=True)
class LoadStats:
    """What a load run did so far. Counts are requests; ``per_endpoint`` maps base URL to
    requests sent there; ``unrouted`` were due while no stand-in was live (not sent)."""

    sent: int
    succeeded: int
    failed: int
    unrouted: int
    per_endpoint: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def require_loopback(url: str) -> str:
    """Return ``url`` if it is ``http://`` to a loopback host.

    Raises:
        ValueError: another scheme or a non-loopback host (the URL is named).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http":
        raise ValueError(f"load target {url!r}: scheme must be http")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"load target {url!r}: host must be a loopback address")
    return url


class LoadGenerator:
    """Sends ``POST {endpoint}/v1/chat/completions`` at ``qps`` requests/s in total.

    ``start`` begins, ``set_qps`` changes the rate from now on (0 pauses), ``join`` waits
    for the run to end by itself, ``stop`` ends it early; both return the final stats.
    """

    def __init__(self, endpoints: Callable[[], Sequence[str]], *, model: str, qps: float,
                 max_requests: int, max_duration_s: float, workers: int = 8,
                 request_timeout_s: float = 10.0) -> None:
        """Prepare a run.

        ``endpoints`` returns the current base URLs (e.g. ``StandInFleet.endpoints``);
        ``model`` is the ``model`` field sent; the run ends after ``max_requests`` due
        requests or ``max_duration_s`` seconds, whichever comes first.

        Raises:
            ValueError: a negative ``qps``, or a bound or ``workers`` below 1 (named).
        """
        _check_qps(qps)
        for name, value in (("max_requests", max_requests), ("max_duration_s", max_duration_s),
                            ("workers", workers), ("request_timeout_s", request_timeout_s)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self._endpoints = endpoints
        self._model = model
        self._max_requests = max_requests
        self._max_duration_s = max_duration_s
        self._request_timeout_s = request_timeout_s
        self._lock = threading.Lock()
        self._qps = qps
        self._anchor = 0.0
        self._due_since_anchor = 0
        self._due = 0
        self._counts: Counter[str] = Counter()
        self._per_endpoint: Counter[str] = Counter()
        self._errors: list[str] = []
        self._fault: ValueError | None = None
        self._stopping = threading.Event()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load")
        self._scheduler = threading.Thread(target=self._schedule, name="load-scheduler",
                                           daemon=True)

    def start(self) -> None:
        """Begin sending in a background thread."""
        with self._lock:
            self._anchor = time.monotonic()
        self._scheduler.start()

    def set_qps(self, qps: float) -> None:
        """Change the total rate (requests/s, >= 0) from now on; 0 pauses.

        Raises:
            ValueError: ``qps`` is negative.
        """
        _check_qps(qps)
        with self._lock:
            self._qps = qps
            self._anchor = time.monotonic()
            self._due_since_anchor = 0

    def stats(self) -> LoadStats:
        """A snapshot of the counts so far."""
        with self._lock:
            return LoadStats(sent=self._counts["sent"], succeeded=self._counts["succeeded"],
                             failed=self._counts["failed"], unrouted=self._counts["unrouted"],
                             per_endpoint=dict(self._per_endpoint), errors=list(self._errors))

    def join(self, timeout_s: float | None = None) -> LoadStats:
        """Wait for the run to end by itself and for in-flight requests; return the stats.

        Raises:
            TimeoutError: still running after ``timeout_s`` seconds.
            ValueError: an endpoint was not a loopback URL (nothing was sent to it).
        """
        self._scheduler.join(timeout_s)
        if self._scheduler.is_alive():
            raise TimeoutError(f"load run still going after {timeout_s} s")
        return self._finish()

    def stop(self) -> LoadStats:
        """End the run now, wait for in-flight requests and return the stats.

        Raises:
            ValueError: an endpoint was not a loopback URL (nothing was sent to it).
        """
        self._stopping.set()
        if self._scheduler.is_alive():
            self._scheduler.join()
        return self._finish()

    def _finish(self) -> LoadStats:
        self._pool.shutdown(wait=True)
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        if self._fault is not None:
            raise self._fault
        return self.stats()

    def _schedule(self) -> None:
        deadline = time.monotonic() + self._max_duration_s
        next_index = 0
        while not self._stopping.is_set() and self._due < self._max_requests:
            now = time.monotonic()
            if now >= deadline:
                return
            with self._lock:
                qps = self._qps
                due_at = self._anchor + self._due_since_anchor / qps if qps else None
            if due_at is None or due_at > now:
                pause = 0.1 if due_at is None else due_at - now
                self._stopping.wait(min(pause, deadline - now))
                continue
            endpoints = list(self._endpoints())
            with self._lock:
                self._due_since_anchor += 1
                self._due += 1
                if not endpoints:
                    self._counts["unrouted"] += 1
                    continue
            endpoint = endpoints[next_index % len(endpoints)]
            next_index += 1
            try:
                require_loopback(endpoint)
            except ValueError as error:
                self._fault = error
                return
            with self._lock:
                self._counts["sent"] += 1
                self._per_endpoint[endpoint] += 1
            self._pool.submit(self._send, endpoint)

    def _send(self, endpoint: str) -> None:
        body = {"model": self._model, "max_tokens": 16,
                "messages": [{"role": "user", "content": "How many replicas do I need?"}]}
        try:
            response = self._session().post(f"{endpoint}/v1/chat/completions", json=body,
                                            timeout=self._request_timeout_s)
            error = None if response.ok else f"{endpoint}: HTTP {response.status_code}"
        except requests.RequestException as failure:
            error = f"{endpoint}: {failure}"
        with self._lock:
            self._counts["failed" if error else "succeeded"] += 1
            if error and len(self._errors) < MAX_KEPT_ERRORS:
                self._errors.append(error)

    def _session(self) -> requests.Session:
        # One session per worker thread: a Session is not documented as thread-safe.
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session


def _check_qps(qps: float) -> None:
    if qps < 0:
        raise ValueError(f"qps must be >= 0, got {qps}")
