"""`deepseek-operator run`: start kopf with the operator's handlers, metrics and probes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import kopf
from prometheus_client import start_http_server

from deepseek_operator.render import DEFAULT_SCRAPER_POD_LABELS, RenderSettings


@dataclass(frozen=True)
class RunOptions:
    """Options of the operator process.

    ``namespaces``: watch only these (empty = all namespaces). ``peering``: kopf peering
    name, so that of several replicas one is active (None = standalone, no peering
    objects needed). ``liveness``: kopf liveness endpoint URL (e.g.
    ``http://0.0.0.0:8080/healthz``). ``metrics_port``: port of /metrics (0 = off).
    ``log_format``: plain, full or json. ``verbose``: debug logging. ``priority``: kopf
    peering priority; None = the start time in milliseconds, so of several replicas the
    newest is active (kopf pauses every replica when two share a priority).
    ``relist_seconds``: how often every child kind is listed to purge what a watch missed
    (controller/resync.py). ``gateway``: the gateway fronts every DeepSeekDeployment (the
    default autoscaling query reads its counters); ``gateway_url``: its Service's base URL,
    shown as each deployment's ``status.endpoint``; ``gateway_service_account``: its
    ServiceAccount, ``NAMESPACE/NAME``, granted `get` on each engine API key Secret
    (``render.engine_key_access``). ``scraper_namespace_labels`` and
    ``scraper_pod_labels``: the metrics scraper the engine NetworkPolicy admits, as label
    pairs (``render.RenderSettings``).
    """

    namespaces: tuple[str, ...] = ()
    peering: str | None = None
    liveness: str | None = None
    metrics_port: int = 0
    log_format: str = "plain"
    verbose: bool = False
    priority: int | None = None
    relist_seconds: float = 600.0
    gateway: bool = False
    gateway_url: str = ""
    gateway_service_account: str = ""
    scraper_namespace_labels: tuple[tuple[str, str], ...] = ()
    scraper_pod_labels: tuple[tuple[str, str], ...] = DEFAULT_SCRAPER_POD_LABELS

    def render_settings(self) -> RenderSettings:
        """The RenderSettings these options ask for (the rest at their defaults)."""
        return RenderSettings(gateway=self.gateway, gateway_url=self.gateway_url,
                              gateway_service_account=self.gateway_service_account,
                              scraper_namespace_labels=self.scraper_namespace_labels,
                              scraper_pod_labels=self.scraper_pod_labels)


def default_priority(now: float | None = None) -> int:
    """Peering priority from the start time: milliseconds, kept within a signed 32-bit int."""
    return int((time.time() if now is None else now) * 1000) % (2**31 - 1)


def run_operator(options: RunOptions) -> None:
    """Run the operator until interrupted (blocks). Raises what kopf raises on fatal errors."""
    import deepseek_operator.controller.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=options.verbose,
                   log_format=kopf.LogFormat[options.log_format.upper()])
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if options.metrics_port:
        start_http_server(options.metrics_port)
    kopf.run(
        clusterwide=not options.namespaces,
        namespaces=list(options.namespaces),
        standalone=options.peering is None,
        peering_name=options.peering or "default",
        priority=default_priority() if options.priority is None else options.priority,
        liveness_endpoint=options.liveness,
        memo=kopf.Memo(relist_seconds=options.relist_seconds,
                       render_settings=options.render_settings()),
    )
