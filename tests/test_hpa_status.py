"""status.autoscaling of mode hpa, read from the HorizontalPodAutoscaler's status
(controller/hpa_status.py). The HPA dicts have the shape kube-controller-manager writes
(autoscaling/v2 HorizontalPodAutoscalerStatus)."""

from __future__ import annotations

from typing import Any

from deepseek_operator.controller.hpa_status import hpa_autoscaling
from deepseek_operator.render.autoscaling import HPA_METRIC


def _hpa(**status: Any) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "r1", "namespace": "ai"}, "status": status}


def _pods_metric(average: str, name: str = HPA_METRIC) -> dict[str, Any]:
    return {"type": "Pods", "pods": {"metric": {"name": name},
                                     "current": {"averageValue": average}}}


def test_the_hpas_decision_and_what_it_read() -> None:
    hpa = _hpa(currentReplicas=1, desiredReplicas=5, lastScaleTime="2026-01-02T03:04:05Z",
               currentMetrics=[_pods_metric("4500m")], conditions=[
                   {"type": "AbleToScale", "status": "True", "reason": "SucceededRescale",
                    "message": "the HPA controller was able to update the target scale to 5"},
                   {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound",
                    "message": "the HPA was able to successfully calculate a replica count"},
                   {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange",
                    "message": "the desired count is within the acceptable range"}])
    status = hpa_autoscaling(hpa, HPA_METRIC, 2.0)
    assert status is not None
    assert status.desired_replicas == 5
    assert status.observed_qps == 4.5  # 4.5 req/s per pod over 1 pod
    assert status.target_qps_per_replica == 2.0
    assert status.last_scale_time == "2026-01-02T03:04:05Z"
    assert status.computed_replicas is None  # the HPA does not publish it
    assert status.reason is not None
    assert status.reason.startswith(
        "HorizontalPodAutoscaler: 4.5 req/s per pod (target 2) over 1 pod(s), 1 -> 5 replicas")
    assert "able to update the target scale to 5" in status.reason
    assert "ScalingLimited" not in status.reason  # only said while it limits


def test_a_limited_decision_says_so() -> None:
    hpa = _hpa(currentReplicas=3, desiredReplicas=3, currentMetrics=[_pods_metric("6")],
               conditions=[{"type": "ScalingLimited", "status": "True",
                            "reason": "TooManyReplicas",
                            "message": "the desired replica count is more than the maximum "
                                       "replica count"}])
    status = hpa_autoscaling(hpa, HPA_METRIC, 2.0)
    assert status is not None and status.reason is not None
    assert status.observed_qps == 18.0
    assert "ScalingLimited True: the desired replica count is more than the maximum" in (
        status.reason)


def test_no_metric_read_leaves_observed_qps_out() -> None:
    hpa = _hpa(currentReplicas=2, desiredReplicas=2, currentMetrics=[
        _pods_metric("1", name="another_metric")], conditions=[
        {"type": "ScalingActive", "status": "False", "reason": "FailedGetPodsMetric",
         "message": "unable to get metric"}])
    status = hpa_autoscaling(hpa, HPA_METRIC, 2.0)
    assert status is not None and status.reason is not None
    # The HPA decides nothing without a value: its desiredReplicas is no decision.
    assert status.observed_qps is None and status.desired_replicas is None
    assert f"no value of {HPA_METRIC} read, it holds 2 replicas" in status.reason
    assert "ScalingActive False: unable to get metric" in status.reason


def test_nothing_before_the_first_sync_or_without_an_hpa() -> None:
    assert hpa_autoscaling(None, HPA_METRIC, 2.0) is None
    assert hpa_autoscaling(_hpa(), HPA_METRIC, 2.0) is None
    scaled_object = {"kind": "ScaledObject", "status": {"desiredReplicas": 3}}
    assert hpa_autoscaling(scaled_object, HPA_METRIC, 2.0) is None


def test_a_long_reason_is_cut_to_the_fields_limit() -> None:
    hpa = _hpa(currentReplicas=1, desiredReplicas=1, conditions=[
        {"type": "AbleToScale", "status": "True", "message": "x" * 2000}])
    status = hpa_autoscaling(hpa, HPA_METRIC, 2.0)
    assert status is not None and status.reason is not None
    assert len(status.reason) == 1024 and status.reason.endswith("...")
