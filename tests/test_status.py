"""Status computed from observed children: conditions, phase, transitions."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek_operator.api.conditions import transitions
from deepseek_operator.api.status import Condition, DeepSeekDeploymentStatus
from deepseek_operator.controller.reconcile import _details_of
from deepseek_operator.controller.status import (
    WAITING_FOR_OBJECT,
    Observed,
    _storage,
    compute_status,
    phase,
    stalled_status,
)

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def _claim(phase: str = "Bound") -> dict[str, Any]:
    return {"metadata": {"name": "r1-model-cache"}, "status": {"phase": phase}}


def _job(condition: str | None = "Complete", message: str = "") -> dict[str, Any]:
    conds = [{"type": condition, "status": "True", "reason": "BackoffLimitExceeded",
              "message": message}] if condition else []
    return {"metadata": {"name": "r1-download"}, "status": {"conditions": conds}}


def _workload(want: int, ready: int, updated: int | None = None,
              generation: int = 1, observed: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "r1", "generation": generation},
            "spec": {"replicas": want},
            "status": {"replicas": want, "readyReplicas": ready, "observedGeneration": observed,
                       "updatedReplicas": want if updated is None else updated}}


def _pod(name: str, node: str | None, unschedulable: str | None = None) -> dict[str, Any]:
    conds = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
              "message": unschedulable}] if unschedulable else [
        {"type": "PodScheduled", "status": "True"}]
    return {"metadata": {"name": name}, "spec": {"nodeName": node} if node else {},
            "status": {"conditions": conds}}


def _compute(obs: Observed, previous: DeepSeekDeploymentStatus | None = None,
             now: str = T0, mode: str = "none", generation: int = 1) -> DeepSeekDeploymentStatus:
    return compute_status(generation=generation, mode=mode, observed=obs, previous=previous,
                          now=now, selector="sel", endpoint="http://r1.ai.svc:8000/v1",
                          base=DeepSeekDeploymentStatus())


def _conds(status: DeepSeekDeploymentStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


READY_PODS = [_pod("r1-a", "gpu-h100-0"), _pod("r1-b", "gpu-h100-1")]


@pytest.mark.parametrize(("case", "obs", "phase", "expect"), [
    ("all ready", Observed(_claim(), _job(), _workload(2, 2), READY_PODS, 2), "Ready",
     {"Ready": ("True", "ReplicasReady"), "Progressing": ("False", "Reconciled"),
      "Stalled": ("False", "Reconciled"), "StorageReady": ("True", "ClaimBound"),
      "ModelCached": ("True", "Downloaded"), "Scheduled": ("True", "AllPodsScheduled")}),
    ("claim pending", Observed(_claim("Pending"), None, None, [], 1), "Pending",
     {"Ready": ("False", "ClaimPending"), "Progressing": ("True", "ClaimPending"),
      "StorageReady": ("False", "ClaimPending"), "ModelCached": ("False", "WaitingForStorage")}),
    ("storage class missing", Observed(_claim("Pending"), None, None, [], 1,
                                       storage_class_missing="fast-nvme"), "Pending",
     {"Ready": ("False", "StorageClassNotFound"),
      "StorageReady": ("False", "StorageClassNotFound")}),
    ("downloading", Observed(_claim(), _job(None), _workload(1, 0), [], 1), "Downloading",
     {"Ready": ("False", "Downloading"), "ModelCached": ("False", "Downloading")}),
    ("download failed", Observed(_claim(), _job("Failed", "Job has reached the specified "
                                                "backoff limit"), _workload(1, 0), [], 1),
     "Failed", {"Ready": ("False", "DownloadFailed"), "Stalled": ("True", "DownloadFailed"),
                "Progressing": ("False", "DownloadFailed")}),
    ("unschedulable", Observed(_claim(), _job(), _workload(1, 0), [
        _pod("r1-a", None, "0/5 nodes are available: 4 Insufficient nvidia.com/gpu.")], 1),
     "Pending", {"Ready": ("False", "Unschedulable"), "Scheduled": ("False", "Unschedulable")}),
    ("starting", Observed(_claim(), _job(), _workload(1, 0), [_pod("r1-a", "n")], 1),
     "Starting", {"Ready": ("False", "ReplicasNotReady"), "Progressing": ("True",
                                                                           "ReplicasNotReady")}),
    ("rolling out", Observed(_claim(), _job(), _workload(2, 2, updated=1), READY_PODS, 2),
     "Degraded", {"Ready": ("False", "RollingOut")}),
    ("new generation not seen", Observed(_claim(), _job(), _workload(
        2, 2, generation=2, observed=1), READY_PODS, 2), "Degraded",
     {"Ready": ("False", "RollingOut")}),
    ("no download needed", Observed(_claim(), None, _workload(1, 1), [_pod("r1-a", "n")], 1,
                                    needs_download=False), "Ready",
     {"ModelCached": ("True", "Downloaded"), "Ready": ("True", "ReplicasReady")}),
    ("one of two ready", Observed(_claim(), _job(), _workload(2, 1), READY_PODS, 2),
     "Degraded", {"Ready": ("False", "ReplicasNotReady")}),
    ("scaled to zero", Observed(_claim(), _job(), _workload(0, 0), [], 0), "Ready",
     {"Ready": ("True", "ScaledToZero"), "Scheduled": ("True", "NoPods")}),
])
def test_conditions_from_observed_children(case: str, obs: Observed, phase: str,
                                           expect: dict[str, tuple[str, str]]) -> None:
    status = _compute(obs)
    assert status.phase == phase, case
    conds = _conds(status)
    for ctype, value in expect.items():
        assert conds[ctype] == value, (case, ctype)
    assert status.observed_generation == 1
    assert len({c.type for c in status.conditions}) == len(status.conditions)


def test_a_claim_bound_below_its_request_is_not_storage_ready() -> None:
    claim = {"metadata": {"name": "r1-model-cache"},
             "spec": {"resources": {"requests": {"storage": "165Gi"}}},
             "status": {"phase": "Bound", "capacity": {"storage": "77Gi"}}}
    status = _compute(Observed(claim, _job(None), None, [], 1))
    storage = next(c for c in status.conditions if c.type == "StorageReady")
    assert (storage.status, storage.reason) == ("False", "ClaimResizing")
    assert "Bound with 77Gi but 165Gi is requested" in storage.message
    assert status.phase == "Pending"
    claim["status"]["capacity"] = {"storage": "165Gi"}
    assert _conds(_compute(Observed(claim, _job(), None, [], 1)))["StorageReady"] == (
        "True", "ClaimBound")


def _bound(capacity: str, *modes: str) -> dict[str, Any]:
    return {"metadata": {"name": "tiny"},
            "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": capacity}}}


def test_an_existing_claim_smaller_than_the_download_is_not_storage_ready() -> None:
    obs = Observed(_bound("1Gi", "ReadWriteMany"), _job(None), None, [], 1,
                   download_bytes=14.2 * 2**30)
    storage = next(c for c in _compute(obs).conditions if c.type == "StorageReady")
    assert (storage.status, storage.reason) == ("False", "ClaimTooSmall")
    assert storage.message == ("PersistentVolumeClaim tiny holds 1Gi, less than the 14.2 GiB "
                               "the download writes: give a larger claim in "
                               "spec.storage.existingClaim")
    roomy = Observed(_bound("20Gi", "ReadWriteMany"), _job(None), None, [], 1,
                     download_bytes=14.2 * 2**30)
    assert _conds(_compute(roomy))["StorageReady"] == ("True", "ClaimBound")
    weights_given = Observed(_bound("1Gi", "ReadWriteMany"), None, None, [], 1,
                             needs_download=False)
    assert _conds(_compute(weights_given))["StorageReady"] == ("True", "ClaimBound")


def test_a_single_node_claim_for_several_replicas_is_not_storage_ready() -> None:
    obs = Observed(_bound("20Gi", "ReadWriteOnce"), _job(), _workload(3, 3), READY_PODS, 3)
    storage = next(c for c in _compute(obs).conditions if c.type == "StorageReady")
    assert (storage.status, storage.reason) == ("False", "AccessModeConflict")
    assert "is ReadWriteOnce: pods on other nodes cannot mount it, and 3 replicas" in (
        storage.message)
    one = Observed(_bound("20Gi", "ReadWriteOnce"), _job(), _workload(1, 1), READY_PODS[:1], 1)
    assert _conds(_compute(one))["StorageReady"] == ("True", "ClaimBound")


def test_without_its_claim_the_cache_is_not_filled_whatever_the_old_job_says() -> None:
    status = _compute(Observed(None, _job(), _workload(1, 1), [_pod("a", "n")], 1))
    assert _conds(status)["ModelCached"] == ("False", "WaitingForStorage")
    assert _conds(status)["StorageReady"] == ("False", "ClaimNotFound")


def test_a_claim_being_deleted_is_not_storage_ready() -> None:
    claim = {**_claim(), "metadata": {"name": "r1-model-cache",
                                      "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    status = _compute(Observed(claim, _job(), _workload(1, 1), [_pod("a", "n")], 1))
    storage = next(c for c in status.conditions if c.type == "StorageReady")
    assert (storage.status, storage.reason) == ("False", "ClaimTerminating")
    assert "is being deleted" in storage.message
    assert storage.message.endswith("creates it again and downloads the weights again")
    assert _conds(status)["Ready"] == ("False", "ClaimTerminating")


def test_a_given_claim_is_named_as_the_users_not_the_operators() -> None:
    """existingClaim (or a pvc:// uri): the operator never creates that claim, so its
    messages do not promise to, and point at the fields that name it."""
    claim = {**_claim(), "metadata": {"name": "shared",
                                      "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    going = _compute(Observed(claim, _job(), _workload(1, 1), [_pod("a", "n")], 1,
                              claim_name="shared", claim_given=True))
    storage = next(c for c in going.conditions if c.type == "StorageReady")
    assert storage.reason == "ClaimTerminating"
    assert "the operator does not own it (spec.storage.existingClaim" in storage.message
    assert "creates it again" not in storage.message
    assert _conds(going)["ModelCached"] == ("False", "WaitingForStorage"), \
        "the weights go with the claim, whatever the Job that filled it says"
    missing = _compute(Observed(None, _job(None), None, [], 1, claim_name="shared",
                                claim_given=True))
    storage = next(c for c in missing.conditions if c.type == "StorageReady")
    assert storage.message.startswith('PersistentVolumeClaim "shared" does not exist: '
                                      "create it, or fix spec.storage.existingClaim")
    ours = _compute(Observed(None, _job(None), None, [], 1, claim_name="r1-model-cache"))
    storage = next(c for c in ours.conditions if c.type == "StorageReady")
    assert storage.message == "the model cache PersistentVolumeClaim does not exist yet"


def _waiting(pod: dict[str, Any], reason: str, message: str = "",
             init: bool = False) -> dict[str, Any]:
    state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    key = "initContainerStatuses" if init else "containerStatuses"
    return {**pod, "status": {**pod["status"], key: [{"name": "engine", "state": state}]}}


def test_a_stuck_serving_container_is_the_ready_reason_with_its_message() -> None:
    pod = _waiting(_pod("r1-a", "n"), "ImagePullBackOff",
                   'Back-off pulling image "registry.invalid/vllm:v0"')
    status = _compute(Observed(_claim(), _job(), _workload(1, 0), [pod], 1))
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "ImagePullBackOff")
    assert ready.message == ('0/1 replicas ready; pod r1-a container engine: ImagePullBackOff: '
                             'Back-off pulling image "registry.invalid/vllm:v0"')
    assert _conds(status)["Progressing"] == ("True", "ImagePullBackOff")


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing"])
def test_normal_waiting_is_not_reported(reason: str) -> None:
    pod = _waiting(_pod("r1-a", "n"), reason)
    status = _compute(Observed(_claim(), _job(), _workload(1, 0), [pod], 1))
    assert _conds(status)["Ready"] == ("False", "ReplicasNotReady")


def test_a_stuck_download_pod_is_the_model_cached_reason() -> None:
    pod = _waiting(_pod("r1-download-x", "n"), "CreateContainerConfigError",
                   'secret "hf-token" not found', init=True)
    status = _compute(Observed(_claim(), _job(None), None, [], 1, job_pods=[pod]))
    cached = next(c for c in status.conditions if c.type == "ModelCached")
    assert (cached.status, cached.reason) == ("False", "CreateContainerConfigError")
    assert cached.message == ('Job r1-download: pod r1-download-x container engine: '
                              'CreateContainerConfigError: secret "hf-token" not found')
    assert _conds(status)["Ready"] == ("False", "CreateContainerConfigError")
    assert status.phase == "Downloading"


def test_unschedulable_message_is_the_schedulers() -> None:
    message = "0/5 nodes are available: 4 Insufficient nvidia.com/gpu, 1 node(s) had taint."
    status = _compute(Observed(_claim(), _job(), _workload(1, 0),
                               [_pod("r1-a", None, message)], 1))
    scheduled = next(c for c in status.conditions if c.type == "Scheduled")
    assert message in scheduled.message


def test_a_worker_pod_that_cannot_be_placed_is_unschedulable() -> None:
    message = "0/7 nodes are available: 7 Insufficient nvidia.com/gpu."
    leaders = [_pod("r1-0", "gpu-a100-0")]
    workers = [_pod("r1-0-1", None, message)]
    status = _compute(Observed(_claim(), _job(), _workload(1, 1), leaders, 1,
                               worker_pods=workers))
    scheduled = next(c for c in status.conditions if c.type == "Scheduled")
    assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    assert scheduled.message == f"pod r1-0-1: {message}"
    placed = _compute(Observed(_claim(), _job(), _workload(1, 1), leaders, 1,
                               worker_pods=[_pod("r1-0-1", "gpu-a100-1")]))
    scheduled = next(c for c in placed.conditions if c.type == "Scheduled")
    assert scheduled.message == "2 pod(s) placed on nodes"


def test_last_transition_time_only_moves_when_status_changes() -> None:
    obs_ready = Observed(_claim(), _job(), _workload(2, 2), READY_PODS, 2)
    first = _compute(obs_ready, now=T0)
    again = _compute(obs_ready, previous=first, now=T1)
    assert again == first  # nothing observed changed: identical status, no write
    assert transitions(first, again) == []
    degraded = _compute(Observed(_claim(), _job(), _workload(2, 1), READY_PODS, 2),
                        previous=first, now=T1)
    ready = {c.type: c for c in degraded.conditions}["Ready"]
    storage = {c.type: c for c in degraded.conditions}["StorageReady"]
    assert (ready.status, ready.last_transition_time) == ("False", T1)
    assert storage.last_transition_time == T0
    assert [c.type for c in transitions(first, degraded)] == ["Ready", "Progressing"]


def test_autoscaler_condition_by_mode() -> None:
    obs = Observed(_claim(), _job(), _workload(1, 1), [_pod("a", "n")], 1)
    assert _conds(_compute(obs, mode="none"))["AutoscalerReady"] == ("True", "Disabled")
    assert _conds(_compute(obs, mode="hpa"))["AutoscalerReady"] == (
        "False", "HorizontalPodAutoscalerMissing")
    assert _conds(_compute(obs, mode="operator"))["AutoscalerReady"] == (
        "Unknown", "AwaitingFirstDecision")
    hpa = {"status": {"conditions": [{"type": "ScalingActive", "status": "False",
                                      "reason": "FailedGetPodsMetric",
                                      "message": "no metrics returned"}]}}
    with_hpa = Observed(obs.claim, obs.job, obs.workload, obs.pods, 1, autoscaler=hpa)
    assert _conds(_compute(with_hpa, mode="hpa"))["AutoscalerReady"] == (
        "False", "FailedGetPodsMetric")
    # Created, not yet synced by the HPA controller: not known to work yet.
    fresh = Observed(obs.claim, obs.job, obs.workload, obs.pods, 1, autoscaler={"status": {}})
    assert _conds(_compute(fresh, mode="hpa"))["AutoscalerReady"] == (
        "Unknown", "HorizontalPodAutoscalerPending")
    synced = Observed(obs.claim, obs.job, obs.workload, obs.pods, 1, autoscaler={
        "status": {"conditions": [{"type": "AbleToScale", "status": "True"},
                                  {"type": "ScalingActive", "status": "True"}]}})
    assert _conds(_compute(synced, mode="hpa"))["AutoscalerReady"] == (
        "True", "HorizontalPodAutoscalerActive")


def _scaled_object(**conditions: str) -> dict[str, Any]:
    """An autoscaler object whose status has these conditions (type=status), with a
    message naming each; an HPA ignores the ones it does not know."""
    return {"status": {"conditions": [
        {"type": kind, "status": status, "reason": f"{kind}Reason", "message": f"{kind} says"}
        for kind, status in conditions.items()]}}


@pytest.mark.parametrize(("conditions", "expect", "words"), [
    ({}, ("False", "ScaledObjectNotReconciled"), "is the KEDA operator running?"),
    ({"Ready": "Unknown"}, ("False", "ReadyReason"), "ScaledObject: Ready says"),
    ({"Ready": "False"}, ("False", "ReadyReason"), "ScaledObject: Ready says"),
    ({"Ready": "True", "Fallback": "True"}, ("False", "ScaledObjectFallback"),
     "KEDA holds the replica count (its fallback). Fallback says"),
    ({"Ready": "True", "Paused": "True"}, ("False", "ScaledObjectPaused"),
     "KEDA does not scale: Paused says"),
    ({"Ready": "True", "Paused": "False", "HPAActive": "False"}, ("False", "HPAActiveReason"),
     "KEDA's HorizontalPodAutoscaler: HPAActive says"),
    ({"Ready": "True", "HPAActive": "True", "Active": "True"}, ("True", "ScaledObjectReady"),
     "owned by KEDA"),
    ({"Ready": "True", "Active": "False"}, ("True", "ScaledObjectReady"), "inactive"),
    ({"Ready": "True", "Active": "True"}, ("True", "ScaledObjectReady"), "owned by KEDA"),
])
def test_keda_mode_reads_the_scaled_objects_own_conditions(
        conditions: dict[str, str], expect: tuple[str, str], words: str) -> None:
    obs = Observed(_claim(), _job(), _workload(1, 1), [_pod("a", "n")], 1,
                   autoscaler=_scaled_object(**conditions))
    scaler = next(c for c in _compute(obs, mode="keda").conditions
                  if c.type == "AutoscalerReady")
    assert (scaler.status, scaler.reason) == expect
    assert words in scaler.message


def _keda_condition(status: dict[str, Any]) -> Any:
    """AutoscalerReady in mode keda for a ScaledObject with this status (a "spec" key in
    it becomes the ScaledObject's spec)."""
    status = dict(status)
    spec = status.pop("spec", {})
    obs = Observed(_claim(), _job(), _workload(3, 3), READY_PODS, 3,
                   autoscaler={"spec": spec, "status": status})
    return next(c for c in _compute(obs, mode="keda").conditions
                if c.type == "AutoscalerReady")


def test_keda_initial_unknown_ready_is_not_reconciled_but_a_trigger_error_is_said() -> None:
    # KEDA initialises Ready as Unknown without a reason (GetInitializedConditions); a
    # trigger that errors while others work sets Unknown with PartialTriggerError.
    fresh = _keda_condition({"conditions": [{"type": "Ready", "status": "Unknown"}]})
    assert (fresh.status, fresh.reason) == ("False", "ScaledObjectNotReconciled")
    partial = _keda_condition({"conditions": [{
        "type": "Ready", "status": "Unknown", "reason": "PartialTriggerError",
        "message": "Some triggers defined in ScaledObject are not working correctly"}]})
    assert (partial.status, partial.reason) == ("False", "PartialTriggerError")
    assert "not working correctly" in partial.message


def test_keda_fallback_names_the_failing_metric() -> None:
    # As KEDA 2.21 writes it when the Prometheus trigger fails past failureThreshold.
    scaler = _keda_condition({
        "spec": {"fallback": {"failureThreshold": 3, "replicas": 1}},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "ScaledObjectReady"},
            {"type": "Fallback", "status": "True", "reason": "FallbackExists",
             "message": "At least one trigger is falling back on this scaled object"},
            {"type": "HPAActive", "status": "True", "reason": "HPAActive"}],
        "health": {"s0-prometheus": {"numberOfFailures": 5, "status": "Failing"},
                   "s1-other": {"numberOfFailures": 0, "status": "Happy"}}})
    assert (scaler.status, scaler.reason) == ("False", "ScaledObjectFallback")
    assert scaler.message == (
        "the query fails, so KEDA holds the replica count (its fallback, after 3 failed "
        "reads): s0-prometheus failing. At least one trigger is falling back on this "
        "scaled object. Check spec.autoscaling.prometheus.url and .query (KEDA's operator "
        "log has the error)")


def test_keda_hpa_that_cannot_read_the_external_metric_is_not_ready() -> None:
    # Ready stays True when the HPA fails (KEDA 2.21); HPAActive carries the HPA's reason.
    scaler = _keda_condition({"conditions": [
        {"type": "Ready", "status": "True", "reason": "ScaledObjectReady"},
        {"type": "HPAActive", "status": "False", "reason": "FailedGetExternalMetric",
         "message": "HPA is not actively scaling: the HPA was unable to compute the "
                    "replica count"}]})
    assert (scaler.status, scaler.reason) == ("False", "FailedGetExternalMetric")
    assert scaler.message.startswith("KEDA's HorizontalPodAutoscaler: HPA is not actively")
    disabled = _keda_condition({"conditions": [
        {"type": "Ready", "status": "True", "reason": "ScaledObjectReady"},
        {"type": "HPAActive", "status": "True", "reason": "ScalingDisabled"}]})
    assert (disabled.status, disabled.reason) == ("True", "ScaledObjectReady")


@pytest.mark.parametrize(("mode", "owner"), [("hpa", "the HorizontalPodAutoscaler"),
                                             ("keda", "KEDA")])
def test_another_autoscalers_count_is_desired_and_spec_replicas_is_said_unused(
        mode: str, owner: str) -> None:
    # AbleToScale: what the HPA controller writes at its first sync (KEDA ignores it).
    obs = Observed(_claim(), _job(), _workload(3, 3), READY_PODS, 3,
                   autoscaler=_scaled_object(Ready="True", Active="True", AbleToScale="True"),
                   spec_replicas=1)
    status = _compute(obs, mode=mode)
    assert status.desired_replicas == 3
    scaler = next(c for c in status.conditions if c.type == "AutoscalerReady")
    assert scaler.status == "True"
    assert scaler.message == (f"replicas are owned by {owner}; spec.replicas (1) is not used "
                              "in this mode (the workload asks for 3)")
    same = Observed(_claim(), _job(), _workload(3, 3), READY_PODS, 3,
                    autoscaler=_scaled_object(Ready="True", Active="True", AbleToScale="True"),
                    spec_replicas=3)
    assert next(c for c in _compute(same, mode=mode).conditions
                if c.type == "AutoscalerReady").message == f"replicas are owned by {owner}"


def test_scaled_to_zero_without_metrics_is_not_ready() -> None:
    obs = Observed(_claim(), _job(), _workload(0, 0), [], 0)
    first = _compute(obs, mode="operator")
    blind = first.model_copy(update={"conditions": [
        c if c.type != "AutoscalerReady" else c.model_copy(update={
            "status": "False", "reason": "MetricsUnavailable",
            "message": "Prometheus at http://p:9090 is unreachable; holding 0 replicas"})
        for c in first.conditions]})
    status = _compute(obs, previous=blind, mode="operator")
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "MetricsUnavailable")
    assert ready.message.startswith("scaled to zero, and the autoscaler cannot see traffic")


def test_operator_mode_keeps_the_loops_condition() -> None:
    obs = Observed(_claim(), _job(), _workload(1, 1), [_pod("a", "n")], 1)
    first = _compute(obs, mode="operator")
    loop_says = first.model_copy(update={"conditions": [
        c if c.type != "AutoscalerReady" else c.model_copy(update={
            "status": "False", "reason": "MetricsUnavailable", "message": "down"})
        for c in first.conditions]})
    after = _compute(obs, previous=loop_says, mode="operator", now=T1)
    assert _conds(after)["AutoscalerReady"] == ("False", "MetricsUnavailable")


def test_stalled_status_keeps_detail_conditions() -> None:
    obs = Observed(_claim(), _job(), _workload(1, 1), [_pod("a", "n")], 1)
    before = _compute(obs)
    status = stalled_status(generation=2, reason="InvalidSpec",
                            message="spec.gpu.count: needs 16 GPUs", previous=before, now=T1,
                            base=before)
    conds = _conds(status)
    # The last good Deployment still serves 1/1: the phase says so instead of "Failed".
    assert status.phase == "Degraded" and status.observed_generation == 2
    assert conds["Stalled"] == ("True", "InvalidSpec")
    assert conds["Ready"] == ("False", "InvalidSpec")
    assert conds["StorageReady"] == ("True", "ClaimBound")
    progressing = {c.type: c for c in status.conditions}["Progressing"]
    assert progressing.message == ("waiting for a spec change; what the last valid spec "
                                   "created is left as it is")
    refused = stalled_status(generation=2, reason="ApplyFailed", message="apply Service ...",
                             previous=before, now=T1, base=before, waiting=WAITING_FOR_OBJECT)
    assert {c.type: c for c in refused.conditions}["Progressing"].message.startswith(
        "waiting for the object to be fixed or deleted")


def test_missing_apis_stall_with_a_hint_for_each() -> None:
    from deepseek_operator.controller.status import WAITING_FOR_API, missing_apis_message

    obs = Observed(_claim(), _job(), None, [], 1)
    message = missing_apis_message(["ScaledObject (keda.sh/v1alpha1)"])
    status = stalled_status(generation=1, reason="APINotInstalled", message=message,
                            previous=None, now=T1, base=_compute(obs), waiting=WAITING_FOR_API)
    stalled = {c.type: c for c in status.conditions}["Stalled"]
    assert (stalled.status, stalled.reason) == ("True", "APINotInstalled")
    assert "install KEDA" in stalled.message and "LeaderWorkerSet" not in stalled.message
    assert "spec.autoscaling.mode" in stalled.message
    assert status.phase == "Failed"  # stalled, and nothing serves


def test_the_lws_hint_names_the_other_way_out() -> None:
    from deepseek_operator.controller.status import missing_apis_message

    message = missing_apis_message(["LeaderWorkerSet (leaderworkerset.x-k8s.io/v1)"])
    assert "install the LeaderWorkerSet controller" in message
    assert "lower spec.model.maxModelLen x spec.gpu.maxConcurrentSequences" in message


def _with(**statuses: str) -> list[Condition]:
    return [Condition(type=kind, status=status, reason="R", last_transition_time=T0)
            for kind, status in statuses.items()]


@pytest.mark.parametrize(("conditions", "ready", "expect"), [
    (_with(Ready="True", Stalled="False"), 2, "Ready"),
    (_with(Ready="False", Stalled="True"), 1, "Degraded"),
    (_with(Ready="False", Stalled="True"), 0, "Failed"),
    (_with(Ready="False", Stalled="True", ModelCached="False"), 1, "Failed"),
    (_with(Ready="False", Stalled="False", StorageReady="False"), 1, "Degraded"),
    (_with(Ready="False", Stalled="False", StorageReady="False"), 0, "Pending"),
    (_with(Ready="False", Stalled="False", StorageReady="True", Scheduled="False"), 0,
     "Pending"),
    (_with(Ready="False", Stalled="False", StorageReady="True", ModelCached="False"), 0,
     "Downloading"),
    (_with(Ready="False", Stalled="False", StorageReady="True", ModelCached="True"), 1,
     "Degraded"),
    (_with(Ready="False", Stalled="False", StorageReady="True", ModelCached="True"), 0,
     "Starting"),
])
def test_phase_table(conditions: list[Condition], ready: int, expect: str) -> None:
    assert phase(conditions, ready) == expect


def test_a_workload_without_status_says_its_controller_may_be_missing() -> None:
    lws = {"kind": "LeaderWorkerSet", "metadata": {"name": "r1", "generation": 1},
           "spec": {"replicas": 1}}
    status = _compute(Observed(_claim(), _job(), lws, [], 1))
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "WorkloadNotReported")
    assert ready.message == ("LeaderWorkerSet r1 has no status yet: if this lasts, no "
                             "LeaderWorkerSet controller is running (is it installed and "
                             "healthy?)")


def _affinity_pod(message: str) -> dict[str, Any]:
    pod = _pod("r1-a", None, message)
    pod["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L40S"]},
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}}
    return pod


def test_unschedulable_for_affinity_names_the_gpu_label_asked_for() -> None:
    message = "0/5 nodes are available: 5 node(s) didn't match Pod's node affinity/selector."
    status = _compute(Observed(_claim(), _job(), _workload(1, 0), [_affinity_pod(message)], 1))
    scheduled = next(c for c in status.conditions if c.type == "Scheduled")
    assert scheduled.reason == "Unschedulable"
    assert scheduled.message == (f"pod r1-a: {message} (the pods ask for nodes labelled "
                                 "nvidia.com/gpu.product=NVIDIA-L40S)")


def test_waiting_for_the_claim_to_bind_is_not_unschedulable() -> None:
    message = "0/5 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    status = _compute(Observed(_claim("Pending"), None, _workload(1, 0),
                               [_pod("r1-a", None, message)], 1))
    scheduled = next(c for c in status.conditions if c.type == "Scheduled")
    assert (scheduled.status, scheduled.reason) == ("Unknown", "WaitingForStorage")
    assert status.phase == "Pending"


def test_a_missing_default_class_names_the_operator_setting() -> None:
    spec = Observed(_claim("Pending"), None, None, [], 1, storage_class_missing="fast")
    default = Observed(_claim("Pending"), None, None, [], 1, storage_class_missing="fast",
                       storage_class_is_default=True)
    assert "--storage-class" not in _storage(spec).message
    assert _storage(default).message == (
        'StorageClass "fast" does not exist; create it or set spec.storage.storageClassName '
        "to an existing class (the class is the operator's default, its --storage-class)")


def test_a_leaderworkerset_with_all_groups_ready_is_ready() -> None:
    lws = {"kind": "LeaderWorkerSet", "metadata": {"name": "r1", "generation": 2},
           "spec": {"replicas": 1},
           "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                      "conditions": [{"type": "Available", "status": "True"}]}}
    status = _compute(Observed(_claim(), _job(), lws, READY_PODS, 1))
    assert _conds(status)["Ready"] == ("True", "ReplicasReady")
    assert (status.phase, status.ready_replicas) == ("Ready", 1)


def test_a_deployment_that_cannot_create_pods_says_why() -> None:
    """A missing PriorityClass (or a quota, or Pod Security) makes the ReplicaSet fail to
    create pods: the Deployment's ReplicaFailure condition reaches Scheduled and Ready,
    instead of NoPods and an endless RollingOut."""
    workload = {**_workload(1, 0), "kind": "Deployment"}
    workload["status"]["conditions"] = [{
        "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
        "message": 'pods "r1-6f9459d458-" is forbidden: no PriorityClass with name '
                   "does-not-exist was found"}]
    status = _compute(Observed(_claim(), _job(), workload, [], 1))
    scheduled = next(c for c in status.conditions if c.type == "Scheduled")
    assert (scheduled.status, scheduled.reason) == ("False", "FailedCreate")
    assert scheduled.message.startswith("Deployment r1 cannot create pods: pods")
    assert "no PriorityClass with name does-not-exist" in scheduled.message
    assert _conds(status)["Ready"] == ("False", "FailedCreate")
    workload["status"]["conditions"][0]["status"] = "False"  # it could create them again
    healthy = _compute(Observed(_claim(), _job(), workload, [], 1))
    assert _conds(healthy)["Scheduled"] == ("Unknown", "NoPods")


def test_while_a_leaderworkerset_replaces_the_deployment_the_deployment_is_counted() -> None:
    """Rule 7 keeps the old Deployment serving until the new LeaderWorkerSet is ready:
    status counts what serves (Degraded, 1 ready), not the new kind's 0 (Pending)."""
    new = {**_workload(1, 0), "kind": "LeaderWorkerSet"}
    old = {**_workload(1, 1), "kind": "Deployment"}
    waiting = [_pod("r1-0", None, "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.")]
    status = _compute(Observed(_claim(), _job(), new, waiting, 1, kept_workload=old))
    assert (status.ready_replicas, status.replicas, status.phase) == (1, 1, "Degraded")
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.status == "False"
    assert ready.message.endswith("; Deployment r1 keeps serving 1 ready replica until the "
                                  "LeaderWorkerSet has all its replicas ready"), ready.message
    alone = _compute(Observed(_claim(), _job(), new, waiting, 1))
    assert (alone.ready_replicas, alone.phase) == (0, "Pending")
    assert "keeps serving" not in next(c for c in alone.conditions
                                       if c.type == "Ready").message


def test_a_refused_apply_stalls_over_the_conditions_of_what_exists() -> None:
    """ApplyFailed (the workload refused, the claim and download applied before it): the
    stall keeps StorageReady and ModelCached as observed, and Ready, Progressing and
    Stalled as stored, so a lasting stall does not move their lastTransitionTime."""
    observed = _compute(Observed(_claim(), _job(), None, [], 1), now=T1)
    stored = stalled_status(generation=1, reason="ApplyFailed", message="refused",
                            previous=None, now=T0, base=DeepSeekDeploymentStatus())
    details = _details_of(observed, stored)
    stall = stalled_status(generation=1, reason="ApplyFailed", message="refused",
                           previous=stored, now=T1, base=details)
    by_type = {c.type: c for c in stall.conditions}
    assert (by_type["StorageReady"].status, by_type["StorageReady"].reason) == (
        "True", "ClaimBound")
    assert (by_type["ModelCached"].status, by_type["ModelCached"].reason) == (
        "True", "Downloaded")
    assert (by_type["Stalled"].status, by_type["Stalled"].reason) == ("True", "ApplyFailed")
    assert by_type["Stalled"].last_transition_time == T0 == by_type["Ready"].last_transition_time
    assert stall.phase == "Failed"
    first = _details_of(observed, None)  # never stored before: no summary to keep
    assert {c.type for c in first.conditions} == {
        "StorageReady", "ModelCached", "Scheduled", "AutoscalerReady"}
