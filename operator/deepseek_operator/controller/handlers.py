"""kopf handler registrations: a table of contents, each entry a few lines.

The reconcile logic lives in ``controller.reconcile`` (plain functions, testable) and
``controller.reconciler`` (locking, status, events); these handlers only translate kopf's
triggers into ``Reconciler`` calls and its outcomes into kopf's error types. Child
watches derive from ``render.CHILD_KINDS``: every kind the operator can own is watched,
and its index handler keeps the ChildCache (controller/cache.py) current, which reconciles
read instead of listing. kopf runs index handlers for the initial listings before any
other handler, so no reconcile sees a half-filled cache.
"""

from __future__ import annotations

from typing import Any

import kopf

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.controller import metrics
from deepseek_operator.controller.cache import owner_of
from deepseek_operator.controller.debounce import Debouncer
from deepseek_operator.controller.reconciler import Reconciler
from deepseek_operator.controller.resync import Relister
from deepseek_operator.controller.setup import configure_kopf, make_reconciler
from deepseek_operator.render import CHILD_KINDS, MANAGED_BY_LABEL, MANAGED_BY_VALUE

# With children read from watches, the resync only covers events a watch never delivered;
# it uses kopf's copy of the object, so an idle deployment costs no API call (the default;
# `run --resync-seconds` sets it).
SAFETY_RESYNC_SECONDS = 600.0
# Every child kind is listed once, cluster-wide, this often, to purge what a watch missed
# (the default; `run --relist-seconds` sets it).
RELIST_SECONDS = 600.0
# A reconcile that failed (an API hiccup, a conflict, an overloaded apiserver) runs again
# after this long, and again until it succeeds.
RETRY_SECONDS = 10.0
# Child events within this many seconds make one reconcile (controller/debounce.py).
CHILD_EVENT_DELAY = 0.5
# The autoscaler timer ticks this often and evaluates when intervalSeconds (>= 5) passed
# (the default; `run --autoscaler-tick-seconds` sets it).
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
    memo.reconciler = make_reconciler(memo.get("render_settings"))
    metrics.DEPLOYMENTS.source = memo.reconciler.latest_copies
    memo.cache = memo.reconciler.cluster.cache
    memo.retries = Debouncer(memo.reconciler.trigger, delay_seconds=RETRY_SECONDS,
                             retry_seconds=RETRY_SECONDS)
    memo.child_events = Debouncer(memo.reconciler.trigger, delay_seconds=CHILD_EVENT_DELAY,
                                  retry_seconds=RETRY_SECONDS)
    memo.relister = Relister(memo.reconciler.cluster, memo.child_events.request,
                             interval_seconds=float(memo.get("relist_seconds", RELIST_SECONDS)))
    memo.relister.start()


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop the relister's thread."""
    memo.relister.stop()


@kopf.on.event(GROUP, VERSION, PLURAL, id="event-deepseekdeployments")
def on_deployment_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Every watch event of a DeepSeekDeployment, kopf's initial listing included: keep the
    latest copy, reconcile when more than the status changed (the first sight of it, its
    spec, labels, annotations or deletion), forget it when deleted.

    A low-level handler, not kopf's on.create/on.update: those store a copy of the spec
    and their progress in annotations, a write per change and a larger object, while the
    reconcile is level-based (it reads status.observedGeneration, not a diff). A failed
    reconcile is retried in memory (``memo.retries``), without writing anything.
    """
    obj = event["object"]
    meta = obj["metadata"]
    reconciler = _reconciler(memo)
    if event["type"] == "DELETED":
        reconciler.forget(meta["namespace"], meta["name"])
        metrics.MANAGED.set(reconciler.managed_count())
        return
    if reconciler.remember(obj):
        try:
            reconciler.trigger(meta["namespace"], meta["name"], dict(obj))
        except Exception as exc:  # every failure is retried, as kopf would
            memo.retries.failed(meta["namespace"], meta["name"], exc)
    metrics.MANAGED.set(reconciler.managed_count())


def safety_resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile every 10 minutes even without events (what a watch may have missed)."""
    meta = body["metadata"]
    _reconciler(memo).trigger(meta["namespace"], meta["name"], dict(body))


def autoscale(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Drive the operator's autoscaler; it acts every spec.autoscaling.intervalSeconds."""
    meta = body["metadata"]
    _reconciler(memo).autoscale(meta["namespace"], meta["name"])


async def _cache_object(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Index handler: keep the object's latest state in the ChildCache. Returns None, so
    kopf's own index stays empty (the cache is the store). Runs in the event loop: it only
    copies a dict under a lock."""
    memo.cache.store(dict(body))


async def _on_object_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Drop deleted objects from the cache; a change of one of ours reconciles its owner
    (debounced)."""
    obj = event["object"]
    if event["type"] == "DELETED":
        waiting = memo.cache.forget(obj)
        if waiting is not None:  # it was in the way of that deployment's child
            memo.child_events.request(*waiting)
    owner = owner_of(obj)
    if owner is not None:
        memo.child_events.request(*owner)


_CHILD_APIS = {(c.api_version.rpartition("/")[0], c.plural) for c in CHILD_KINDS}


@kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions",
               id="event-customresourcedefinitions")
def _on_crd_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A CRD of a child kind (LeaderWorkerSet, ScaledObject, PodMonitor) was installed or
    changed: look the kinds up again and reconcile every DeepSeekDeployment, so one that
    waits for that API (or would get a PodMonitor) does not wait for the resync."""
    spec = (event["object"].get("spec") or {})
    if (spec.get("group"), (spec.get("names") or {}).get("plural")) not in _CHILD_APIS:
        return
    memo.reconciler.cluster.resources.recheck()
    for namespace, name in memo.reconciler.known():
        memo.child_events.request(namespace, name)


async def _cache_storage_class(name: str, memo: kopf.Memo, **_: Any) -> None:
    memo.cache.store_storage_class(name)


async def _on_storage_class_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    if event["type"] == "DELETED":
        memo.cache.forget_storage_class(event["object"]["metadata"]["name"])


for _api_version, _plural in WATCHED_RESOURCES:
    # Pods: only the operator's (other pods are no child and have no name it could take).
    _filters: dict[str, Any] = {"labels": _CHILDREN} if _plural == "pods" else {}
    kopf.index(_api_version, _plural, id=f"cache-{_plural}", **_filters)(_cache_object)
    kopf.on.event(_api_version, _plural, id=f"event-{_plural}", **_filters)(_on_object_event)
kopf.index("storage.k8s.io/v1", "storageclasses", id="cache-storageclasses")(
    _cache_storage_class)
kopf.on.event("storage.k8s.io/v1", "storageclasses", id="event-storageclasses")(
    _on_storage_class_event)


def _operator_autoscaling(spec: kopf.Spec, **_: Any) -> bool:
    return bool((spec.get("autoscaling") or {}).get("mode", "operator") == "operator")


def register_timers(resync_seconds: float = SAFETY_RESYNC_SECONDS,
                    autoscaler_tick_seconds: float = AUTOSCALER_TICK_SECONDS) -> None:
    """Register the two timers, whose intervals (seconds) are operator settings: kopf reads
    a timer's interval when it is registered, so they are registered by `run`, once,
    before kopf starts, rather than by a decorator at import."""
    kopf.timer(GROUP, VERSION, PLURAL, id="safety_resync", interval=resync_seconds,
               initial_delay=resync_seconds, idle=None, backoff=5)(safety_resync)
    kopf.timer(GROUP, VERSION, PLURAL, id="autoscale", interval=autoscaler_tick_seconds,
               idle=None, backoff=5, when=_operator_autoscaling)(autoscale)
