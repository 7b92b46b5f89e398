"""Predicates over observed Kubernetes objects (Jobs, claims, pods, workloads), as dicts.

Pure functions that read the ``status`` of standard kinds the way their controllers
write it; the status computation and the desired-state rules build on them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from deepseek_operator.api.conditions import REASON_CLAIM_RESIZING, REASON_CLAIM_TOO_SMALL
from deepseek_operator.controller.quantity import quantity_less

# Container waiting reasons of the kubelet that mean a pod will not start by itself soon
# (kubernetes pkg/kubelet/images/types.go and pkg/kubelet/container/sync_result.go):
# the image cannot be pulled, a referenced Secret or ConfigMap is missing, the container
# cannot be created, or it keeps crashing. "ContainerCreating" and "PodInitializing" are
# normal progress and are not reported.
STUCK_WAITING_REASONS: Final = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
    "CrashLoopBackOff",
})


def job_condition(job: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The Job's condition of type ``kind`` (Complete, Failed, ...) when it is True."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def job_succeeded(job: Mapping[str, Any]) -> bool:
    """True when a Job has a Complete (or SuccessCriteriaMet) condition."""
    return bool(job_condition(job, "Complete") or job_condition(job, "SuccessCriteriaMet"))


def job_failed(job: Mapping[str, Any]) -> bool:
    """True when a Job has a Failed condition."""
    return job_condition(job, "Failed") is not None


def job_finished(job: Mapping[str, Any]) -> bool:
    """True when a Job succeeded or failed (its pods no longer matter)."""
    return job_succeeded(job) or job_failed(job)


def claim_storage(claim: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """``(requested, capacity)`` storage quantities of a PersistentVolumeClaim, each None
    when not set (no claim, or not bound yet)."""
    claim = claim or {}
    requested = (((claim.get("spec") or {}).get("resources") or {})
                 .get("requests") or {}).get("storage")
    capacity = ((claim.get("status") or {}).get("capacity") or {}).get("storage")
    return requested, capacity


def claim_bound(claim: Mapping[str, Any] | None) -> bool:
    """True when the claim exists and its phase is Bound."""
    return claim is not None and (claim.get("status") or {}).get("phase") == "Bound"


def claim_shortfall(claim: Mapping[str, Any], download_bytes: float | None) -> str | None:
    """Why a claim cannot take the download yet: REASON_CLAIM_RESIZING when its capacity is
    below its request (an expansion in progress), REASON_CLAIM_TOO_SMALL when below
    ``download_bytes`` (bytes); None when it fits or its capacity is not known yet."""
    requested, capacity = claim_storage(claim)
    if not capacity:
        return None
    if requested and quantity_less(capacity, requested):
        return REASON_CLAIM_RESIZING
    if download_bytes is not None and quantity_less(capacity, str(math.ceil(download_bytes))):
        return REASON_CLAIM_TOO_SMALL
    return None


def termination_message(pods: list[dict[str, Any]], container: str) -> str:
    """``state.terminated.message`` of container ``container`` in the newest pod (by
    creationTimestamp) where it ended with a non-zero exit code and a message, stripped;
    "" when there is none. The kubelet fills it from the container's
    terminationMessagePath, or its log's tail with FallbackToLogsOnError (Kubernetes docs,
    "Customizing the termination message")."""
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "",
                      reverse=True):
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (status.get("state") or {}).get("terminated") or {}
            if status.get("name") == container and ended.get("exitCode") and \
                    str(ended.get("message") or "").strip():
                return str(ended["message"]).strip()
    return ""


def live_pods(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods that are not being deleted."""
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def pod_condition(pod: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """The pod's condition of type ``kind`` (PodScheduled, Ready, ...), whatever its status."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def stuck_container(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """``(reason, message)`` of the first container of a live pod that waits for a reason
    in STUCK_WAITING_REASONS (init containers first), e.g. ``("ImagePullBackOff", 'pod
    r1-abc container engine: ImagePullBackOff: Back-off pulling image "x"')``; None when
    no container is stuck."""
    for pod in live_pods(pods):
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


def workload_counts(workload: Mapping[str, Any] | None) -> tuple[int, int, bool]:
    """(replicas, readyReplicas, rolled out) of a Deployment or LeaderWorkerSet.

    Rolled out means the workload controller has seen the latest spec and every replica
    runs it (observedGeneration and updatedReplicas, as ``kubectl rollout status`` checks).
    A LeaderWorkerSet's status has no observedGeneration (LeaderWorkerSetStatus in
    sigs.k8s.io/lws api/leaderworkerset/v1, v0.8.0): there "seen" is a status at all and no
    ``UpdateInProgress=True`` condition (see lws_seen).
    """
    if workload is None:
        return 0, 0, False
    spec, st = workload.get("spec") or {}, workload.get("status") or {}
    replicas = int(st.get("replicas") or 0)
    ready = int(st.get("readyReplicas") or 0)
    generation = workload["metadata"].get("generation", 0)
    if workload.get("kind") == "LeaderWorkerSet" and "observedGeneration" not in st:
        seen = lws_seen(st)
    else:
        seen = st.get("observedGeneration", 0) >= generation
    updated = int(st.get("updatedReplicas") or 0)
    want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    rolled_out = seen and updated >= want and replicas <= want
    return replicas, ready, rolled_out


def serving_counts(*workloads: Mapping[str, Any] | None) -> tuple[int, int]:
    """(replicas, readyReplicas) of the workload with the most ready replicas, the first
    on a tie: while one kind replaces the other, the one that serves; (0, 0) for none."""
    counts = [workload_counts(w) for w in workloads if w is not None]
    replicas, ready, _ = max(counts, key=lambda c: c[1], default=(0, 0, False))
    return replicas, ready


def lws_seen(status: Mapping[str, Any]) -> bool:
    """Whether a LeaderWorkerSet controller has acted on its object's spec, from the
    ``status`` it writes (a dict): it has written one, and no rolling update of the
    templates is under way (condition ``UpdateInProgress`` not True).

    The controller records no observedGeneration, so a spec change it has not yet seen
    cannot be told apart: replica changes still show in the counts (updatedReplicas below,
    or replicas above, the spec), template changes only once the controller sets
    ``UpdateInProgress``, which it does on its first reconcile of the change.
    """
    if not status:
        return False
    return not any(c.get("type") == "UpdateInProgress" and c.get("status") == "True"
                   for c in status.get("conditions") or [])


def serving_replicas(workload: Mapping[str, Any] | None) -> int:
    """Ready replicas of a workload (0 when there is none): what serves traffic now."""
    return workload_counts(workload)[1]
