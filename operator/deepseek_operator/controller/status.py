"""Compute a DeepSeekDeployment's status from its observed children (pure).

Conditions follow the Kubernetes API conventions and kstatus: ``Ready`` is the summary,
``Progressing`` is True while the operator or the cluster still works toward the spec,
``Stalled`` is True when they cannot get there without a change (of the spec, or of the
cluster). The three are built once, by ``_summary``. The detail conditions say where a
replica is on its way: ``StorageReady`` (the model cache claim is Bound), ``ModelCached``
(the download Job completed), ``Scheduled`` (every pod placed; when GPUs are missing, the
scheduler's own message and the GPU label the pods ask for), ``AutoscalerReady``.

Every condition is set through ``api.conditions.set_condition``, so a reconcile that
observes nothing new computes the same status and writes nothing. ``phase`` is derived
from the conditions by one table (``phase``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from deepseek_operator.api.conditions import (
    REASON_ACCESS_MODE_CONFLICT,
    REASON_ALL_SCHEDULED,
    REASON_AUTOSCALER_DISABLED,
    REASON_AUTOSCALER_PENDING,
    REASON_BOUND,
    REASON_CLAIM_NOT_FOUND,
    REASON_CLAIM_PENDING,
    REASON_CLAIM_RESIZING,
    REASON_CLAIM_TERMINATING,
    REASON_CLAIM_TOO_SMALL,
    REASON_DOWNLOAD_FAILED,
    REASON_DOWNLOAD_STALLED,
    REASON_DOWNLOADED,
    REASON_DOWNLOADING,
    REASON_FAILED_CREATE,
    REASON_HPA_MISSING,
    REASON_HPA_OK,
    REASON_HPA_PENDING,
    REASON_NO_PODS,
    REASON_RECONCILED,
    REASON_REPLICAS_NOT_READY,
    REASON_REPLICAS_READY,
    REASON_ROLLING_OUT,
    REASON_SCALED_TO_ZERO,
    REASON_SCALEDOBJECT_FALLBACK,
    REASON_SCALEDOBJECT_MISSING,
    REASON_SCALEDOBJECT_NOT_READY,
    REASON_SCALEDOBJECT_NOT_RECONCILED,
    REASON_SCALEDOBJECT_OK,
    REASON_SCALEDOBJECT_PAUSED,
    REASON_STORAGE_CLASS_NOT_FOUND,
    REASON_UNSCHEDULABLE,
    REASON_WAITING_FOR_STORAGE,
    REASON_WORKLOAD_NOT_REPORTED,
    set_condition,
)
from deepseek_operator.api.spec import SINGLE_WRITER_ACCESS_MODES
from deepseek_operator.api.status import (
    Condition,
    ConditionType,
    DeepSeekDeploymentStatus,
    ModelCacheStatus,
    Phase,
)
from deepseek_operator.controller.claim_events import pending_claim_message, sanitize
from deepseek_operator.controller.predicates import (
    claim_shortfall,
    claim_storage,
    job_condition,
    job_succeeded,
    live_pods,
    pod_condition,
    serving_counts,
    stuck_container,
    workload_counts,
)
from deepseek_operator.controller.progress import (
    GIB,
    MIB,
    Progress,
    duration,
    parse_samples,
    progress,
)

GPU_NODE_LABELS = ("nvidia.com/gpu.product", "nvidia.com/gpu.memory")
"""Node labels the rendered pods select GPU nodes by (render/scheduling.py)."""


class Cond(NamedTuple):
    """A condition before it is merged into the stored ones: ``status`` None is Unknown."""

    type: ConditionType
    status: bool | None
    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """What the reconciler saw of one DeepSeekDeployment's children, as API dicts.

    ``claim``: the model-cache PVC (or the existing claim); ``claim_name``: its name;
    ``claim_given``: the claim is not the operator's (spec.storage.existingClaim or a
    pvc:// spec.model.uri); ``storage_class_missing``: the
    name of a StorageClass the spec names that does not exist; ``job``: the download Job
    (None when no download is needed, e.g. a pvc:// model); ``needs_download``: whether a
    Job is expected; ``job_pods``: the pods of an unfinished download Job;
    ``workload``: the Deployment or LeaderWorkerSet; ``kept_workload``: the workload of
    the other kind, which keeps serving while ``workload`` replaces it (None when there is
    none); ``pods``: its serving pods (a
    LeaderWorkerSet's leaders), ``worker_pods``: a LeaderWorkerSet's other pods;
    ``desired_replicas``: replicas the workload should have; ``autoscaler``: the
    HorizontalPodAutoscaler or ScaledObject, when that mode is on; ``spec_replicas``: the
    custom resource's spec.replicas, which modes hpa and keda do not use;
    ``download_bytes``: what the download writes into the claim, None when nothing is
    downloaded. ``download_log``: the last lines of the running download container's log
    (controller/progress.py reads its progress lines), None when not read;
    ``download_log_error``: why it could not be read. ``download_failure``: the
    termination message of the failed download container (what the script said), "" when
    none. ``stall_seconds``: seconds without
    progress that make a stall (spec.download.stallSeconds); ``deadline_seconds``: the
    download Job's activeDeadlineSeconds, ``spec_deadline_seconds``: the one the current
    spec gives (render.download.deadline_seconds). ``claim_events``: the Events about a claim that
    is not Bound (None when not read), ``claim_events_error``: why they could not be read,
    ``claim_provisioner``: its StorageClass's provisioner ("" when unknown); the
    StorageReady message says why such a claim waits (controller/claim_events.py).
    """

    claim: dict[str, Any] | None
    job: dict[str, Any] | None
    workload: dict[str, Any] | None
    pods: list[dict[str, Any]] = field(default_factory=list)
    desired_replicas: int = 1
    needs_download: bool = True
    storage_class_missing: str | None = None
    storage_class_is_default: bool = False  # the missing class is the operator's --storage-class
    autoscaler: dict[str, Any] | None = None
    claim_name: str = ""
    claim_given: bool = False
    job_pods: list[dict[str, Any]] = field(default_factory=list)
    spec_replicas: int | None = None
    download_bytes: float | None = None
    download_log: str | None = None
    download_log_read_at: float | None = None  # seconds since 1970, the operator's clock
    download_log_error: str = ""
    claim_events: list[dict[str, Any]] | None = None
    claim_events_error: str = ""
    claim_provisioner: str = ""
    download_failure: str = ""
    stall_seconds: float = float("inf")
    deadline_seconds: int | None = None
    # The LeaderWorkerSet's worker pods (component server-worker): not counted as
    # replicas, but one that cannot be placed keeps its group from serving.
    worker_pods: list[dict[str, Any]] = field(default_factory=list)
    kept_workload: dict[str, Any] | None = None
    spec_deadline_seconds: int | None = None




def _storage(obs: Observed) -> Cond:
    if obs.storage_class_missing:
        return Cond(ConditionType.STORAGE_READY, False, REASON_STORAGE_CLASS_NOT_FOUND,
                    f'StorageClass "{obs.storage_class_missing}" does not exist; create it '
                    "or set spec.storage.storageClassName to an existing class"
                    + (" (the class is the operator's default, its --storage-class)"
                       if obs.storage_class_is_default else ""))
    if obs.claim is None:
        return Cond(ConditionType.STORAGE_READY, False, REASON_CLAIM_NOT_FOUND,
                    f'PersistentVolumeClaim "{obs.claim_name}" does not exist: create it, or '
                    "fix spec.storage.existingClaim or the pvc:// claim of spec.model.uri"
                    if obs.claim_given else "the model cache PersistentVolumeClaim does not "
                    "exist yet")
    name = obs.claim["metadata"]["name"]
    if obs.claim["metadata"].get("deletionTimestamp"):
        return Cond(ConditionType.STORAGE_READY, False, REASON_CLAIM_TERMINATING,
                    f"PersistentVolumeClaim {name} is being deleted: the pods that mount "
                    "it keep it until they stop; "
                    + ("the operator does not own it (spec.storage.existingClaim or the "
                       "pvc:// claim of spec.model.uri), so the deployment waits until a "
                       "claim of that name exists again" if obs.claim_given else
                       "then the operator creates it again and downloads the weights again"))
    phase = (obs.claim.get("status") or {}).get("phase", "Pending")
    if phase == "Bound":
        return _bound_claim(obs, obs.claim)
    return Cond(ConditionType.STORAGE_READY, False, REASON_CLAIM_PENDING,
                pending_claim_message(obs.claim, obs.claim_events, obs.claim_events_error,
                                      obs.claim_provisioner))


def _bound_claim(obs: Observed, claim: dict[str, Any]) -> Cond:
    """StorageReady of a Bound claim: is it as large as asked, large enough for the
    download, and mountable by every replica?"""
    name = claim["metadata"]["name"]
    requested, capacity = claim_storage(claim)
    shortfall = claim_shortfall(claim, obs.download_bytes)
    if shortfall == REASON_CLAIM_RESIZING:
        return Cond(ConditionType.STORAGE_READY, False, REASON_CLAIM_RESIZING,
                    f"PersistentVolumeClaim {name} is Bound with {capacity} but {requested} "
                    "is requested: waiting for the volume to be expanded. If it never is "
                    "(the StorageClass or its CSI driver cannot expand volumes), or the size "
                    "was a mistake (a claim's request cannot be lowered), delete the claim: "
                    "the operator creates it at the size the spec asks and downloads again")
    if shortfall == REASON_CLAIM_TOO_SMALL:
        return Cond(ConditionType.STORAGE_READY, False, REASON_CLAIM_TOO_SMALL,
                    f"PersistentVolumeClaim {name} holds {capacity}, less than the "
                    f"{(obs.download_bytes or 0) / 2**30:.1f} GiB the download writes: give "
                    "a larger claim in spec.storage.existingClaim")
    modes = set((claim.get("spec") or {}).get("accessModes") or [])
    if modes and modes <= set(SINGLE_WRITER_ACCESS_MODES) and obs.desired_replicas > 1:
        return Cond(ConditionType.STORAGE_READY, False, REASON_ACCESS_MODE_CONFLICT,
                    f"PersistentVolumeClaim {name} is {', '.join(sorted(modes))}: pods on "
                    f"other nodes cannot mount it, and {obs.desired_replicas} replicas are "
                    "wanted; give a ReadWriteMany claim or use one replica")
    return Cond(ConditionType.STORAGE_READY, True, REASON_BOUND,
                f"PersistentVolumeClaim {name} is Bound")


def _cached(obs: Observed, storage: Cond, last: ModelCacheStatus | None = None) -> Cond:
    """ModelCached; ``last``: the stored status.modelCache (the figures a failure names)."""
    storage_ok = bool(storage.status)
    if not obs.needs_download:
        return Cond(ConditionType.MODEL_CACHED, storage_ok,
                    REASON_DOWNLOADED if storage_ok else REASON_WAITING_FOR_STORAGE,
                    "weights are read from the given claim" if storage_ok else
                    "waiting for the model cache claim")
    if obs.claim is None:
        return Cond(ConditionType.MODEL_CACHED, False, REASON_WAITING_FOR_STORAGE,
                    "the model cache claim does not exist, so neither do the weights")
    if obs.claim["metadata"].get("deletionTimestamp"):
        return Cond(ConditionType.MODEL_CACHED, False, REASON_WAITING_FOR_STORAGE,
                    "the model cache claim is being deleted, and the weights with it")
    if obs.job is None:
        return Cond(ConditionType.MODEL_CACHED, False, REASON_WAITING_FOR_STORAGE,
                    "the download Job does not exist yet" if storage_ok else
                    f"the download waits for the model cache claim: {storage.message}")
    name = obs.job["metadata"]["name"]
    if job_succeeded(obs.job):
        return Cond(ConditionType.MODEL_CACHED, True, REASON_DOWNLOADED,
                    f"Job {name} filled the model cache")
    failed = job_condition(obs.job, "Failed")
    if failed:
        return Cond(ConditionType.MODEL_CACHED, False, REASON_DOWNLOAD_FAILED,
                    _failure_message(name, failed, obs, last))
    if not storage_ok:
        return Cond(ConditionType.MODEL_CACHED, False, REASON_WAITING_FOR_STORAGE,
                    f"Job {name} waits for the model cache claim: {storage.message}")
    stuck = stuck_container(obs.job_pods)
    if stuck is not None:
        return Cond(ConditionType.MODEL_CACHED, False, stuck[0], f"Job {name}: {stuck[1]}")
    figures = download_progress(obs)
    if figures is not None and figures.stalled_seconds >= obs.stall_seconds:
        return Cond(ConditionType.MODEL_CACHED, False, REASON_DOWNLOAD_STALLED,
                    f"Job {name} made no progress for {duration(figures.stalled_seconds)} "
                    f"(spec.download.stallSeconds {obs.stall_seconds:.0f}): "
                    f"{figures.summary()}. Delete its pod (kubectl delete pod -l "
                    f"batch.kubernetes.io/job-name={name}): the Job starts another, which "
                    "resumes from what is on the claim")
    if figures is not None:
        return Cond(ConditionType.MODEL_CACHED, False, REASON_DOWNLOADING,
                    f"Job {name} is downloading the weights: {figures.summary()}")
    why = f" ({obs.download_log_error})" if obs.download_log_error else ""
    return Cond(ConditionType.MODEL_CACHED, False, REASON_DOWNLOADING,
                f"Job {name} is downloading the weights (no progress figures yet{why})")


def download_progress(obs: Observed) -> Progress | None:
    """The running download's figures from its log (None without progress lines)."""
    if not obs.download_log:
        return None
    return progress(parse_samples(obs.download_log), obs.download_bytes,
                    now=obs.download_log_read_at)


def _failure_message(name: str, failed: dict[str, Any], obs: Observed,
                     last: ModelCacheStatus | None) -> str:
    """ModelCached's message for a failed download Job; a deadline says which, and why."""
    reason, message = failed.get("reason", ""), failed.get("message", "")
    if reason != "DeadlineExceeded":
        said = f". The download said: {obs.download_failure}" if obs.download_failure else ""
        return f"Job {name} failed: {reason}: {message}".strip() + said
    deadline = ((obs.job or {}).get("spec") or {}).get("activeDeadlineSeconds")
    figures = ""
    if last is not None and last.bytes_present is not None:
        figures = f"; last figures: {last.bytes_present / GIB:.1f} GiB"
        if last.bytes_expected:
            figures += f" of {last.bytes_expected / GIB:.1f} GiB"
        if last.bytes_per_second is not None:
            figures += f" at {last.bytes_per_second / MIB:.1f} MiB/s"
    wanted = obs.spec_deadline_seconds
    advice = (f"The spec now gives {wanted} s ({duration(float(wanted))}): delete the Job, "
              "the operator creates it again with that deadline" if wanted and
              deadline is not None and wanted != deadline else
              "For a slower link lower minMiBPerSecond or raise activeDeadlineSeconds, then "
              "delete the Job: the operator creates it again")
    return (f"Job {name} failed: DeadlineExceeded: the download ran longer than its "
            f"deadline, activeDeadlineSeconds {deadline} ({duration(float(deadline or 0))}: "
            "the checkpoint at spec.download.minMiBPerSecond plus an hour, or "
            f"spec.download.activeDeadlineSeconds){figures}. {advice} and the download "
            "resumes from what is on the claim")


def autoscaler_condition(mode: str, obs: Observed,
                         previous: Condition | None) -> Cond:
    """AutoscalerReady for modes hpa, keda and none; mode operator keeps the loop's value."""
    if mode == "none":
        return Cond(ConditionType.AUTOSCALER_READY, True, REASON_AUTOSCALER_DISABLED,
                    "autoscaling.mode is none: replicas follow spec.replicas")
    if mode == "operator":
        if previous is not None:
            return Cond(ConditionType.AUTOSCALER_READY,
                        {"True": True, "False": False}.get(previous.status),
                        previous.reason, previous.message)
        return Cond(ConditionType.AUTOSCALER_READY, None, REASON_AUTOSCALER_PENDING,
                    "the operator's autoscaler has not decided yet")
    if mode == "hpa":
        if obs.autoscaler is None:
            return Cond(ConditionType.AUTOSCALER_READY, False, REASON_HPA_MISSING,
                        "the HorizontalPodAutoscaler does not exist yet")
        hpa_conds = (obs.autoscaler.get("status") or {}).get("conditions") or []
        for cond in hpa_conds:
            if cond.get("status") == "False" and cond.get("type") in (
                    "AbleToScale", "ScalingActive"):
                return Cond(ConditionType.AUTOSCALER_READY, False,
                            str(cond.get("reason") or "HorizontalPodAutoscalerInactive"),
                            f"HorizontalPodAutoscaler: {cond.get('message', '')}"
                            + _unused(obs))
        if not {c.get("type") for c in hpa_conds} & {"AbleToScale", "ScalingActive"}:
            # Not evaluated yet: that it works is not known before its first sync.
            return Cond(ConditionType.AUTOSCALER_READY, None, REASON_HPA_PENDING,
                        "the HorizontalPodAutoscaler has no conditions yet: the HPA "
                        "controller (kube-controller-manager) writes them at its first "
                        "sync (every 15 s by default)" + _unused(obs))
        return Cond(ConditionType.AUTOSCALER_READY, True, REASON_HPA_OK,
                    "replicas are owned by the HorizontalPodAutoscaler" + _unused(obs))
    if obs.autoscaler is None:
        return Cond(ConditionType.AUTOSCALER_READY, False, REASON_SCALEDOBJECT_MISSING,
                    "the KEDA ScaledObject does not exist (is KEDA installed?)")
    return _scaled_object_condition(obs)


def _scaled_object_condition(obs: Observed) -> Cond:
    """AutoscalerReady from the ScaledObject's own conditions, as KEDA 2.21 writes them
    (kedacore/keda apis/keda/v1alpha1/condition_types.go,
    pkg/scaling/executor/scale_scaledobjects.go, pkg/fallback/fallback.go), first match:

    - no Ready condition, or Ready Unknown without a reason (KEDA's initial value): no KEDA
      operator has reconciled it;
    - Paused=True: someone paused it (KEDA's paused annotations);
    - Ready False, or Unknown with a reason (``PartialTriggerError``): its reason;
    - Fallback=True: the query fails and KEDA serves the fallback (the current count, at
      least fallback.replicas), naming the failing metrics (not their failure counts,
      which grow at every HPA read);
    - HPAActive=False (KEDA mirrors its HPA's ScalingActive there; HPA health does not
      touch Ready, kedacore/keda#7914): the HPA's reason, e.g.
      ``FailedGetExternalMetric`` when the external metrics API does not answer;
    - else True, noting an inactive trigger (no traffic seen)."""
    status = (obs.autoscaler or {}).get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    ready, fallback = conds.get("Ready"), conds.get("Fallback")
    paused, hpa = conds.get("Paused"), conds.get("HPAActive")
    if ready is None or (ready.get("status") == "Unknown" and not ready.get("reason")):
        return Cond(ConditionType.AUTOSCALER_READY, False, REASON_SCALEDOBJECT_NOT_RECONCILED,
                    "the ScaledObject has no Ready condition yet: KEDA has not reconciled "
                    "it (is the KEDA operator running?)" + _unused(obs))
    if paused is not None and paused.get("status") == "True":
        return Cond(ConditionType.AUTOSCALER_READY, False, REASON_SCALEDOBJECT_PAUSED,
                    f"KEDA does not scale: {paused.get('message') or 'ScaledObject is paused'}"
                    + _unused(obs))
    if ready.get("status") != "True":
        return Cond(ConditionType.AUTOSCALER_READY, False,
                    str(ready.get("reason") or REASON_SCALEDOBJECT_NOT_READY),
                    f"ScaledObject: {ready.get('message', '')}" + _unused(obs))
    if fallback is not None and fallback.get("status") == "True":
        # Names only: KEDA counts the failures up at every HPA read, and a count in the
        # message would make each of them a status write.
        failing = sorted(metric for metric, health in (status.get("health") or {}).items()
                         if isinstance(health, dict) and health.get("status") == "Failing")
        threshold = (((obs.autoscaler or {}).get("spec") or {}).get("fallback") or {}).get(
            "failureThreshold")
        return Cond(ConditionType.AUTOSCALER_READY, False, REASON_SCALEDOBJECT_FALLBACK,
                    "the query fails, so KEDA holds the replica count (its fallback"
                    + (f", after {threshold} failed reads" if threshold is not None else "")
                    + ")" + (f": {', '.join(failing)} failing" if failing else "")
                    + f". {str(fallback.get('message') or '').rstrip('.')}".rstrip(". ")
                    + ". Check spec.autoscaling.prometheus.url and .query (KEDA's operator "
                    "log has the error)" + _unused(obs))
    if hpa is not None and hpa.get("status") == "False":
        return Cond(ConditionType.AUTOSCALER_READY, False,
                    str(hpa.get("reason") or REASON_SCALEDOBJECT_NOT_READY),
                    f"KEDA's HorizontalPodAutoscaler: {hpa.get('message', '')}" + _unused(obs))
    active = (conds.get("Active") or {}).get("status") == "True"
    return Cond(ConditionType.AUTOSCALER_READY, True, REASON_SCALEDOBJECT_OK,
                "replicas are owned by KEDA" + ("" if active else
                                                " (inactive: no traffic seen)") + _unused(obs))


def _unused(obs: Observed) -> str:
    """A note when spec.replicas (e.g. from ``kubectl scale dsd``) differs from the count
    another autoscaler chose: it is not used, and says so instead of looking applied."""
    if obs.spec_replicas is None or obs.spec_replicas == obs.desired_replicas:
        return ""
    return (f"; spec.replicas ({obs.spec_replicas}) is not used in this mode (the workload "
            f"asks for {obs.desired_replicas})")


def _asked_gpu_labels(pod: dict[str, Any]) -> str:
    """The GPU node labels a pod requires, as ``key=value`` or ``key>value`` text ('' when
    none), from its required node affinity."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    terms = ((affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
             .get("nodeSelectorTerms") or [])
    asked = []
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") not in GPU_NODE_LABELS:
                continue
            values = ",".join(expr.get("values") or [])
            op = {"In": "=", "Gt": ">", "Lt": "<"}.get(expr.get("operator", ""), " ")
            asked.append(f"{expr['key']}{op}{values}")
    return " or ".join(sorted(set(asked)))


def _pods_refused(workload: Mapping[str, Any] | None) -> str:
    """Why the workload's controller cannot create pods, from a Deployment's
    ``ReplicaFailure=True`` condition (its ReplicaSet's FailedCreate: a missing
    PriorityClass, a ResourceQuota, Pod Security admission...), sanitized; "" when it
    can. Without this the pods simply never appear, and status says only NoPods."""
    conditions = ((workload or {}).get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            name = (workload or {}).get("metadata", {}).get("name", "")
            return sanitize(f"{(workload or {}).get('kind', 'Deployment')} {name} cannot "
                            f"create pods: {cond.get('message', '')}", limit=1024)
    return ""


def _scheduled(obs: Observed, storage: Cond) -> Cond:
    pods = live_pods(obs.pods) + live_pods(obs.worker_pods)
    for pod in pods:
        cond = pod_condition(pod, "PodScheduled")
        if not cond or cond.get("status") != "False":
            continue
        message = f"pod {pod['metadata']['name']}: {cond.get('message', '')}".strip()
        if "PersistentVolumeClaim" in message:
            # The scheduler waits for the claim to bind (its message may outlive the
            # binding until it tries again): normal start-up, not a GPU shortage.
            return Cond(ConditionType.SCHEDULED, None, REASON_WAITING_FOR_STORAGE,
                        "the pods wait for the model cache claim: "
                        f"{storage.message if not storage.status else 'it is bound now'}")
        asked = _asked_gpu_labels(pod)
        if asked and "node affinity" in message:
            message += f" (the pods ask for nodes labelled {asked})"
        return Cond(ConditionType.SCHEDULED, False, REASON_UNSCHEDULABLE, message)
    refused = _pods_refused(obs.workload)
    if refused:
        return Cond(ConditionType.SCHEDULED, False, REASON_FAILED_CREATE, refused)
    if not pods:
        return Cond(ConditionType.SCHEDULED, obs.desired_replicas == 0 or None,
                    REASON_NO_PODS, "no serving pods exist")
    unplaced = [p for p in pods if not (p.get("spec") or {}).get("nodeName")]
    if unplaced:
        return Cond(ConditionType.SCHEDULED, None, REASON_NO_PODS,
                    f"{len(unplaced)} pod(s) not placed yet")
    return Cond(ConditionType.SCHEDULED, True, REASON_ALL_SCHEDULED,
                f"{len(pods)} pod(s) placed on nodes")


def _summary(ready: bool, stalled: bool, reason: str, message: str,
             waiting: str = "") -> list[Cond]:
    """Ready, Progressing and Stalled from one verdict: ready, stalled (``waiting`` says
    for what), or on its way."""
    return [
        Cond(ConditionType.READY, ready, reason, message),
        Cond(ConditionType.PROGRESSING, not ready and not stalled,
             REASON_RECONCILED if ready else reason,
             "the deployment matches its spec" if ready else (waiting or message)),
        Cond(ConditionType.STALLED, stalled, reason if stalled else REASON_RECONCILED,
             message if stalled else "no blocking problem"),
    ]


def _merged(conds: list[Cond], previous: list[Condition], generation: int,
            now: str) -> list[Condition]:
    """``previous`` with each of ``conds`` set (api.conditions.set_condition)."""
    out = list(previous)
    for cond in conds:
        out = set_condition(out, cond.type, cond.status, cond.reason, cond.message,
                            generation=generation, now=now)
    return out


def _verdict(obs: Observed, storage: Cond, cached: Cond, scheduled: Cond,
             scaler: Cond) -> tuple[bool, str, str]:
    """(ready, reason, message) of the Ready condition."""
    _, ready, rolled_out = workload_counts(obs.workload)
    want = obs.desired_replicas
    if want == 0 and rolled_out and scaler.status is False:
        # Nothing serves, and nothing will wake it: that is not a healthy zero.
        return False, scaler.reason, ("scaled to zero, and the autoscaler cannot see "
                                      f"traffic to scale up again: {scaler.message}")
    if want == 0 and rolled_out:
        return True, REASON_SCALED_TO_ZERO, "scaled to zero replicas"
    if storage.status and cached.status and rolled_out and ready >= want > 0:
        return True, REASON_REPLICAS_READY, f"{ready}/{want} replicas ready"
    if cached.reason == REASON_DOWNLOAD_FAILED:
        return False, cached.reason, cached.message
    for detail in (storage, cached):
        if not detail.status:
            return False, detail.reason, detail.message
    if scheduled.status is False:
        return False, scheduled.reason, scheduled.message
    if obs.workload is not None and not obs.workload.get("status"):
        kind, name = obs.workload.get("kind", "workload"), obs.workload["metadata"]["name"]
        return False, REASON_WORKLOAD_NOT_REPORTED, (
            f"{kind} {name} has no status yet: if this lasts, no {kind} controller is "
            "running (is it installed and healthy?)")
    replicas = workload_counts(obs.workload)[0]
    if rolled_out:
        reason, message = REASON_REPLICAS_NOT_READY, f"{ready}/{want} replicas ready"
    elif replicas > want:
        reason, message = REASON_ROLLING_OUT, (f"scaling down to {want} replicas "
                                               f"({replicas} exist, {ready} ready)")
    else:
        reason, message = REASON_ROLLING_OUT, (f"rolling out: {ready} replicas ready, {want} "
                                               "wanted on the new spec")
    stuck = stuck_container(obs.pods)
    if stuck is not None:  # say why the replicas do not come up, not only that they don't
        reason, message = stuck[0], f"{message}; {stuck[1]}"
    return False, reason, message


def _still_serving(obs: Observed) -> str:
    """What the kept workload of the other kind serves while ``obs.workload`` replaces it
    ("" when there is none, or it serves nothing)."""
    if obs.kept_workload is None or obs.workload is None:
        return ""
    _, ready, _ = workload_counts(obs.kept_workload)
    if not ready:
        return ""
    return (f"; {obs.kept_workload.get('kind', 'workload')} "
            f"{obs.kept_workload['metadata']['name']} keeps serving {ready} ready "
            f"replica{'s' if ready != 1 else ''} until the {obs.workload.get('kind')} has "
            "all its replicas ready")


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
    cached = _cached(observed, storage, previous.model_cache if previous else None)
    scheduled = _scheduled(observed, storage)
    scaler = autoscaler_condition(mode, observed, prev_by_type.get(ConditionType.AUTOSCALER_READY))
    is_ready, reason, message = _verdict(observed, storage, cached, scheduled, scaler)
    if not is_ready:
        message += _still_serving(observed)
    stalled = cached.reason == REASON_DOWNLOAD_FAILED
    conds = [*_summary(is_ready, stalled, reason, message), storage, cached, scheduled, scaler]
    replicas, ready = serving_counts(observed.workload, observed.kept_workload)
    merged = _merged(conds, prev_conds, generation, now)
    return base.model_copy(update={
        "observed_generation": generation,
        "phase": phase(merged, ready),
        "conditions": merged,
        "replicas": replicas,
        "ready_replicas": ready,
        "desired_replicas": observed.desired_replicas,
        "selector": selector,
        "endpoint": endpoint,
        "model_cache": _model_cache(observed, cached, previous),
    })


def _model_cache(obs: Observed, cached: Cond,
                 previous: DeepSeekDeploymentStatus | None) -> ModelCacheStatus | None:
    """status.modelCache: the running download's figures; a failed or otherwise waiting
    download keeps the last ones; none once the weights are cached (or not downloaded)."""
    last = previous.model_cache if previous else None
    if cached.status or not obs.needs_download:
        return None
    if cached.reason in (REASON_DOWNLOADING, REASON_DOWNLOAD_STALLED):
        figures = download_progress(obs)
        if figures is not None:
            return figures.to_status(obs.deadline_seconds)
        if last is None:
            return ModelCacheStatus.model_validate({
                "bytesExpected": int(obs.download_bytes or 0) or None,
                "deadlineSeconds": obs.deadline_seconds})
    return last


def phase(conditions: list[Condition], ready_replicas: int) -> Phase:
    """The printer column's one word, from the conditions (first matching row wins):

    ======================================================  ===========
    Ready=True                                              Ready
    Stalled=True, replicas ready and the weights cached     Degraded
    (the last good version still serves)
    Stalled=True otherwise                                  Failed
    replicas ready, but not Ready (fewer than desired, a    Degraded
    rollout or resize under way): serving, not as asked
    StorageReady=False or Scheduled=False                   Pending
    ModelCached=False                                       Downloading
    otherwise (pods loading the model)                      Starting
    ======================================================  ===========
    """
    status = {c.type: c.status for c in conditions}
    if status.get(ConditionType.READY) == "True":
        return "Ready"
    if status.get(ConditionType.STALLED) == "True":
        serving = ready_replicas > 0 and status.get(ConditionType.MODEL_CACHED) != "False"
        return "Degraded" if serving else "Failed"
    if ready_replicas > 0:
        return "Degraded"
    if "False" in (status.get(ConditionType.STORAGE_READY), status.get(ConditionType.SCHEDULED)):
        return "Pending"
    if status.get(ConditionType.MODEL_CACHED) == "False":
        return "Downloading"
    return "Starting"


WAITING_FOR_SPEC = ("waiting for a spec change; what the last valid spec created is left "
                    "as it is")
WAITING_FOR_OBJECT = ("waiting for the object to be fixed or deleted (the operator then "
                      "creates it again) or for a spec change")
WAITING_FOR_API = ("waiting for the API to be installed (noticed when its CRD appears) or for a "
                   "spec change; what the last servable spec created keeps serving")


def stalled_status(*, generation: int, reason: str, message: str,
                   previous: DeepSeekDeploymentStatus | None, now: str,
                   base: DeepSeekDeploymentStatus,
                   waiting: str = WAITING_FOR_SPEC) -> DeepSeekDeploymentStatus:
    """``base`` marked Stalled=True and Ready=False with ``reason`` and ``message``;
    Progressing=False says what it waits for (``waiting``). The detail conditions of
    ``base`` (or ``previous``) are kept; the phase follows from the result."""
    prev_conds = base.conditions or (previous.conditions if previous else [])
    merged = _merged(_summary(False, True, reason, message, waiting), prev_conds,
                     generation, now)
    return base.model_copy(update={
        "observed_generation": generation,
        "phase": phase(merged, base.ready_replicas or 0),
        "conditions": merged,
    })


_API_HINTS = {
    "LeaderWorkerSet": "install the LeaderWorkerSet controller (a replica of this model "
                       "spans nodes), or lower spec.model.maxModelLen x "
                       "spec.gpu.maxConcurrentSequences (or the quantization) until one "
                       "replica fits one node",
    "ScaledObject": "install KEDA, or set spec.autoscaling.mode to operator or hpa",
    "PodMonitor": "install the Prometheus Operator",
}


def missing_apis_message(missing: list[str]) -> str:
    """Why a spec needs kinds the cluster does not serve, with what to do for each.

    ``missing``: e.g. ``["LeaderWorkerSet (leaderworkerset.x-k8s.io/v1)"]``.
    """
    hints = [next((hint for kind, hint in _API_HINTS.items() if m.startswith(kind)),
                  "install its CRD and controller") for m in missing]
    return "; ".join(f"the cluster does not serve {m}: {h}"
                     for m, h in zip(missing, hints, strict=True))
