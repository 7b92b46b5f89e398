"""Compute a DeepSeekDeployment's status from its observed children (pure).

Conditions follow the Kubernetes API conventions and kstatus: ``Ready`` is the summary,
``Progressing`` is True while the operator or the cluster still works toward the spec,
``Stalled`` is True when they cannot get there without a change of the spec. The detail
conditions say where a replica is on its way: ``StorageReady`` (the model cache claim is
Bound), ``ModelCached`` (the download Job completed), ``Scheduled`` (every pod placed; when
GPUs are missing, the scheduler's own message), ``AutoscalerReady``.

``lastTransitionTime`` changes only when a condition's status changes, so a reconcile that
observes nothing new computes the same status and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepseek_operator.api.spec import SINGLE_WRITER_ACCESS_MODES
from deepseek_operator.api.status import (
    Condition,
    ConditionStatus,
    ConditionType,
    DeepSeekDeploymentStatus,
    Phase,
)
from deepseek_operator.controller.quantity import quantity_less

# Reasons (CamelCase, machine-readable), one constant each, as kubebuilder projects keep them.
REASON_BOUND = "ClaimBound"
REASON_CLAIM_PENDING = "ClaimPending"
REASON_CLAIM_RESIZING = "ClaimResizing"
REASON_CLAIM_TERMINATING = "ClaimTerminating"
REASON_CLAIM_TOO_SMALL = "ClaimTooSmall"
REASON_ACCESS_MODE_CONFLICT = "AccessModeConflict"
REASON_CLAIM_NOT_FOUND = "ClaimNotFound"
REASON_STORAGE_CLASS_NOT_FOUND = "StorageClassNotFound"
REASON_DOWNLOADED = "Downloaded"
REASON_DOWNLOADING = "Downloading"
REASON_DOWNLOAD_FAILED = "DownloadFailed"
REASON_WAITING_FOR_STORAGE = "WaitingForStorage"
REASON_ALL_SCHEDULED = "AllPodsScheduled"
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_NO_PODS = "NoPods"
REASON_REPLICAS_READY = "ReplicasReady"
REASON_SCALED_TO_ZERO = "ScaledToZero"
REASON_REPLICAS_NOT_READY = "ReplicasNotReady"
REASON_ROLLING_OUT = "RollingOut"
REASON_RECONCILED = "Reconciled"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_APPLY_FAILED = "ApplyFailed"
REASON_NAME_CONFLICT = "NameConflict"
REASON_AUTOSCALER_DISABLED = "Disabled"
REASON_HPA_MISSING = "HorizontalPodAutoscalerMissing"
REASON_HPA_OK = "HorizontalPodAutoscalerActive"
REASON_SCALEDOBJECT_OK = "ScaledObjectPresent"
REASON_SCALEDOBJECT_MISSING = "ScaledObjectMissing"
REASON_AUTOSCALER_PENDING = "AwaitingFirstDecision"

# Container waiting reasons of the kubelet that mean a pod will not start by itself soon
# (kubernetes pkg/kubelet/images/types.go and pkg/kubelet/container/sync_result.go):
# the image cannot be pulled, a referenced Secret or ConfigMap is missing, the container
# cannot be created, or it keeps crashing. "ContainerCreating" and "PodInitializing" are
# normal progress and are not reported.
STUCK_WAITING_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
    "CrashLoopBackOff",
})


def now_rfc3339() -> str:
    """Current UTC time as RFC 3339 with second precision (``2026-01-31T12:00:00Z``)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Observed:
    """What the reconciler saw of one DeepSeekDeployment's children, as API dicts.

    ``claim``: the model-cache PVC (or the existing claim); ``storage_class_missing``: the
    name of a StorageClass the spec names that does not exist; ``job``: the download Job
    (None when no download is needed, e.g. a pvc:// model); ``needs_download``: whether a
    Job is expected; ``job_pods``: the pods of an unfinished download Job;
    ``workload``: the Deployment or LeaderWorkerSet; ``pods``: its pods;
    ``desired_replicas``: replicas the workload should have; ``autoscaler``: the
    HorizontalPodAutoscaler or ScaledObject, when that mode is on; ``spec_replicas``: the
    custom resource's spec.replicas, which modes hpa and keda do not use;
    ``download_bytes``: what the download writes into the claim, None when nothing is
    downloaded.
    """

    claim: dict[str, Any] | None
    job: dict[str, Any] | None
    workload: dict[str, Any] | None
    pods: list[dict[str, Any]] = field(default_factory=list)
    desired_replicas: int = 1
    needs_download: bool = True
    storage_class_missing: str | None = None
    autoscaler: dict[str, Any] | None = None
    claim_name: str = ""
    job_pods: list[dict[str, Any]] = field(default_factory=list)
    spec_replicas: int | None = None
    download_bytes: float | None = None


def stuck_container(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """``(reason, message)`` of the first container of a live pod that waits for a reason
    in STUCK_WAITING_REASONS (init containers first), e.g. ``("ImagePullBackOff", 'pod
    r1-abc container engine: ImagePullBackOff: Back-off pulling image "x"')``; None when
    no container is stuck."""
    for pod in _live(pods):
        status = pod.get("status") or {}
        for container in [*(status.get("initContainerStatuses") or []),
                          *(status.get("containerStatuses") or [])]:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in STUCK_WAITING_REASONS:
                detail = f": {waiting['message']}" if waiting.get("message") else ""
                return str(reason), (f"pod {pod['metadata']['name']} container "
                                     f"{container.get('name', '')}: {reason}{detail}")
    return None


@dataclass(frozen=True)
class _Cond:
    type: ConditionType
    status: bool | None  # None = Unknown
    reason: str
    message: str


def _status_word(value: bool | None) -> ConditionStatus:
    return "Unknown" if value is None else ("True" if value else "False")


def _job_condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def job_succeeded(job: dict[str, Any]) -> bool:
    """True when a Job dict has a Complete (or SuccessCriteriaMet) condition."""
    return bool(_job_condition(job, "Complete") or _job_condition(job, "SuccessCriteriaMet"))


def job_failed(job: dict[str, Any]) -> bool:
    """True when a Job dict has a Failed condition."""
    return _job_condition(job, "Failed") is not None


def _storage(obs: Observed) -> _Cond:
    if obs.storage_class_missing:
        return _Cond(ConditionType.STORAGE_READY, False, REASON_STORAGE_CLASS_NOT_FOUND,
                     f'StorageClass "{obs.storage_class_missing}" does not exist; create it '
                     "or set spec.storage.storageClassName to an existing class")
    if obs.claim is None:
        return _Cond(ConditionType.STORAGE_READY, False, REASON_CLAIM_NOT_FOUND,
                     f'PersistentVolumeClaim "{obs.claim_name}" does not exist: create it, or '
                     "fix spec.storage.existingClaim or the pvc:// claim of spec.model.uri"
                     if obs.claim_name else "the model cache PersistentVolumeClaim does not "
                     "exist yet")
    name = obs.claim["metadata"]["name"]
    if obs.claim["metadata"].get("deletionTimestamp"):
        return _Cond(ConditionType.STORAGE_READY, False, REASON_CLAIM_TERMINATING,
                     f"PersistentVolumeClaim {name} is being deleted: the pods that mount "
                     "it keep it until they stop; then the operator creates it again and "
                     "downloads the weights again")
    phase = (obs.claim.get("status") or {}).get("phase", "Pending")
    if phase == "Bound":
        return _bound_claim(obs, obs.claim)
    return _Cond(ConditionType.STORAGE_READY, False, REASON_CLAIM_PENDING,
                 f"PersistentVolumeClaim {name} is {phase}")


def claim_storage(claim: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """``(requested, capacity)`` storage quantities of a PersistentVolumeClaim dict, each
    None when not set (no claim, or not bound yet)."""
    claim = claim or {}
    requested = (((claim.get("spec") or {}).get("resources") or {})
                 .get("requests") or {}).get("storage")
    capacity = ((claim.get("status") or {}).get("capacity") or {}).get("storage")
    return requested, capacity


def claim_shortfall(claim: Mapping[str, Any], download_bytes: float | None) -> str | None:
    """Why a claim cannot take the download yet: REASON_CLAIM_RESIZING when its capacity is
    below its request (an expansion in progress), REASON_CLAIM_TOO_SMALL when below
    ``download_bytes``; None when it fits or its capacity is not known yet."""
    requested, capacity = claim_storage(claim)
    if not capacity:
        return None
    if requested and quantity_less(capacity, requested):
        return REASON_CLAIM_RESIZING
    if download_bytes is not None and quantity_less(capacity, str(math.ceil(download_bytes))):
        return REASON_CLAIM_TOO_SMALL
    return None


def _bound_claim(obs: Observed, claim: dict[str, Any]) -> _Cond:
    """StorageReady of a Bound claim: is it as large as asked, large enough for the
    download, and mountable by every replica?"""
    name = claim["metadata"]["name"]
    requested, capacity = claim_storage(claim)
    shortfall = claim_shortfall(claim, obs.download_bytes)
    if shortfall == REASON_CLAIM_RESIZING:
        return _Cond(ConditionType.STORAGE_READY, False, REASON_CLAIM_RESIZING,
                     f"PersistentVolumeClaim {name} is Bound with {capacity} but {requested} "
                     "is requested: waiting for the volume to be expanded. If it never is "
                     "(the StorageClass or its CSI driver cannot expand volumes), or the size "
                     "was a mistake (a claim's request cannot be lowered), delete the claim: "
                     "the operator creates it at the size the spec asks and downloads again")
    if shortfall == REASON_CLAIM_TOO_SMALL:
        return _Cond(ConditionType.STORAGE_READY, False, REASON_CLAIM_TOO_SMALL,
                     f"PersistentVolumeClaim {name} holds {capacity}, less than the "
                     f"{(obs.download_bytes or 0) / 2**30:.1f} GiB the download writes: give "
                     "a larger claim in spec.storage.existingClaim")
    modes = set((claim.get("spec") or {}).get("accessModes") or [])
    if modes and modes <= set(SINGLE_WRITER_ACCESS_MODES) and obs.desired_replicas > 1:
        return _Cond(ConditionType.STORAGE_READY, False, REASON_ACCESS_MODE_CONFLICT,
                     f"PersistentVolumeClaim {name} is {', '.join(sorted(modes))}: pods on "
                     f"other nodes cannot mount it, and {obs.desired_replicas} replicas are "
                     "wanted; give a ReadWriteMany claim or use one replica")
    return _Cond(ConditionType.STORAGE_READY, True, REASON_BOUND,
                 f"PersistentVolumeClaim {name} is Bound")


def _cached(obs: Observed, storage: _Cond) -> _Cond:
    storage_ok = bool(storage.status)
    if not obs.needs_download:
        return _Cond(ConditionType.MODEL_CACHED, storage_ok,
                     REASON_DOWNLOADED if storage_ok else REASON_WAITING_FOR_STORAGE,
                     "weights are read from the given claim" if storage_ok else
                     "waiting for the model cache claim")
    if obs.claim is None:
        return _Cond(ConditionType.MODEL_CACHED, False, REASON_WAITING_FOR_STORAGE,
                     "the model cache claim does not exist, so neither do the weights")
    if obs.job is None:
        return _Cond(ConditionType.MODEL_CACHED, False, REASON_WAITING_FOR_STORAGE,
                     "the download Job does not exist yet" if storage_ok else
                     f"the download waits for the model cache claim: {storage.message}")
    name = obs.job["metadata"]["name"]
    if job_succeeded(obs.job):
        return _Cond(ConditionType.MODEL_CACHED, True, REASON_DOWNLOADED,
                     f"Job {name} filled the model cache")
    failed = _job_condition(obs.job, "Failed")
    if failed:
        return _Cond(ConditionType.MODEL_CACHED, False, REASON_DOWNLOAD_FAILED,
                     f"Job {name} failed: {failed.get('reason', '')}: "
                     f"{failed.get('message', '')}".strip())
    if not storage_ok:
        return _Cond(ConditionType.MODEL_CACHED, False, REASON_WAITING_FOR_STORAGE,
                     f"Job {name} waits for the model cache claim: {storage.message}")
    stuck = stuck_container(obs.job_pods)
    if stuck is not None:
        return _Cond(ConditionType.MODEL_CACHED, False, stuck[0], f"Job {name}: {stuck[1]}")
    return _Cond(ConditionType.MODEL_CACHED, False, REASON_DOWNLOADING,
                 f"Job {name} is downloading the weights")


def _pod_condition(pod: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def _live(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _scheduled(obs: Observed) -> _Cond:
    pods = _live(obs.pods)
    for pod in pods:
        cond = _pod_condition(pod, "PodScheduled")
        if cond and cond.get("status") == "False":
            return _Cond(ConditionType.SCHEDULED, False, REASON_UNSCHEDULABLE,
                         f"pod {pod['metadata']['name']}: {cond.get('message', '')}".strip())
    if not pods:
        return _Cond(ConditionType.SCHEDULED, obs.desired_replicas == 0 or None, REASON_NO_PODS,
                     "no serving pods exist")
    unplaced = [p for p in pods if not (p.get("spec") or {}).get("nodeName")]
    if unplaced:
        return _Cond(ConditionType.SCHEDULED, None, REASON_NO_PODS,
                     f"{len(unplaced)} pod(s) not placed yet")
    return _Cond(ConditionType.SCHEDULED, True, REASON_ALL_SCHEDULED,
                 f"{len(pods)} pod(s) placed on nodes")


def workload_counts(workload: dict[str, Any] | None) -> tuple[int, int, bool]:
    """(replicas, readyReplicas, rolled out) of a Deployment or LeaderWorkerSet dict.

    Rolled out means the workload controller has seen the latest spec and every replica
    runs it (observedGeneration and updatedReplicas, as ``kubectl rollout status`` checks).
    """
    if workload is None:
        return 0, 0, False
    spec, st = workload.get("spec") or {}, workload.get("status") or {}
    replicas = int(st.get("replicas") or 0)
    ready = int(st.get("readyReplicas") or 0)
    generation = workload["metadata"].get("generation", 0)
    seen = st.get("observedGeneration", 0) >= generation
    updated = int(st.get("updatedReplicas") or 0)
    want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    rolled_out = seen and updated >= want and replicas <= want
    return replicas, ready, rolled_out


def autoscaler_condition(mode: str, obs: Observed,
                         previous: Condition | None) -> _Cond:
    """AutoscalerReady for modes hpa, keda and none; mode operator keeps the loop's value."""
    if mode == "none":
        return _Cond(ConditionType.AUTOSCALER_READY, True, REASON_AUTOSCALER_DISABLED,
                     "autoscaling.mode is none: replicas follow spec.replicas")
    if mode == "operator":
        if previous is not None:
            return _Cond(ConditionType.AUTOSCALER_READY,
                         {"True": True, "False": False}.get(previous.status),
                         previous.reason, previous.message)
        return _Cond(ConditionType.AUTOSCALER_READY, None, REASON_AUTOSCALER_PENDING,
                     "the operator's autoscaler has not decided yet")
    if mode == "hpa":
        if obs.autoscaler is None:
            return _Cond(ConditionType.AUTOSCALER_READY, False, REASON_HPA_MISSING,
                         "the HorizontalPodAutoscaler does not exist yet")
        for cond in (obs.autoscaler.get("status") or {}).get("conditions") or []:
            if cond.get("status") == "False" and cond.get("type") in (
                    "AbleToScale", "ScalingActive"):
                return _Cond(ConditionType.AUTOSCALER_READY, False,
                             str(cond.get("reason") or "HorizontalPodAutoscalerInactive"),
                             f"HorizontalPodAutoscaler: {cond.get('message', '')}"
                             + _unused(obs))
        return _Cond(ConditionType.AUTOSCALER_READY, True, REASON_HPA_OK,
                     "replicas are owned by the HorizontalPodAutoscaler" + _unused(obs))
    if obs.autoscaler is None:
        return _Cond(ConditionType.AUTOSCALER_READY, False, REASON_SCALEDOBJECT_MISSING,
                     "the KEDA ScaledObject does not exist (is KEDA installed?)")
    return _Cond(ConditionType.AUTOSCALER_READY, True, REASON_SCALEDOBJECT_OK,
                 "replicas are owned by KEDA" + _unused(obs))


def _unused(obs: Observed) -> str:
    """A note when spec.replicas (e.g. from ``kubectl scale dsd``) differs from the count
    another autoscaler chose: it is not used, and says so instead of looking applied."""
    if obs.spec_replicas is None or obs.spec_replicas == obs.desired_replicas:
        return ""
    return (f"; spec.replicas ({obs.spec_replicas}) is not used in this mode (the workload "
            f"asks for {obs.desired_replicas})")


def _merge(new: list[_Cond], previous: list[Condition], generation: int,
           now: str) -> list[Condition]:
    before = {c.type: c for c in previous}
    out: list[Condition] = []
    for cond in new:
        status = _status_word(cond.status)
        old = before.get(cond.type)
        changed = old is None or old.status != status
        out.append(Condition(
            type=cond.type, status=status, reason=cond.reason, message=cond.message[:32768],
            last_transition_time=now if changed or old is None else old.last_transition_time,
            observed_generation=generation))
    return out


def compute_status(*, generation: int, mode: str, observed: Observed,
                   previous: DeepSeekDeploymentStatus | None, now: str,
                   selector: str, endpoint: str,
                   base: DeepSeekDeploymentStatus) -> DeepSeekDeploymentStatus:
    """The full status for a spec that is valid and fits.

    ``base`` carries the fields computed elsewhere (sizing, autoscaling); ``previous`` is
    the status currently stored, for lastTransitionTime and the autoscaler's condition.
    """
    prev_conds = previous.conditions if previous else []
    prev_by_type = {c.type: c for c in prev_conds}
    storage = _storage(observed)
    cached = _cached(observed, storage)
    scheduled = _scheduled(observed)
    scaler = autoscaler_condition(mode, observed, prev_by_type.get(ConditionType.AUTOSCALER_READY))
    replicas, ready, rolled_out = workload_counts(observed.workload)
    want = observed.desired_replicas

    download_failed = cached.reason == REASON_DOWNLOAD_FAILED
    if want == 0 and rolled_out and scaler.status is False:
        # Nothing serves, and nothing will wake it: that is not a healthy zero.
        is_ready, reason, message = False, scaler.reason, (
            f"scaled to zero, and the autoscaler cannot see traffic to scale up again: "
            f"{scaler.message}")
    elif want == 0 and rolled_out:
        is_ready, reason, message = True, REASON_SCALED_TO_ZERO, "scaled to zero replicas"
    elif storage.status and cached.status and rolled_out and ready >= want > 0:
        is_ready, reason, message = True, REASON_REPLICAS_READY, f"{ready}/{want} replicas ready"
    elif download_failed:
        is_ready, reason, message = False, cached.reason, cached.message
    elif not storage.status:
        is_ready, reason, message = False, storage.reason, storage.message
    elif not cached.status:
        is_ready, reason, message = False, cached.reason, cached.message
    elif scheduled.status is False:
        is_ready, reason, message = False, scheduled.reason, scheduled.message
    elif not rolled_out:
        is_ready, reason, message = False, REASON_ROLLING_OUT, (
            f"rolling out: {ready}/{want} replicas ready")
    else:
        is_ready, reason, message = False, REASON_REPLICAS_NOT_READY, (
            f"{ready}/{want} replicas ready")
    stuck = stuck_container(observed.pods) if not is_ready and reason in (
        REASON_ROLLING_OUT, REASON_REPLICAS_NOT_READY) else None
    if stuck is not None:  # say why the replicas do not come up, not only that they don't
        reason, message = stuck[0], f"{message}; {stuck[1]}"

    stalled = download_failed
    conds = [
        _Cond(ConditionType.READY, is_ready, reason, message),
        _Cond(ConditionType.PROGRESSING, not is_ready and not stalled,
              REASON_RECONCILED if is_ready else reason,
              "the deployment matches its spec" if is_ready else message),
        _Cond(ConditionType.STALLED, stalled, reason if stalled else REASON_RECONCILED,
              message if stalled else "no blocking problem"),
        storage, cached, scheduled, scaler,
    ]
    phase = _phase(is_ready, stalled, storage, cached, scheduled, ready, want, replicas)
    status = base.model_copy(update={
        "observed_generation": generation,
        "phase": phase,
        "conditions": _merge(conds, prev_conds, generation, now),
        "replicas": replicas,
        "ready_replicas": ready,
        "desired_replicas": want,
        "selector": selector,
        "endpoint": endpoint,
    })
    return status


def _phase(ready: bool, stalled: bool, storage: _Cond, cached: _Cond, scheduled: _Cond,
           ready_replicas: int, want: int, replicas: int) -> Phase:
    if stalled:
        return "Failed"
    if ready:
        return "Ready"
    if not storage.status or scheduled.status is False:
        return "Pending"
    if not cached.status:
        return "Downloading"
    if 0 < ready_replicas < want or (ready_replicas and replicas > want):
        return "Degraded"
    return "Starting"


WAITING_FOR_SPEC = ("waiting for a spec change; what the last valid spec created is left "
                    "as it is")
WAITING_FOR_OBJECT = ("waiting for the object to be fixed or deleted (the operator then "
                      "creates it again) or for a spec change")


def stalled_status(*, generation: int, reason: str, message: str,
                   previous: DeepSeekDeploymentStatus | None, now: str,
                   base: DeepSeekDeploymentStatus,
                   waiting: str = WAITING_FOR_SPEC) -> DeepSeekDeploymentStatus:
    """Status for a spec that cannot work as it is: Stalled=True, Ready=False, phase
    Failed; Progressing=False says what it waits for (``waiting``)."""
    prev_conds = previous.conditions if previous else []
    kept = [c for c in prev_conds if c.type not in (
        ConditionType.READY, ConditionType.PROGRESSING, ConditionType.STALLED)]
    conds = [_Cond(ConditionType.READY, False, reason, message),
             _Cond(ConditionType.PROGRESSING, False, reason, waiting),
             _Cond(ConditionType.STALLED, True, reason, message)]
    merged = _merge(conds, prev_conds, generation, now)
    return base.model_copy(update={
        "observed_generation": generation, "phase": "Failed",
        "conditions": merged + kept,
    })


REASON_API_NOT_INSTALLED = "APINotInstalled"
_API_HINTS = {
    "LeaderWorkerSet": "install the LeaderWorkerSet controller (a replica of this model spans "
                       "nodes)",
    "ScaledObject": "install KEDA, or choose autoscaling.mode operator or hpa",
    "PodMonitor": "install the Prometheus Operator",
}


def with_missing_apis(status: DeepSeekDeploymentStatus, missing: list[str], *,
                      previous: DeepSeekDeploymentStatus | None,
                      now: str) -> DeepSeekDeploymentStatus:
    """Mark a status Stalled because the cluster does not serve kinds the spec needs.

    ``missing``: e.g. ``["LeaderWorkerSet (leaderworkerset.x-k8s.io/v1)"]``. Installing
    the CRD (and its controller) unblocks it; the operator checks again every minute.
    """
    hints = [next((hint for kind, hint in _API_HINTS.items() if m.startswith(kind)),
                  "install its CRD and controller") for m in missing]
    message = "; ".join(f"the cluster does not serve {m}: {h}"
                        for m, h in zip(missing, hints, strict=True))
    generation = status.observed_generation or 0
    blocked = [_Cond(ConditionType.READY, False, REASON_API_NOT_INSTALLED, message),
               _Cond(ConditionType.PROGRESSING, False, REASON_API_NOT_INSTALLED, message),
               _Cond(ConditionType.STALLED, True, REASON_API_NOT_INSTALLED, message)]
    merged = _merge(blocked, previous.conditions if previous else [], generation, now)
    replaced = {c.type for c in merged}
    rest = [c for c in status.conditions if c.type not in replaced]
    return status.model_copy(update={"conditions": merged + rest, "phase": "Pending"})


def transitions(before: DeepSeekDeploymentStatus | None,
                after: DeepSeekDeploymentStatus) -> list[Condition]:
    """Conditions whose status changed (or appeared) between two statuses, for Events."""
    old = {c.type: c.status for c in (before.conditions if before else [])}
    return [c for c in after.conditions if old.get(c.type) != c.status]
