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

import dataclasses
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes.client import ApiException

from deepseek_operator.api.conditions import (
    REASON_CLAIM_PENDING,
    REASON_DOWNLOAD_STALLED,
    REASON_DOWNLOADING,
)
from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.api.crd import build_crd
from deepseek_operator.controller import crd_sync, metrics
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
# A running download is reconciled this often to read its progress (one pods/log read);
# new figures are written as coalesced progress (reconciler.PROGRESS_WRITE_MAX_SECONDS
# apart once a download runs a while), so a download costs at most one write per minute
# (the default; `run --download-poll-seconds` sets it).
DOWNLOAD_POLL_SECONDS = 30.0
DOWNLOAD_REASONS = frozenset({REASON_DOWNLOADING, REASON_DOWNLOAD_STALLED})
# A model-cache claim that is not Bound is reconciled this often: the Events that say why
# (controller/claim_events.py) change nothing the operator watches, so the reconcile
# reads them (one bounded list) only while the claim waits.
CLAIM_PENDING_POLL_SECONDS = 15.0
_CHILDREN = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
# Watched for drift and progress, as kopf resource selectors (group/version, plural): every
# child kind, and the pods (serving and download) whose state status reports.
WATCHED_RESOURCES = (*((c.api_version, c.plural) for c in CHILD_KINDS), ("v1", "pods"))


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo.reconciler
    return reconciler


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger,
            **_: Any) -> None:
    """Configure kopf (storage, events, watching), build the shared Reconciler and, with
    `--manage-crd`, apply the operator's own CRD (controller/crd_sync.py)."""
    configure_kopf(settings)
    memo.reconciler = make_reconciler(memo.get("render_settings"))
    memo.crd_drift = None
    if memo.get("manage_crd"):
        try:
            crd_sync.apply_crd(memo.reconciler.cluster.resources)
            logger.info(f"applied the {crd_sync.CRD_NAME} CRD this operator was built with")
        except ApiException as exc:
            # Not fatal: the CRD watch below reports a stale schema loudly.
            logger.error(f"cannot apply the {crd_sync.CRD_NAME} CRD ({exc.status} "
                         f"{exc.reason}): give the operator patch on it, or apply "
                         "crds/ by hand (docs/operations.md, Upgrades)")
    metrics.DEPLOYMENTS.source = memo.reconciler.latest_copies
    memo.cache = memo.reconciler.cluster.cache
    memo.child_events = Debouncer(memo.reconciler.trigger, delay_seconds=CHILD_EVENT_DELAY,
                                  retry_seconds=RETRY_SECONDS)
    memo.relister = Relister(memo.reconciler.cluster, memo.child_events.request,
                             interval_seconds=float(memo.get("relist_seconds", RELIST_SECONDS)),
                             namespaces=tuple(memo.get("namespaces", ())))
    memo.relister.start()


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop the relister's thread."""
    memo.relister.stop()


@kopf.on.event(GROUP, VERSION, PLURAL, id="event-deepseekdeployments")
async def on_deployment_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Every watch event of a DeepSeekDeployment, kopf's initial listing included: keep the
    latest copy, reconcile when more than the status changed (the first sight of it, its
    spec, labels, annotations or deletion), forget it when deleted.

    A low-level handler, not kopf's on.create/on.update: those store a copy of the spec
    and their progress in annotations, a write per change and a larger object, while the
    reconcile is level-based (it reads status.observedGeneration, not a diff). The
    reconcile is queued at once on the reconcile workers (controller/debounce.py, from the
    copy just remembered), not run in kopf's handler thread pool: a thousand deployments
    listed at start would otherwise reconcile sixteen at a time beside the workers. A
    failed reconcile is retried in memory, without writing anything.
    """
    obj = event["object"]
    meta = obj["metadata"]
    reconciler = _reconciler(memo)
    if event["type"] == "DELETED":
        reconciler.forget(meta["namespace"], meta["name"])
        metrics.MANAGED.set(reconciler.managed_count())
        return
    if reconciler.remember(obj):
        _queue_reconcile(meta, memo)
    metrics.MANAGED.set(reconciler.managed_count())


async def safety_resync(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile every 10 minutes even without events (what a watch may have missed).
    Queued on the reconcile workers (`_queue_reconcile`)."""
    _queue_reconcile(meta, memo)


def _queue_reconcile(meta: Mapping[str, Any], memo: kopf.Memo) -> None:
    """Queue a reconcile of the object on the reconcile workers, from its latest copy.

    The timers queue rather than reconcile in kopf's thread pool so that a timer returns
    at once: when its filter stops matching (the claim bound, the download done; the
    status write that says so comes from a reconcile), kopf stops it, and a timer still
    busy then costs a polling delay and an annotation patch ("touch") of the object.
    """
    memo.child_events.request(meta["namespace"], meta["name"], 0.0)


def autoscale(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Drive the operator's autoscaler; it acts every spec.autoscaling.intervalSeconds."""
    meta = body["metadata"]
    _reconciler(memo).autoscale(meta["namespace"], meta["name"])


def downloading(status: kopf.Status, **_: Any) -> bool:
    """True while status says the model cache is being filled (ModelCached Downloading or
    DownloadStalled): the download progress timer runs only then."""
    return any(c.get("type") == "ModelCached" and c.get("reason") in DOWNLOAD_REASONS
               for c in status.get("conditions") or [])


def claim_pending(status: kopf.Status, **_: Any) -> bool:
    """True while status says the model cache claim waits (StorageReady ClaimPending):
    the claim-pending timer runs only then."""
    return any(c.get("type") == "StorageReady" and c.get("reason") == REASON_CLAIM_PENDING
               for c in status.get("conditions") or [])


async def pending_claim(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile while the model cache claim waits: the reconcile reads the claim's
    Events, so StorageReady says why it waits as soon as the provisioner says it.
    Queued on the reconcile workers (`_queue_reconcile`)."""
    _queue_reconcile(meta, memo)


async def download_progress(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile a running download (the timer's interval: `run --download-poll-seconds`):
    the reconcile reads the download pod's progress (controller/progress.py), so
    status.modelCache moves and a stall is seen; nothing else changes while a download
    runs. Queued on the reconcile workers (`_queue_reconcile`)."""
    _queue_reconcile(meta, memo)


async def _cache_object(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Index handler: keep the object's latest state in the ChildCache. Returns None, so
    kopf's own index stays empty (the cache is the store). Runs in the event loop: it only
    copies a dict under a lock."""
    memo.cache.store(dict(body))


async def _on_object_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Drop deleted objects from the cache; a change of one of ours reconciles its owner
    (debounced), and a change of a claim a deployment uses without owning it
    (existingClaim, pvc:// uri) reconciles that deployment: it binds, resizes or goes."""
    obj = event["object"]
    if event["type"] == "DELETED":
        waiting = memo.cache.forget(obj)
        if waiting is not None:  # it was in the way of that deployment's child
            memo.child_events.request(*waiting)
    owner = owner_of(obj)
    if owner is not None:
        memo.child_events.request(*owner)
    elif obj.get("kind") == "PersistentVolumeClaim":
        meta = obj["metadata"]
        for user in _reconciler(memo).users_of_claim(meta["namespace"], meta["name"]):
            memo.child_events.request(meta["namespace"], user)


_CHILD_APIS = {(c.api_version.rpartition("/")[0], c.plural) for c in CHILD_KINDS}


@kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions",
               id="event-customresourcedefinitions")
def _on_crd_event(event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger,
                  **_: Any) -> None:
    """The operator's own CRD changed (or was listed at start): check its schema. A CRD of
    a child kind (LeaderWorkerSet, ScaledObject, PodMonitor) was installed or
    changed: look the kinds up again and reconcile every DeepSeekDeployment, so one that
    waits for that API (or would get a PodMonitor) does not wait for the resync."""
    if event["object"].get("metadata", {}).get("name") == crd_sync.CRD_NAME:
        _check_own_crd(event, memo, logger)
        return
    spec = (event["object"].get("spec") or {})
    if (spec.get("group"), (spec.get("names") or {}).get("plural")) not in _CHILD_APIS:
        return
    memo.reconciler.cluster.resources.recheck()
    for namespace, name in memo.reconciler.known():
        memo.child_events.request(namespace, name)


def _check_own_crd(event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger) -> None:
    """Compare the served DeepSeekDeployment CRD with the built one; on a difference, log
    an error and post a Warning event on the CRD (once per distinct difference), and set
    the gauge. A deleted CRD counts as a difference."""
    crd = event["object"]
    if event["type"] == "DELETED":
        drift = [f"the {crd_sync.CRD_NAME} CRD was deleted"]
    else:
        drift = crd_sync.schema_drift(crd, build_crd())
    metrics.CRD_SCHEMA_CURRENT.set(0 if drift else 1)
    if drift == memo.get("crd_drift"):
        return
    memo.crd_drift = drift
    if not drift:
        logger.info(f"the served {crd_sync.CRD_NAME} CRD is the one this operator was built with")
        return
    message = (f"the served {crd_sync.CRD_NAME} CRD is not the one this operator was built "
               f"with: {'; '.join(drift)}. Apply crds/ of this version or run with "
               "--manage-crd (docs/operations.md, Upgrades)")
    logger.error(message)
    if event["type"] != "DELETED":
        kopf.event(kopf.Body(dict(crd)), type="Warning",  # type: ignore[arg-type]
                   reason="CRDSchemaOutdated", message=message[:1024])


async def _cache_storage_class(name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.cache.store_storage_class(name, str(body.get("provisioner") or ""))


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


def _watched(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> bool:
    """Timer filter: the object is known to the watch and not deleted. kopf re-matches a
    timer's filters at every watch event of its object, after the event handlers ran, so
    the DELETED event (on_deployment_event forgets the object) stops both timers: without
    a finalizer kopf would not stop them otherwise (it stops timers on a deletion
    timestamp, which an object without finalizers never shows)."""
    return bool(_reconciler(memo).watched(meta["namespace"], meta["name"]))


def _operator_autoscaling(spec: kopf.Spec, meta: kopf.Meta, memo: kopf.Memo,
                          **_: Any) -> bool:
    mode = (spec.get("autoscaling") or {}).get("mode", "operator")
    return mode == "operator" and _watched(meta, memo)


def _downloading_and_watched(status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo,
                             **_: Any) -> bool:
    return downloading(status) and _watched(meta, memo)


def _claim_pending_and_watched(status: kopf.Status, meta: kopf.Meta, memo: kopf.Memo,
                               **_: Any) -> bool:
    return claim_pending(status) and _watched(meta, memo)


def _without_finalizer(handler_id: str,
                       registry: kopf.OperatorRegistry | None = None) -> None:
    """Let the registered timer `handler_id` run without kopf's finalizer.

    kopf marks every timer as needing a finalizer, so that it can stop the timer before
    the object goes. Ours only read (the object, metrics) and write through the API, so a
    timer that ticks once more after the deletion does no harm, and `_watched` stops it at
    the DELETED event. Without the finalizer, `helm uninstall` (or an operator that is
    down) never leaves DeepSeekDeployments, and so their namespaces, stuck in deletion;
    kopf also removes the finalizer an older operator version put on an object, at its
    first event. kopf has no public switch for this (requires_finalizer is fixed to True by
    kopf.timer); tests/test_triggers.py checks it still holds for the installed kopf.
    """
    spawning = (registry or kopf.get_default_registry())._spawning
    for index, handler in enumerate(spawning._handlers):
        if handler.id == handler_id:
            spawning._handlers[index] = dataclasses.replace(handler, requires_finalizer=False)
            return
    raise LookupError(f"no kopf timer {handler_id!r} is registered")


def register_timers(resync_seconds: float = SAFETY_RESYNC_SECONDS,
                    autoscaler_tick_seconds: float = AUTOSCALER_TICK_SECONDS,
                    download_poll_seconds: float = DOWNLOAD_POLL_SECONDS,
                    registry: kopf.OperatorRegistry | None = None) -> None:
    """Register the four timers, whose intervals (seconds) are operator settings: kopf
    reads a timer's interval when it is registered, so they are registered by `run`, once,
    before kopf starts, rather than by a decorator at import. None puts a finalizer on the
    DeepSeekDeployments (`_without_finalizer`). The download timer runs only while a
    download does (``downloading``); the claim timer (CLAIM_PENDING_POLL_SECONDS, not a
    setting) only while the model cache claim waits (``claim_pending``). `registry`:
    kopf's default one unless given (tests)."""
    kopf.timer(GROUP, VERSION, PLURAL, id="safety_resync", interval=resync_seconds,
               initial_delay=resync_seconds, idle=None, backoff=5, when=_watched,
               registry=registry)(safety_resync)
    kopf.timer(GROUP, VERSION, PLURAL, id="autoscale", interval=autoscaler_tick_seconds,
               idle=None, backoff=5, when=_operator_autoscaling, registry=registry)(autoscale)
    kopf.timer(GROUP, VERSION, PLURAL, id="download_progress", interval=download_poll_seconds,
               initial_delay=download_poll_seconds, idle=None, backoff=5,
               when=_downloading_and_watched, registry=registry)(download_progress)
    kopf.timer(GROUP, VERSION, PLURAL, id="claim_pending", interval=CLAIM_PENDING_POLL_SECONDS,
               initial_delay=CLAIM_PENDING_POLL_SECONDS, idle=None, backoff=5,
               when=_claim_pending_and_watched, registry=registry)(pending_claim)
    for handler_id in ("safety_resync", "autoscale", "download_progress", "claim_pending"):
        _without_finalizer(handler_id, registry)
