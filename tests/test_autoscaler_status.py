"""The autoscaler's status patch (one decision -> .status) and hand-set spec.replicas."""

from __future__ import annotations

from typing import Any

from deepseek_operator.api import API_VERSION, KIND, parse_deployment
from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.autoscaler.loop import autoscaler_status, hand_set_replicas
from deepseek_operator.autoscaler.policy import Decision, PolicyState

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
READY = {"type": "Ready", "status": "True", "reason": "ReplicasReady", "message": "1/1",
         "lastTransitionTime": "2025-12-31T00:00:00Z", "observedGeneration": 3}


def _dsd(replicas: int = 2) -> DeepSeekDeployment:
    return parse_deployment({
        "apiVersion": API_VERSION, "kind": KIND,
        "metadata": {"name": "r1", "namespace": "ai", "uid": "u", "generation": 3},
        "spec": {"model": {"name": "deepseek-r1-distill-qwen-7b"}, "replicas": replicas,
                 "autoscaling": {"minReplicas": 1, "maxReplicas": 4}}})


def _decision(desired: int, scaled: bool = True, computed: int | None = 2) -> Decision:
    return Decision(desired_replicas=desired, computed_replicas=computed,
                    reason=f"scale to {desired}", scaled=scaled, state=PolicyState())


def _condition(patch: dict[str, Any], kind: str = "AutoscalerReady") -> dict[str, Any]:
    return next(c for c in patch["conditions"] if c["type"] == kind)


def test_a_decision_is_recorded_with_its_condition() -> None:
    patch = autoscaler_status(_dsd(), {"conditions": [READY]}, _decision(2), 3.14159, None,
                              "MetricsUnavailable", T0)
    assert patch is not None
    assert patch["autoscaling"] == {
        "observedQPS": 3.142, "targetQPSPerReplica": 2.0, "computedReplicas": 2,
        "desiredReplicas": 2, "lastScaleTime": "2026-01-01T00:00:00Z",
        "reason": "scale to 2"}
    assert _condition(patch) == {
        "type": "AutoscalerReady", "status": "True", "reason": "MetricsAvailable",
        "message": "scale to 2", "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 3}
    assert _condition(patch, "Ready") == READY, "other conditions are left as they are"


def test_an_unchanged_decision_writes_nothing() -> None:
    first = autoscaler_status(_dsd(), {"conditions": [READY]}, _decision(2), 3.0, None,
                              "MetricsUnavailable", T0)
    assert first is not None
    stored = {"conditions": first["conditions"],
              "autoscaling": {k: v for k, v in first["autoscaling"].items() if v is not None}}
    again = autoscaler_status(_dsd(), stored, _decision(2, scaled=False), 3.0, None,
                              "MetricsUnavailable", T0 + 15)
    assert again is None


def test_missing_metrics_hold_with_the_reason_and_keep_the_transition_time() -> None:
    down = autoscaler_status(_dsd(), {}, _decision(2, scaled=False, computed=None), None,
                             "Prometheus at http://p:9090 timed out", "MetricsUnavailable", T0)
    assert down is not None
    cond = _condition(down)
    assert (cond["status"], cond["reason"]) == ("False", "MetricsUnavailable")
    assert cond["message"] == "Prometheus at http://p:9090 timed out; holding 2 replicas"
    assert down["autoscaling"]["observedQPS"] is None, "null removes a stale measurement"
    later = autoscaler_status(_dsd(), {"conditions": down["conditions"]},
                              _decision(2, scaled=False, computed=None), None, None,
                              "MetricsUnavailable", T0 + 60)
    assert later is not None
    cond = _condition(later)
    assert (cond["reason"], cond["lastTransitionTime"]) == ("NoMetrics", "2026-01-01T00:00:00Z")


def test_hand_set_replicas_are_those_that_differ_from_the_last_decision() -> None:
    decided = {"status": {"autoscaling": {"desiredReplicas": 2}}}
    assert hand_set_replicas(_dsd(replicas=2), decided) is None
    assert hand_set_replicas(_dsd(replicas=3), decided) == 3
    assert hand_set_replicas(_dsd(replicas=9), decided) == 4, "clamped to maxReplicas"
    assert hand_set_replicas(_dsd(replicas=3), {}) is None, "no decision yet: not by hand"
