"""`deepseek-operator run`: start kopf with the operator's handlers, metrics and probes."""

from __future__ import annotations

import logging
import time

import kopf
from prometheus_client import start_http_server

from deepseek_operator.controller.settings import OperatorSettings


def default_priority(now: float | None = None) -> int:
    """Peering priority from the start time: milliseconds, kept within a signed 32-bit int."""
    return int((time.time() if now is None else now) * 1000) % (2**31 - 1)


def run_operator(settings: OperatorSettings) -> None:
    """Run the operator with `settings` until interrupted (blocks). Raises what kopf raises
    on fatal errors."""
    from deepseek_operator.controller import handlers

    handlers.register_timers(resync_seconds=settings.resync_seconds,
                             autoscaler_tick_seconds=settings.autoscaler_tick_seconds,
                             download_poll_seconds=settings.download_poll_seconds)
    kopf.configure(verbose=settings.verbose,
                   log_format=kopf.LogFormat[settings.log_format.upper()])
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if not settings.verbose:
        # kopf logs "Handler '...' succeeded." at INFO for every watch event of every
        # watched object: hundreds of lines a second while deployments start, and a few
        # percent of the operator's CPU. Its warnings and errors still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    kopf.run(
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        standalone=settings.peering is None,
        peering_name=settings.peering or "default",
        priority=default_priority() if settings.priority is None else settings.priority,
        liveness_endpoint=settings.liveness,
        memo=kopf.Memo(relist_seconds=settings.relist_seconds,
                       namespaces=tuple(settings.namespaces),
                       render_settings=settings.render_settings(),
                       manage_crd=settings.manage_crd),
    )
