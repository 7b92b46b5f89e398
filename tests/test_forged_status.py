"""A status patched by hand (``kubectl patch --subresource=status``) never survives the
operator's next write: every field it owns is written, observed or null."""

from __future__ import annotations

import types
from typing import Any

import pytest

from deepseek_operator.api.status import DeepSeekDeploymentStatus
from deepseek_operator.controller.plan import ObjectKey
from deepseek_operator.controller.reconcile import STATUS_KEYS, _finish, reconcile
from deepseek_operator.render import RenderSettings

FORGED = {"phase": "Ready", "readyReplicas": 5, "replicas": 5, "desiredReplicas": 5,
          "selector": "app=forged"}
STALLED = {"observedGeneration": 1, "phase": "Failed", "conditions": [
    {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "bad",
     "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}


def _body(status: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "deepseek-operator.io/v1alpha1", "kind": "DeepSeekDeployment",
            "metadata": {"name": "r1", "namespace": "ai", "generation": 1, "uid": "u1"},
            "spec": {"model": {"name": "deepseek-r1", "uri": "ftp://not/supported"}},
            "status": status}


def _cluster(children: dict[ObjectKey, dict[str, Any]]) -> Any:
    return types.SimpleNamespace(served=lambda *a: False,
                                 hpa_tolerance_supported=lambda: False,
                                 observe=lambda owner: children)


def _deployment(ready: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "r1", "namespace": "ai", "generation": 1},
            "spec": {"replicas": 3},
            "status": {"replicas": 3, "readyReplicas": ready, "observedGeneration": 1,
                       "updatedReplicas": 3}}


def test_a_forged_ready_count_on_a_stalled_deployment_without_workload_is_zeroed() -> None:
    outcome = reconcile(_body({**STALLED, **FORGED}), _cluster({}), RenderSettings(),
                        "2026-01-01T00:01:00Z")
    assert outcome.stalled and outcome.status is not None
    patch = outcome.status
    assert set(patch) == set(STATUS_KEYS)
    assert (patch["phase"], patch["readyReplicas"], patch["replicas"],
            patch["desiredReplicas"]) == ("Failed", 0, 0, 0)
    assert patch["selector"] != "app=forged"


def test_a_stalled_deployment_reports_what_its_workload_serves() -> None:
    deployment = _deployment(ready=2)
    outcome = reconcile(_body({**STALLED, **FORGED}),
                        _cluster({ObjectKey.of(deployment): deployment}), RenderSettings(),
                        "2026-01-01T00:01:00Z")
    assert outcome.status is not None
    assert (outcome.status["phase"], outcome.status["readyReplicas"],
            outcome.status["desiredReplicas"]) == ("Degraded", 2, 3)


@pytest.mark.parametrize("stored", [
    {"readyReplicas": 5},  # no conditions: read as no status at all
    {"readyReplicas": 5, "conditions": [{"type": "Ready"}]},  # unreadable
])
def test_a_status_the_operator_cannot_read_is_overwritten_field_by_field(
        stored: dict[str, Any]) -> None:
    outcome = reconcile(_body(stored), _cluster({}), RenderSettings(), "2026-01-01T00:01:00Z")
    assert outcome.status is not None
    assert set(outcome.status) == set(STATUS_KEYS)
    assert outcome.status["readyReplicas"] == 0


def test_every_write_names_every_owned_field() -> None:
    previous = DeepSeekDeploymentStatus.model_validate({**STALLED, "endpoint": "x"})
    status = previous.model_copy(update={"endpoint": None, "observed_generation": 2})
    patch = _finish(previous, status, []).status
    assert patch is not None
    assert set(patch) == set(STATUS_KEYS)
    assert (patch["endpoint"], patch["modelCache"], patch["observedGeneration"]) == (None,
                                                                                       None, 2)
    assert _finish(previous, previous, []).status is None  # nothing changed: no write


def test_a_forged_figure_inside_an_object_is_removed_too() -> None:
    cache = {"bytesPresent": 10, "deadlineSeconds": 600}
    previous = DeepSeekDeploymentStatus.model_validate(
        {**STALLED, "modelCache": {**cache, "etaSeconds": 1, "percent": 99.0}})
    assert previous.model_cache is not None
    status = previous.model_copy(update={"model_cache": previous.model_cache.model_copy(
        update={"eta_seconds": None, "percent": None})})
    patch = _finish(previous, status, []).status
    assert patch is not None
    assert patch["modelCache"] == {**dict.fromkeys(patch["modelCache"]), **cache}
    assert (patch["modelCache"]["etaSeconds"], patch["modelCache"]["percent"]) == (None, None)
