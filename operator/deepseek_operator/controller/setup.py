"""Operator-wide configuration: kopf settings and the shared Reconciler.

kopf's defaults write to every object it handles (progress in ``status.kopf``, an Event for
each handler run). The operator's promise is that a reconcile with nothing to change makes
zero writes, so: DeepSeekDeployments are handled by a low-level event handler, which
stores nothing on the object (controller/handlers.py); progress and the diff base of any
other handler would go to annotations; kopf's own INFO chatter is not posted as Events;
ours are. kopf's timers run without a finalizer (handlers.register_timers): the operator
puts none on a DeepSeekDeployment, and removes the one older versions put there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client, config

from deepseek_operator.api.constants import GROUP
from deepseek_operator.autoscaler.loop import Autoscaler
from deepseek_operator.controller.cache import ChildCache
from deepseek_operator.controller.cluster import Cluster
from deepseek_operator.controller.reconciler import Reconciler
from deepseek_operator.render import RenderSettings

ANNOTATION_PREFIX = GROUP


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Apply the operator's kopf settings (storage, posting, watching, batching, peering)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    # No handler needs a finalizer; kopf removes this one (put there by operator versions
    # whose timers needed it) at an object's first event.
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"
    settings.posting.level = logging.WARNING
    # Reconnect watches often enough that a silently dead connection costs little.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    # No limit on kopf's per-object workers (kopf's default): with index handlers, each
    # object's worker waits until every watched kind is indexed, so a limit below the
    # number of objects of one kind (configmaps cluster-wide) would deadlock the start.
    # Sync handlers still share a bounded thread pool.
    settings.batching.worker_limit = None
    settings.execution.max_workers = 16
    # How often kopf checks that stopped timers (autoscaler, resync) exited; its default,
    # 60 s, would hold an old version's finalizer that long.
    settings.background.cancellation_polling = 2
    settings.peering.mandatory = False


def api_client() -> client.ApiClient:
    """An ApiClient from the in-cluster service account, else from KUBECONFIG."""
    cfg = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    # One pooled connection per thread that may call the API (kopf's sync handler pool,
    # the child-event timers, the relister): the client's default of 10 drops connections
    # under load and pays a TLS handshake for each new one.
    cfg.connection_pool_maxsize = 32
    return client.ApiClient(cfg)


def post_kopf_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Post an Event on a DeepSeekDeployment through kopf's event queue."""
    kopf.event(kopf.Body(dict(body)),  # type: ignore[arg-type]
               type=type_, reason=reason, message=message[:1024])


def make_reconciler(settings: RenderSettings | None = None) -> Reconciler:
    """The Reconciler the handlers share (API client, render settings, event sink).
    ``settings``: from the run options (None: the defaults)."""
    api = api_client()
    settings = settings or RenderSettings()
    return Reconciler(cluster=Cluster(api, ChildCache()),
                      autoscaler=Autoscaler(api, gateway=settings.gateway),
                      post_event=post_kopf_event, settings=settings)
