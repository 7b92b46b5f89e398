"""Condition types, reasons, and the one way to set a condition.

Every condition the operator writes goes through ``set_condition``, which keeps the
semantics of apimachinery's ``meta.SetStatusCondition`` (k8s.io/apimachinery
pkg/api/meta/conditions.go): one condition per type, ``lastTransitionTime`` moves only
when ``status`` changes, and reason, message and ``observedGeneration`` are always
updated. Reasons are CamelCase constants, one each, as kubebuilder projects keep them.
"""

import datetime as dt
from collections.abc import Sequence
from typing import Final

from .status import Condition, ConditionStatus, ConditionType, DeepSeekDeploymentStatus

__all__ = ["ConditionType", "rfc3339", "set_condition", "status_word", "transitions"]

# StorageReady
REASON_BOUND: Final = "ClaimBound"
REASON_CLAIM_PENDING: Final = "ClaimPending"
REASON_CLAIM_RESIZING: Final = "ClaimResizing"
REASON_CLAIM_TERMINATING: Final = "ClaimTerminating"
REASON_CLAIM_TOO_SMALL: Final = "ClaimTooSmall"
REASON_CLAIM_NOT_FOUND: Final = "ClaimNotFound"
REASON_ACCESS_MODE_CONFLICT: Final = "AccessModeConflict"
REASON_STORAGE_CLASS_NOT_FOUND: Final = "StorageClassNotFound"
REASON_CLAIM_IMMUTABLE: Final = "ClaimImmutable"
# ModelCached
REASON_DOWNLOADED: Final = "Downloaded"
REASON_DOWNLOADING: Final = "Downloading"
REASON_DOWNLOAD_FAILED: Final = "DownloadFailed"
REASON_DOWNLOAD_STALLED: Final = "DownloadStalled"
REASON_WAITING_FOR_STORAGE: Final = "WaitingForStorage"
# Scheduled
REASON_ALL_SCHEDULED: Final = "AllPodsScheduled"
REASON_UNSCHEDULABLE: Final = "Unschedulable"
REASON_NO_PODS: Final = "NoPods"
REASON_FAILED_CREATE: Final = "FailedCreate"
# Ready, Progressing, Stalled
REASON_REPLICAS_READY: Final = "ReplicasReady"
REASON_SCALED_TO_ZERO: Final = "ScaledToZero"
REASON_REPLICAS_NOT_READY: Final = "ReplicasNotReady"
REASON_ROLLING_OUT: Final = "RollingOut"
REASON_WORKLOAD_NOT_REPORTED: Final = "WorkloadNotReported"
REASON_RECONCILED: Final = "Reconciled"
REASON_INVALID_SPEC: Final = "InvalidSpec"
REASON_APPLY_FAILED: Final = "ApplyFailed"
REASON_NAME_CONFLICT: Final = "NameConflict"
REASON_API_NOT_INSTALLED: Final = "APINotInstalled"
# AutoscalerReady: modes none, hpa and keda (computed by the reconcile)
REASON_AUTOSCALER_DISABLED: Final = "Disabled"
REASON_HPA_MISSING: Final = "HorizontalPodAutoscalerMissing"
REASON_HPA_OK: Final = "HorizontalPodAutoscalerActive"
REASON_HPA_PENDING: Final = "HorizontalPodAutoscalerPending"
REASON_SCALEDOBJECT_OK: Final = "ScaledObjectReady"
REASON_SCALEDOBJECT_NOT_RECONCILED: Final = "ScaledObjectNotReconciled"
REASON_SCALEDOBJECT_NOT_READY: Final = "ScaledObjectNotReady"
REASON_SCALEDOBJECT_FALLBACK: Final = "ScaledObjectFallback"
REASON_SCALEDOBJECT_MISSING: Final = "ScaledObjectMissing"
REASON_SCALEDOBJECT_PAUSED: Final = "ScaledObjectPaused"
REASON_AUTOSCALER_PENDING: Final = "AwaitingFirstDecision"
# AutoscalerReady: mode operator (computed by the autoscaler's evaluation)
REASON_METRICS_OK: Final = "MetricsAvailable"
REASON_NO_SERIES: Final = "NoMetrics"
REASON_METRICS_UNAVAILABLE: Final = "MetricsUnavailable"
REASON_INVALID_QUERY: Final = "InvalidQuery"

MAX_MESSAGE_LENGTH: Final = 32768
"""metav1.Condition's limit on ``message``."""


def rfc3339(epoch: float | None = None) -> str:
    """``epoch`` (seconds since 1970, default now) as RFC 3339 UTC with second precision,
    e.g. ``2026-01-31T12:00:00Z`` (the form of metav1.Time)."""
    moment = dt.datetime.now(dt.UTC) if epoch is None else dt.datetime.fromtimestamp(
        epoch, dt.UTC)
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_word(value: bool | None) -> ConditionStatus:
    """A condition's status from a tri-state: None is ``Unknown``."""
    return "Unknown" if value is None else ("True" if value else "False")


def set_condition(conditions: Sequence[Condition], type_: str, status: bool | None,
                  reason: str, message: str, *, generation: int | None,
                  now: str) -> list[Condition]:
    """``conditions`` with the condition of ``type_`` set (added, or replaced in place).

    ``status``: True, False or None (Unknown). ``generation``: the metadata.generation the
    condition was computed from. ``now``: RFC 3339, used as ``lastTransitionTime`` when the
    type is new or its status changed; otherwise the previous time is kept. The message is
    cut to metav1.Condition's limit. Returns a new list; the input is not changed.
    """
    word = status_word(status)
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == word else now
    new = Condition(type=type_, status=word, reason=reason,
                    message=message[:MAX_MESSAGE_LENGTH], last_transition_time=since,
                    observed_generation=generation)
    if old is None:
        return [*conditions, new]
    return [new if c.type == type_ else c for c in conditions]


def transitions(before: DeepSeekDeploymentStatus | None,
                after: DeepSeekDeploymentStatus) -> list[Condition]:
    """Conditions of ``after`` whose status changed (or that appeared) since ``before``."""
    old = {c.type: c.status for c in (before.conditions if before else [])}
    return [c for c in after.conditions if old.get(c.type) != c.status]
