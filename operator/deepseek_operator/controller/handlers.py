"""kopf handler registrations: a table of contents, each entry a few lines.

The reconcile logic lives in ``controller.reconcile`` (plain functions, testable) and
``controller.reconciler`` (locking, status, events); these handlers only translate kopf's
triggers into ``Reconciler`` calls and its outcomes into kopf's error types. Child
watches derive from ``render.CHILD_KINDS``: every kind the operator can own is watched.
"""

from __future__ import annotations

from typing import Any

import kopf

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.controller import metrics
from deepseek_operator.controller.cluster import ApplyError
from deepseek_operator.controller.debounce import Debouncer
from deepseek_operator.controller.reconciler import Reconciler
from deepseek_operator.controller.setup import configure_kopf, make_reconciler
from deepseek_operator.render import (
    CHILD_KINDS,
    DEPLOYMENT_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
)

SAFETY_RESYNC_SECONDS = 60.0
# Child events within this many seconds make one reconcile (controller/debounce.py).
CHILD_EVENT_DELAY = 0.5
# The autoscaler timer ticks this often and evaluates when intervalSeconds (>= 5) passed.
AUTOSCALER_TICK_SECONDS = 5.0
_CHILDREN = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
# Watched for drift and progress, as kopf resource selectors (group/version, plural): every
# child kind, and the pods (serving and download) whose state status reports.
WATCHED_RESOURCES = (*((c.api_version, c.plural) for c in CHILD_KINDS), ("v1", "pods"))


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo.reconciler
    return reconciler


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf (storage, events, watching) and build the shared Reconciler."""
    configure_kopf(settings)
    memo.reconciler = make_reconciler()
    memo.child_events = Debouncer(memo.reconciler.trigger, delay_seconds=CHILD_EVENT_DELAY)


# backoff: an unexpected error (API hiccup, conflict) is retried after 5 s, not kopf's 60 s.
@kopf.on.create(GROUP, VERSION, PLURAL, backoff=5)
@kopf.on.update(GROUP, VERSION, PLURAL, backoff=5)
@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=5)
def reconcile_deployment(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile on create, spec change and operator start; errors become kopf retries."""
    meta = body["metadata"]
    try:
        outcome = _reconciler(memo).trigger(meta["namespace"], meta["name"], dict(body))
    except ApplyError as exc:
        raise kopf.TemporaryError(str(exc), delay=10) from exc
    metrics.MANAGED.set(_reconciler(memo).managed_count())
    if outcome is not None and outcome.stalled:
        raise kopf.PermanentError(outcome.message)


@kopf.timer(GROUP, VERSION, PLURAL, interval=SAFETY_RESYNC_SECONDS,
            initial_delay=SAFETY_RESYNC_SECONDS, idle=None, backoff=5)
def safety_resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile every minute even without events (missed watch events, external changes)."""
    meta = body["metadata"]
    _reconciler(memo).trigger(meta["namespace"], meta["name"])


@kopf.timer(GROUP, VERSION, PLURAL, interval=AUTOSCALER_TICK_SECONDS, idle=None, backoff=5,
            when=lambda spec, **_: (spec.get("autoscaling") or {}).get("mode", "operator")
            == "operator")
def autoscale(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Drive the operator's autoscaler; it acts every spec.autoscaling.intervalSeconds."""
    meta = body["metadata"]
    _reconciler(memo).autoscale(meta["namespace"], meta["name"])


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget_deployment(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Drop per-object bookkeeping; children go by owner-reference garbage collection."""
    meta = body["metadata"]
    _reconciler(memo).forget(meta["namespace"], meta["name"])


def _on_child_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    obj = event["object"]
    owner = (obj.get("metadata", {}).get("labels") or {}).get(DEPLOYMENT_LABEL)
    if owner:
        memo.child_events.request(obj["metadata"]["namespace"], owner)


for _api_version, _plural in WATCHED_RESOURCES:
    kopf.on.event(_api_version, _plural, labels=_CHILDREN, id=f"child-{_plural}")(_on_child_event)
