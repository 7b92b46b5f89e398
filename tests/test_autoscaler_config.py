"""spec.autoscaling -> the policy's configuration: every field the policy reads is passed."""

from __future__ import annotations

import dataclasses

from deepseek_operator.api import API_VERSION, KIND, parse_deployment
from deepseek_operator.autoscaler import PolicyConfig
from deepseek_operator.autoscaler.loop import policy_config


def test_every_spec_field_reaches_the_policy() -> None:
    dsd = parse_deployment({
        "apiVersion": API_VERSION, "kind": KIND,
        "metadata": {"name": "r1", "namespace": "ai", "uid": "u"},
        "spec": {
            "model": {"name": "deepseek-r1-distill-qwen-7b"},
            "gpu": {"type": "A100-40GB"},
            "autoscaling": {
                "minReplicas": 0, "maxReplicas": 7, "targetQPSPerReplica": 1.5,
                "scaleUpTolerance": 0.02, "scaleDownTolerance": 0.2,
                "scaleUpStabilizationSeconds": 45, "scaleDownStabilizationSeconds": 120,
                "scaleToZeroIdleSeconds": 30,
                "prometheus": {"query": "sum(rate(gateway_requests_total[1m]))"},
            },
        },
    })
    expected = PolicyConfig(
        min_replicas=0, max_replicas=7, target_qps_per_replica=1.5, scale_up_tolerance=0.02,
        scale_down_tolerance=0.2, scale_up_stabilization_seconds=45.0,
        scale_down_stabilization_seconds=120.0, scale_to_zero_idle_seconds=30.0)
    assert policy_config(dsd) == expected
    # The settling wait is the one setting that is not a spec field.
    spec_fields = {f.name for f in dataclasses.fields(PolicyConfig)} - {
        "scale_down_settle_seconds"}
    defaults = PolicyConfig(min_replicas=1, max_replicas=1, target_qps_per_replica=1.0)
    assert all(getattr(expected, name) != getattr(defaults, name) for name in spec_fields), (
        "each field needs a non-default value here, or a missing one goes unnoticed")
