"""A stand-in for the gateway's Prometheus metrics, for autoscaler tests.

The real gateway (``deepseek-operator gateway``) exports, per DeepSeekDeployment,
``deepseek_gateway_requests_total`` (counter) and ``deepseek_gateway_queued_requests``
(gauge), labelled ``namespace`` and ``deployment``; the operator's default query with
``run --gateway`` reads them (``render.gateway_qps_query``). This serves the same names
from its own prometheus_client registry on a free 127.0.0.1 port, so a test sets the
values the autoscaler must react to and a real Prometheus scrapes them.
"""

from __future__ import annotations

import threading
from types import TracebackType
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from deepseek_operator.render import GATEWAY_QUEUED, GATEWAY_REQUESTS
from e2e.rig.prometheus import ScrapeTarget, free_loopback_port

LABELS = ("namespace", "deployment")


class GatewayMetrics:
    """The gateway's metrics for a test; a context manager that serves and stops them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # prometheus_client appends _total to a counter's name itself.
        self.requests = Counter(GATEWAY_REQUESTS.removesuffix("_total"),
                                "Requests received, per DeepSeekDeployment.", LABELS,
                                registry=self.registry)
        self.queued = Gauge(GATEWAY_QUEUED, "Requests held waiting for a replica.", LABELS,
                            registry=self.registry)
        self.port = 0
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def target(self) -> ScrapeTarget:
        """The scrape target (no target labels: the series carry namespace and
        deployment themselves)."""
        return ScrapeTarget(f"127.0.0.1:{self.port}")

    def start(self) -> None:
        """Serve /metrics on a free loopback port."""
        self.port = free_loopback_port()
        self._server, self._thread = start_http_server(self.port, addr="127.0.0.1",
                                                       registry=self.registry)

    def stop(self) -> None:
        """Stop serving and wait for the server thread. Safe to call twice."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> GatewayMetrics:
        """Start and return self."""
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Stop."""
        self.stop()
