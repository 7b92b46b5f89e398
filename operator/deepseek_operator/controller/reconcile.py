"""Reconcile one DeepSeekDeployment: render, adjust to what is live, plan, apply, observe,
compute status.

The flow (docs/architecture.md draws it)::

    body --parse/render--> rendered --desired_state(observed)--> desired
         --calculate_plan(observed)--> plan --Cluster.execute--> writes
         --observe--> compute_status --> Outcome (status to write, events)

Plain functions over a ``Cluster`` (the only API caller), so tests call them directly and
kopf handlers stay thin. A reconcile with nothing to change makes zero writes: the plan is
empty and the computed status equals the stored one. A spec or cluster that cannot work
goes through one path, ``_stall``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, get_args

from pydantic import BaseModel

from deepseek_operator.api.conditions import (
    REASON_API_NOT_INSTALLED,
    REASON_APPLY_FAILED,
    REASON_CLAIM_IMMUTABLE,
    REASON_DOWNLOAD_STALLED,
    REASON_INVALID_SPEC,
    REASON_NAME_CONFLICT,
    ConditionType,
    transitions,
)
from deepseek_operator.api.errors import InvalidSpecError
from deepseek_operator.api.resource import DeepSeekDeployment, parse_deployment
from deepseek_operator.api.status import DeepSeekDeploymentStatus
from deepseek_operator.catalog import checkpoint_bytes, size_deployment
from deepseek_operator.controller.cluster import ApplyError, Cluster
from deepseek_operator.controller.desired import DesiredState, child, desired_state
from deepseek_operator.controller.hpa_status import hpa_autoscaling
from deepseek_operator.controller.plan import FIELD_MANAGER, ObjectKey, Plan, calculate_plan
from deepseek_operator.controller.predicates import (
    job_failed,
    job_succeeded,
    serving_counts,
    termination_message,
)
from deepseek_operator.controller.progress import TAIL_LINES
from deepseek_operator.controller.render_cache import RenderCache
from deepseek_operator.controller.status import (
    WAITING_FOR_API,
    WAITING_FOR_OBJECT,
    WAITING_FOR_SPEC,
    Observed,
    compute_status,
    missing_apis_message,
    stalled_status,
)
from deepseek_operator.render import (
    WORKLOAD_API_VERSIONS,
    RenderSettings,
    creates_model_cache,
    endpoint,
    names,
    needs_download,
    pod_selector,
    pod_selector_labels,
    worker_selector_labels,
    workload_replicas,
)
from deepseek_operator.render.autoscaling import HPA_METRIC
from deepseek_operator.render.download import deadline_seconds

log = logging.getLogger(__name__)

RENDERED = RenderCache()
"""The operator's renders, kept per deployment (controller/render_cache.py)."""

# Reasons of a False condition that are normal progress (start-up, a rollout): their
# Events are Normal. Any other reason of a False condition is a Warning.
PROGRESS_REASONS = frozenset({
    "ClaimPending", "Downloading", "WaitingForStorage", "NoPods", "RollingOut",
    "ReplicasNotReady", "AwaitingFirstDecision", "ClaimResizing", "WorkloadNotReported",
})


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the DeepSeekDeployment (type Normal or Warning)."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """What one reconcile did and found.

    ``status``: the status to store (a JSON merge patch of ``.status``), or None when it
    equals the stored one (no write). ``writes``: one line per child write. ``events``:
    Events to post. ``status_events``: Events of the status change's condition transitions,
    to post when ``status`` is written (a coalesced change reports them when it is).
    ``stalled``: the spec can never work as written (no retry helps). ``urgent``: the
    status change is one a reader waits for (`status_urgent`); other changes (progress on
    the way, counts, messages) may be coalesced with the next.
    """

    status: dict[str, Any] | None
    writes: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    status_events: list[Event] = field(default_factory=list)
    stalled: bool = False
    message: str = ""
    urgent: bool = True


def _headline(status: DeepSeekDeploymentStatus) -> tuple[object, ...]:
    """What a reader of the status waits for: the generation it describes, and whether the
    object is Ready or Stalled."""
    return (status.observed_generation, *(
        (c.type, c.status) for c in status.conditions
        if c.type in (ConditionType.READY, ConditionType.STALLED)))


def status_urgent(before: DeepSeekDeploymentStatus | None, after: DeepSeekDeploymentStatus,
                  events: list[Event]) -> bool:
    """Whether a status change must be written at once: the first status, a new
    observedGeneration, Ready or Stalled turning, or a new problem (a transition reported as
    a Warning, or a detail condition newly False for a reason that is no progress).
    Progress on the way (phase Downloading then Starting, claim bound, model cached, pods
    scheduled, replica counts, messages) is not: the Reconciler coalesces those writes (at
    most one per ``reconciler.PROGRESS_WRITE_SECONDS``)."""
    return (before is None or _headline(before) != _headline(after)
            or any(event.type == "Warning" for event in events)
            or bool(_problems(after) - _problems(before)))


def _problems(status: DeepSeekDeploymentStatus) -> set[tuple[str, str]]:
    """(type, reason) of the detail conditions that are False for a reason other than
    normal progress (e.g. ModelCached DownloadFailed, Scheduled Unschedulable)."""
    return {(c.type, c.reason) for c in status.conditions
            if c.status == "False" and c.reason not in PROGRESS_REASONS
            and c.type not in (ConditionType.PROGRESSING, ConditionType.STALLED)}


def previous_status(body: Mapping[str, Any]) -> DeepSeekDeploymentStatus | None:
    """The stored status as a model; None when absent, when it is only the CRD's default
    (api.crd.STATUS_DEFAULT: nothing observed yet, so no conditions), or unreadable (it is
    recomputed)."""
    raw = body.get("status")
    if not raw or not raw.get("conditions"):
        return None
    try:
        return DeepSeekDeploymentStatus.model_validate(dict(raw))
    except ValueError:
        log.warning("ignoring unreadable status of %s", body["metadata"].get("name"))
        return None


STATUS_KEYS: Final = tuple(info.alias or name for name, info
                          in DeepSeekDeploymentStatus.model_fields.items())
"""Every top-level key of ``.status``: all the operator's, each written on every write."""


def _with_nulls(wire: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``wire`` (a status model's wire form) with every field of ``model`` it lacks as
    None, in nested objects too (a merge patch merges them key by key)."""
    full: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        value = wire.get(key)
        nested = next((t for t in (info.annotation, *get_args(info.annotation))
                       if isinstance(t, type) and issubclass(t, BaseModel)), None)
        full[key] = _with_nulls(value, nested) if nested and isinstance(value, dict) \
            else value
    return full


def status_dict(status: DeepSeekDeploymentStatus) -> dict[str, Any]:
    """The wire form (camelCase, no nulls) of a status model."""
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def condition_events(before: DeepSeekDeploymentStatus | None,
                     after: DeepSeekDeploymentStatus) -> list[Event]:
    """One Event per real transition of a condition's status that a reader should know of.

    Progressing and Stalled mirror Ready and post nothing of their own. A False condition
    is a Warning unless its reason is normal progress (PROGRESS_REASONS); a stall is always
    a Warning. Normal events are Ready's transitions only: a detail condition turning True
    or False on the way (claim bound, model downloaded, pods placed) is progress that the
    conditions show, and an Event for each cost a write per step (three per deployment
    on its way to Ready); the initial state of a new object is no transition either.
    Warnings are posted for every condition.
    """
    stalled = any(c.type == ConditionType.STALLED and c.status == "True"
                  for c in after.conditions)
    events = []
    for cond in transitions(before, after):
        if cond.status == "Unknown" or cond.type in (ConditionType.PROGRESSING,
                                                     ConditionType.STALLED):
            continue
        bad = cond.status == "False" and (
            cond.reason not in PROGRESS_REASONS or (cond.type == ConditionType.READY
                                                    and stalled))
        if not bad and (before is None or cond.type != ConditionType.READY):
            continue
        events.append(Event("Warning" if bad else "Normal", cond.reason,
                            f"{cond.type}={cond.status}: {cond.message}"))
    return events + _reason_warnings(before, after)


# (condition type, reason) that are news although the condition's status does not change
# (ModelCached stays False from Downloading to DownloadStalled): a Warning when it appears.
# Ready and Progressing repeat the reason and post nothing of their own.
REASON_WARNINGS = frozenset({(ConditionType.MODEL_CACHED, REASON_DOWNLOAD_STALLED)})


def _reason_warnings(before: DeepSeekDeploymentStatus | None,
                     after: DeepSeekDeploymentStatus) -> list[Event]:
    """A Warning for each condition whose reason turned into one of REASON_WARNINGS while
    its status stayed (a change of status is reported by ``condition_events`` itself)."""
    old = {c.type: c for c in (before.conditions if before else [])}
    return [Event("Warning", c.reason, f"{c.type}={c.status}: {c.message}")
            for c in after.conditions
            if (c.type, c.reason) in REASON_WARNINGS and c.type in old
            and old[c.type].status == c.status and old[c.type].reason != c.reason]


def _finish(previous: DeepSeekDeploymentStatus | None, status: DeepSeekDeploymentStatus,
            writes: list[str], stalled: bool = False, message: str = "") -> Outcome:
    new = status_dict(status)
    old = status_dict(previous) if previous else None
    if new != old:
        # A JSON merge patch keeps keys it does not mention: every field the operator owns
        # is written, null removing the ones that do not apply (the operator autoscaler's
        # block after a switch to hpa, a figure patched in by hand).
        new = _with_nulls(new, DeepSeekDeploymentStatus)
    transitions = condition_events(previous, status)
    events = [Event("Normal", "Applied", "; ".join(writes))] if writes else []
    return Outcome(status=None if new == old else new, writes=writes, events=events,
                   status_events=transitions, stalled=stalled, message=message,
                   urgent=status_urgent(previous, status, transitions))


@dataclass(frozen=True)
class _Context:
    """What every step of one reconcile needs to know about the object."""

    namespace: str
    name: str
    uid: str
    generation: int
    previous: DeepSeekDeploymentStatus | None
    now: str

    @property
    def base(self) -> DeepSeekDeploymentStatus:
        return self.previous or DeepSeekDeploymentStatus()


def _stall(ctx: _Context, cluster: Cluster, reason: str, message: str, waiting: str,
           writes: list[str] | None = None,
           base: DeepSeekDeploymentStatus | None = None) -> Outcome:
    """The one way a reconcile ends Stalled: status says ``reason`` and ``message`` and what
    it waits for; nothing more is written.

    The replica counts and the selector are observed, not carried over from the stored
    status: what the last valid spec created may still serve (or be gone), and a status
    patched by hand must not survive the operator's write (a forged readyReplicas would
    show in ``kubectl get`` and count as capacity in the gateway).
    """
    workloads = [obj for key, obj in cluster.observe((ctx.namespace, ctx.name)).items()
                 if key.kind in WORKLOAD_API_VERSIONS]
    replicas, ready = serving_counts(*workloads)
    desired = max((int((w.get("spec") or {}).get("replicas") or 0) for w in workloads),
                  default=0)
    observed = (base or ctx.base).model_copy(update={
        "replicas": replicas, "ready_replicas": ready, "desired_replicas": desired,
        "selector": pod_selector(ctx.name)})
    status = stalled_status(generation=ctx.generation, reason=reason, message=message,
                            previous=ctx.previous, now=ctx.now, base=observed,
                            waiting=waiting)
    return _finish(ctx.previous, status, writes or [], stalled=True, message=message)


def reconcile(body: Mapping[str, Any], cluster: Cluster, settings: RenderSettings,
              now: str) -> Outcome:
    """Bring the children of one DeepSeekDeployment (``body``, as from the API) to its spec.

    ``now``: RFC 3339 time for condition transitions. Returns the Outcome; raises
    ApplyError (controller.cluster) for a write that may succeed when retried (conflict,
    overload) and ApiException when a read fails.
    """
    meta = body["metadata"]
    ctx = _Context(namespace=meta["namespace"], name=meta["name"], uid=str(meta.get("uid", "")),
                   generation=int(meta.get("generation", 0)), previous=previous_status(body),
                   now=now)
    settings = dataclasses.replace(
        settings, pod_monitor=cluster.served("monitoring.coreos.com/v1", "PodMonitor"),
        hpa_tolerance=cluster.hpa_tolerance_supported())
    try:
        dsd = parse_deployment(body)
        rendered = RENDERED.render(dsd, settings)
    except InvalidSpecError as exc:
        return _stall(ctx, cluster, REASON_INVALID_SPEC, str(exc), WAITING_FOR_SPEC)

    owner = (ctx.namespace, ctx.name)
    observed = cluster.observe(owner)
    # existingClaim or a pvc:// uri: not ours, so not among the children; the operator
    # never writes it, so one read serves the whole reconcile.
    given_claim = None if creates_model_cache(dsd) else cluster.read(
        ObjectKey("v1", "PersistentVolumeClaim", ctx.namespace, names.model_cache_claim(dsd)))
    state = desired_state(dsd, rendered, observed, served=cluster.served,
                          given_claim=given_claim, field_manager=FIELD_MANAGER)
    if state.claim_conflict is not None:
        return _stall(ctx, cluster, REASON_CLAIM_IMMUTABLE, state.claim_conflict,
                      WAITING_FOR_OBJECT)
    if state.missing_apis:
        # Nothing of a spec the cluster cannot serve is applied: not a larger claim for a
        # model that will not run, not the removal of the autoscaler it would replace.
        return _stall(ctx, cluster, REASON_API_NOT_INSTALLED,
                      missing_apis_message(state.missing_apis), WAITING_FOR_API)
    if state.outdated_job is not None:
        log.info("%s/%s: the model cache claim is newer than %s, downloading again",
                 ctx.namespace, ctx.name, state.outdated_job)
    plan = calculate_plan(state.objects, observed, keep=state.keep, field_manager=FIELD_MANAGER)
    foreign = _foreign_objects(cluster, plan, ctx.uid, ctx.name)
    if foreign:
        return _stall(ctx, cluster, REASON_NAME_CONFLICT,
                      f"{'; '.join(foreign)}: the operator does not take over objects it did "
                      "not create (it would change them and delete them with this "
                      "DeepSeekDeployment); rename or delete them, or give this "
                      "DeepSeekDeployment another name", WAITING_FOR_OBJECT)
    try:
        writes = cluster.execute(plan)
    except ApplyError as exc:
        if not exc.refused:
            raise  # a conflict or an overloaded apiserver: retried with backoff
        # The API refuses the write (e.g. a hand edit made the desired object invalid):
        # retrying cannot help, say so instead of reporting the last good state. The
        # children that exist (the claim and download before a refused workload) still
        # report how they are.
        observed_now = _observed_status(ctx, cluster, dsd, cluster.observe(owner), state,
                                        given_claim, settings)
        return _stall(ctx, cluster, REASON_APPLY_FAILED, f"{exc}; {_apply_hint(exc)}",
                      WAITING_FOR_OBJECT, base=_details_of(observed_now, ctx.previous))
    if writes:
        log.info("%s/%s: %s", ctx.namespace, ctx.name, "; ".join(writes))
        observed = cluster.observe(owner)  # the executor stored what the API returned
    status = _observed_status(ctx, cluster, dsd, observed, state, given_claim, settings)
    return _finish(ctx.previous, status, writes)


def _observed_status(ctx: _Context, cluster: Cluster, dsd: DeepSeekDeployment,
                     observed: Mapping[ObjectKey, dict[str, Any]], state: DesiredState,
                     given_claim: dict[str, Any] | None,
                     settings: RenderSettings) -> DeepSeekDeploymentStatus:
    """The status of a valid spec from the observed children (``compute_status``)."""
    snapshot = _observe(cluster, dsd, observed, state, given_claim,
                        default_class=settings.storage_class_name)
    base = ctx.base.model_copy(update={"sizing": size_deployment(dsd.spec).to_status()})
    if dsd.spec.autoscaling.mode == "hpa":  # what the HPA decided, from its status
        base = base.model_copy(update={"autoscaling": hpa_autoscaling(
            snapshot.autoscaler, HPA_METRIC, dsd.spec.autoscaling.target_qps_per_replica)})
    elif dsd.spec.autoscaling.mode != "operator":
        base = base.model_copy(update={"autoscaling": None})  # another owner decides
    return compute_status(generation=ctx.generation, mode=dsd.spec.autoscaling.mode,
                          observed=snapshot, previous=ctx.previous, now=ctx.now,
                          selector=pod_selector(ctx.name), endpoint=endpoint(dsd, settings),
                          base=base)


_SUMMARY_TYPES = frozenset({ConditionType.READY, ConditionType.PROGRESSING,
                            ConditionType.STALLED})


def _details_of(status: DeepSeekDeploymentStatus,
                previous: DeepSeekDeploymentStatus | None) -> DeepSeekDeploymentStatus:
    """``status`` with its detail conditions (StorageReady, ModelCached, Scheduled,
    AutoscalerReady) and Ready, Progressing and Stalled as ``previous`` had them, for a
    stall to set those three on: taking them from ``status`` would move their
    lastTransitionTime at every reconcile of a stall that lasts."""
    kept = {c.type: c for c in (previous.conditions if previous else [])
            if c.type in _SUMMARY_TYPES}
    conditions = [kept[c.type] if c.type in _SUMMARY_TYPES else c
                  for c in status.conditions if c.type not in _SUMMARY_TYPES or c.type in kept]
    return status.model_copy(update={"conditions": conditions})


def _observe(cluster: Cluster, dsd: DeepSeekDeployment,
             observed: Mapping[ObjectKey, dict[str, Any]], state: DesiredState,
             given_claim: dict[str, Any] | None, default_class: str = "") -> Observed:
    """The snapshot status is computed from: the children that matter, and the pods."""
    namespace, name = dsd.metadata.namespace or "", dsd.metadata.name
    claim_name = names.model_cache_claim(dsd)
    wanted_kind = next((o["kind"] for o in state.objects
                        if o["kind"] in WORKLOAD_API_VERSIONS), None)
    # The workload that serves for this spec: the wanted kind when it exists, else the one
    # kept serving while the wanted one cannot replace it.
    workloads = [w for kind in sorted(WORKLOAD_API_VERSIONS, key=lambda k: k != wanted_kind)
                 if (w := child(observed, kind, names.workload(dsd))) is not None]
    workload = workloads[0] if workloads else None
    # While one kind replaces the other (rule 7 of controller/desired.py), the old one
    # still serves until the new one is ready.
    kept_workload = workloads[1] if len(workloads) > 1 else None
    autoscaler = child(observed, "HorizontalPodAutoscaler", names.autoscaler(dsd)) or child(
        observed, "ScaledObject", names.autoscaler(dsd))
    replicas = workload_replicas(dsd)
    desired_replicas = replicas if replicas is not None else int(
        ((workload or {}).get("spec") or {}).get("replicas") or 0)
    job_name = next((o["metadata"]["name"] for o in state.objects if o["kind"] == "Job"),
                    state.failed_job.name if state.failed_job else None)
    job = child(observed, "Job", job_name) if job_name else None
    if job is not None and ObjectKey.of(job) == state.outdated_job:
        job = None  # it filled an earlier claim; the next reconcile replaces it
    # A failed Job's pods too: their termination message says why (ModelCached shows it).
    job_pods = [] if job is None or job_succeeded(job) else cluster.pods(
        (namespace, name), {"batch.kubernetes.io/job-name": job["metadata"]["name"]})
    log, log_error = _download_log(cluster, namespace, job_pods)
    # Only for a claim the operator makes: the spec's class, else the operator's default.
    storage_class = dsd.spec.storage.storage_class_name or default_class
    missing_class = storage_class if storage_class and creates_model_cache(dsd) \
        and not cluster.storage_class_exists(storage_class) else None
    claim = child(observed, "PersistentVolumeClaim", claim_name) or given_claim
    events, events_error, provisioner = _pending_claim_events(cluster, claim)
    return Observed(
        claim=claim, job=job, claim_events=events, claim_events_error=events_error,
        claim_provisioner=provisioner,
        job_pods=job_pods, workload=workload,
        pods=cluster.pods((namespace, name), pod_selector_labels(name)),
        worker_pods=cluster.pods((namespace, name), worker_selector_labels(name))
        if wanted_kind == "LeaderWorkerSet" else [],
        kept_workload=kept_workload,
        claim_name=claim_name, claim_given=not creates_model_cache(dsd),
        spec_replicas=dsd.spec.replicas,
        download_bytes=checkpoint_bytes(dsd.spec) if needs_download(dsd) else None,
        desired_replicas=desired_replicas, needs_download=needs_download(dsd),
        storage_class_missing=missing_class, autoscaler=autoscaler,
        storage_class_is_default=not dsd.spec.storage.storage_class_name,
        download_log=log, download_log_read_at=time.time() if log else None,
        download_log_error=log_error,
        download_failure=termination_message(job_pods, "download") if job is not None
        and job_failed(job) else "",
        stall_seconds=float(dsd.spec.download.stall_seconds),
        deadline_seconds=((job or {}).get("spec") or {}).get("activeDeadlineSeconds"),
        spec_deadline_seconds=deadline_seconds(dsd) if needs_download(dsd) else None)


# A claim younger than this is binding as usual (a provisioner takes about a second), so
# its Events are not read yet: a normal start-up lists nothing. The claim timer
# (handlers.CLAIM_PENDING_POLL_SECONDS, longer than this) reads them if it still waits.
CLAIM_EVENTS_AFTER_SECONDS = 10.0


def _claim_age_seconds(claim: dict[str, Any], now: float) -> float:
    """Seconds since the claim's creationTimestamp (RFC 3339, UTC); infinite without one."""
    created = claim["metadata"].get("creationTimestamp")
    if not created:
        return math.inf
    return now - dt.datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()


def _pending_claim_events(cluster: Cluster, claim: dict[str, Any] | None,
                          now: float | None = None) -> tuple[
        list[dict[str, Any]] | None, str, str]:
    """For a claim that exists, is neither Bound nor being deleted, and has waited at
    least CLAIM_EVENTS_AFTER_SECONDS (``now``: epoch seconds, default the clock): its
    Events, why they could not be read, and its StorageClass's provisioner
    (controller/claim_events.py); (None, "", "") for any other claim, whose Events are not
    read."""
    if claim is None or claim["metadata"].get("deletionTimestamp") or (
            claim.get("status") or {}).get("phase") == "Bound":
        return None, "", ""
    if _claim_age_seconds(claim, time.time() if now is None else now) \
            < CLAIM_EVENTS_AFTER_SECONDS:
        return None, "", ""
    meta = claim["metadata"]
    events, error = cluster.claim_events(meta.get("namespace") or "", meta["name"],
                                         meta.get("uid") or "")
    return events, error, cluster.storage_provisioner(
        str((claim.get("spec") or {}).get("storageClassName") or ""))


def _download_log(cluster: Cluster, namespace: str,
                  job_pods: list[dict[str, Any]]) -> tuple[str | None, str]:
    """The log tail of the newest running download pod (controller/progress.py), or
    (None, why not); (None, "") when no download pod runs."""
    running = [p for p in job_pods if (p.get("status") or {}).get("phase") == "Running"
               and not p["metadata"].get("deletionTimestamp")]
    if not running:
        return None, ""
    pod = max(running, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    return cluster.download_log(namespace, pod["metadata"]["name"], TAIL_LINES)


def _foreign_objects(cluster: Cluster, plan: Plan, uid: str, owner_name: str) -> list[str]:
    """Objects the plan would create that already exist and are not this custom
    resource's: same name, created by someone else (or one of ours whose labels were
    removed by hand: the owner reference tells them apart). From the cache, which knows
    every object of a child kind; a conflict it reports is confirmed with one read."""
    found = []
    for change in plan.apply:
        if not change.created:
            continue
        owners = cluster.owner_uids(change.key)
        if owners is None or uid in owners:
            continue
        # Rare, and stalls the deployment: confirm with the API (the cache may hold an
        # object deleted while a watch was down).
        live = cluster.read(change.key)
        live_owners = ((live or {}).get("metadata") or {}).get("ownerReferences") or []
        if live is not None and not any(o.get("uid") == uid for o in live_owners):
            found.append(f"{change.key} exists and is not owned by this DeepSeekDeployment")
            # Its deletion (or a rename) is how the user resolves the conflict: reconcile
            # then, not at the next safety resync.
            cluster.wait_for_name(change.key, (change.key.namespace, owner_name))
    return found


# Where fields of the rendered children (pod template, RoleBinding) come from in the
# spec, for messages that name a child's field (the apiserver's) rather than the spec's.
_SPEC_SOURCES = (
    ("affinity", "spec.scheduling.affinity"),
    ("tolerations", "spec.scheduling.tolerations"),
    ("nodeSelector", "spec.scheduling.nodeSelector"),
    (".env", "spec.engine.env"),
    ("env[", "spec.engine.env"),
    ("subjects[", "spec.access.bindings[].subjects"),
)


def _apply_hint(exc: ApplyError) -> str:
    """What to do about a write the API refused: the spec field the refused value comes
    from when the message names a pod-template field it feeds, else by the object's kind."""
    source = next((spec for part, spec in _SPEC_SOURCES if part in str(exc)), None)
    if source is not None:
        return f"the refused value comes from {source}: correct it there"
    if exc.key.kind == "PersistentVolumeClaim":
        return ("the model cache claim cannot take this change (a claim grows only when its "
                "StorageClass allows volume expansion): set spec.storage.size or spec.model "
                "back, or delete the claim to start over with an empty one")
    return ("if the object was edited by hand, delete it and the operator creates it again; "
            "otherwise change the spec")

