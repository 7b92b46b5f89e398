"""`deepseek-operator gateway`: start the server, the DeepSeekDeployment watch and the
audit sink; stop on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from kubernetes import client, config

from .audit import AuditSink
from .auth import KubeReviewer
from .engine_auth import kube_secret_reader
from .server import Gateway, GatewayOptions
from .watch import deployment_watch, policy_watch

log = logging.getLogger(__name__)

LISTENING_PREFIX: Final = "gateway listening on "
METRICS_LISTENING_PREFIX: Final = "gateway metrics listening on "
SHUTDOWN_GRACE_SECONDS: Final = 30.0


def api_client(pool_size: int = 32) -> client.ApiClient:
    """An ApiClient from the in-cluster ServiceAccount, else from KUBECONFIG; `pool_size`
    pooled connections (the review threads and the watch share them)."""
    cfg = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)


def run_gateway(options: GatewayOptions) -> int:
    """Serve until SIGTERM/SIGINT; return the exit code (0; 1 when the audit file cannot be
    opened)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sink = AuditSink(options.audit_file, max_bytes=options.audit_max_bytes,
                         backups=options.audit_backups)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(options, sink))
    finally:
        sink.close()
    return 0


async def _serve(options: GatewayOptions, sink: AuditSink) -> None:
    api = api_client()
    gateway = Gateway(options, KubeReviewer(api, options.review_timeout_seconds), sink,
                      secrets=kube_secret_reader(api))
    loop = asyncio.get_running_loop()

    def later(apply: Callable[..., None]) -> Callable[..., None]:
        """`apply` run on the event loop, called from a watch thread."""
        def schedule(*args: Any) -> None:
            loop.call_soon_threadsafe(apply, *args)
        return schedule

    watches = [deployment_watch(api, options.namespace, later(gateway.apply_list),
                                later(gateway.apply_event)),
               policy_watch(api, options.namespace, later(gateway.apply_policy_list),
                            later(gateway.apply_policy_event))]
    runner = web.AppRunner(gateway.app(), handler_cancellation=True, access_log=None,
                           shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port)
    await site.start()
    metrics_runner = None
    if options.metrics_address is not None:
        metrics_runner = web.AppRunner(gateway.metrics_app(), access_log=None)
        await metrics_runner.setup()
        metrics_site = web.TCPSite(metrics_runner, *options.metrics_address)
        await metrics_site.start()
        print(f"{METRICS_LISTENING_PREFIX}http://{options.metrics_address[0]}:"
              f"{_bound_port(metrics_site, options.metrics_address[1])}", file=sys.stderr,
              flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    for watch in watches:
        watch.start()
    port = _bound_port(site, options.port)
    print(f"{LISTENING_PREFIX}http://{options.host}:{port}", file=sys.stderr, flush=True)
    log.info("watching DeepSeekDeployments in %s; upstream %s",
             options.namespace or "all namespaces", options.upstream_template)
    await stop.wait()
    log.info("stopping")
    await runner.cleanup()
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    for watch in watches:
        await asyncio.to_thread(watch.stop)


def _bound_port(site: web.TCPSite, asked: int) -> int:
    """The port `site` listens on (the kernel's choice when `asked` is 0)."""
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else asked
