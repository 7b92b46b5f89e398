"""The operator's per-DeepSeekDeployment metrics: gauges read from status at scrape time,
scale decisions by direction and cause, reconciles per deployment, removal on delete."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deepseek_operator.autoscaler.loop import Autoscaler, Tick
from deepseek_operator.autoscaler.policy import Decision, PolicyState
from deepseek_operator.controller import metrics
from deepseek_operator.controller.cache import ChildCache
from deepseek_operator.controller.cluster import Cluster
from deepseek_operator.controller.reconciler import Reconciler
from deepseek_operator.render import RenderSettings


def _body(name: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "deepseek-operator.io/v1alpha1", "kind": "DeepSeekDeployment",
        "metadata": {"name": name, "namespace": "ai", "generation": 2},
        "spec": {"model": {"name": "deepseek-r1-distill-qwen-1.5b"}, "replicas": 1},
        **({"status": status} if status is not None else {}),
    }


SERVING = {
    "observedGeneration": 2, "phase": "Ready", "desiredReplicas": 3, "readyReplicas": 2,
    "autoscaling": {"observedQPS": 5.5, "targetQPSPerReplica": 2.0},
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "ReplicasReady",
         "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "ModelCached", "status": "True", "reason": "Downloaded",
         "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ],
}


def _samples(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one scrape of ``registry``."""
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_status_gauges_come_from_the_latest_copies() -> None:
    collector = metrics.DeploymentCollector()
    collector.source = lambda: [_body("r1", SERVING), _body("fresh")]
    registry = CollectorRegistry()
    registry.register(collector)
    got = _samples(registry)
    ids = (("deployment", "r1"), ("namespace", "ai"))
    assert got[("deepseek_operator_deployment_desired_replicas", ids)] == 3
    assert got[("deepseek_operator_deployment_ready_replicas", ids)] == 2
    assert got[("deepseek_operator_autoscaler_observed_qps", ids)] == 5.5
    assert got[("deepseek_operator_autoscaler_target_qps_per_replica", ids)] == 2.0
    assert got[("deepseek_operator_deployment_phase", (*ids, ("phase", "Ready")))] == 1
    cached = (("deployment", "r1"), ("namespace", "ai"), ("reason", "Downloaded"),
              ("status", "True"), ("type", "ModelCached"))
    assert got[("deepseek_operator_deployment_condition", cached)] == 1
    # A deployment without status yet has no samples (no made-up zeros).
    assert not [key for key in got if ("deployment", "fresh") in key[1]]


@pytest.fixture
def reconciler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reconciler]:
    api = ApiClient()
    worker = Reconciler(cluster=Cluster(api, ChildCache()), autoscaler=Autoscaler(api),
                        post_event=lambda *args: None, settings=RenderSettings())
    yield worker
    worker.forget("ai", "r1")


def test_a_decision_is_counted_by_direction_and_cause_and_forgotten_on_delete(
        reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    decision = Decision(desired_replicas=1, computed_replicas=3, reason="hold 1: ...",
                        scaled=False, state=PolicyState(), cause="UpStabilization")
    monkeypatch.setattr(reconciler.autoscaler, "due", lambda dsd, now: True)
    monkeypatch.setattr(reconciler.autoscaler, "evaluate",
                        lambda dsd, body, write: Tick(1, decision, 6.0, None))
    reconciler.remember(_body("r1", SERVING))
    assert reconciler.autoscale("ai", "r1") is not None
    labels = (("cause", "UpStabilization"), ("deployment", "r1"), ("direction", "hold"),
              ("namespace", "ai"))
    key = ("deepseek_operator_autoscaler_scale_decisions_total", labels)
    assert _samples(REGISTRY)[key] >= 1
    assert reconciler.latest_copies() == [_body("r1", SERVING)]

    reconciler.forget("ai", "r1")
    assert key not in _samples(REGISTRY)
    assert reconciler.latest_copies() == []


def test_forget_removes_only_that_deployments_series() -> None:
    metrics.DEPLOYMENT_RECONCILES.labels(namespace="ai", deployment="a", result="noop").inc()
    metrics.DEPLOYMENT_RECONCILES.labels(namespace="ai", deployment="b", result="noop").inc()
    metrics.forget_deployment("ai", "a")
    names = {dict(labels).get("deployment") for name, labels in _samples(REGISTRY)
             if name == "deepseek_operator_deployment_reconciles_total"}
    assert "b" in names and "a" not in names
    metrics.forget_deployment("ai", "b")
