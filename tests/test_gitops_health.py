"""GitOps health of DeepSeekDeployments, on status snapshots captured from the e2e control
plane (tests/data/status-snapshots/, `make status-snapshots`): the Argo CD health check
(docs/argocd/health.lua in a real Lua 5.1, lupa) and kstatus (the cli-utils library, in a
Go program built from the pinned module) give each state its expected verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e import gitops

from deepseek_operator.api.crd import STATUS_DEFAULT, build_crd
from deepseek_operator.controller.reconcile import previous_status

SNAPSHOTS = {path.stem: json.loads(path.read_text())
             for path in sorted(gitops.SNAPSHOTS.glob("*.json"))}
DOC = gitops.ROOT / "docs" / "gitops.md"


def test_there_is_a_snapshot_of_each_state() -> None:
    assert set(SNAPSHOTS) == set(gitops.EXPECTED)


@pytest.mark.parametrize("name", sorted(gitops.EXPECTED))
def test_argocd_health(name: str) -> None:
    obj = SNAPSHOTS[name]
    status, message = gitops.argocd_health(obj)
    assert status == gitops.EXPECTED[name][0], message
    conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
    if status == "Degraded":  # says why, in the operator's words
        assert message.startswith(conditions["Stalled"]["reason"] + ": ")
        assert conditions["Stalled"]["message"] in message
    if name == "generation-not-observed":
        assert f"generation {obj['metadata']['generation']}" in message


def test_kstatus() -> None:
    names = sorted(gitops.EXPECTED)
    verdicts = gitops.kstatus([SNAPSHOTS[name] for name in names])
    assert {name: verdict[0] for name, verdict in zip(names, verdicts, strict=True)} == {
        name: expected[1] for name, expected in gitops.EXPECTED.items()}
    by_name = dict(zip(names, verdicts, strict=True))
    assert "latest observed generation is 1" in by_name["generation-not-observed"][1]


def _with_status(**status: Any) -> dict[str, Any]:
    return {"apiVersion": "deepseek-operator.io/v1alpha1", "kind": "DeepSeekDeployment",
            "metadata": {"name": "r1", "namespace": "ai", "generation": 4}, "status": status}


@pytest.mark.parametrize(("status", "expected"), [
    ({"observedGeneration": 4}, "Progressing"),  # no conditions yet
    ({"observedGeneration": 5, "conditions": [  # newer than the generation: trust it
        {"type": "Ready", "status": "True", "reason": "ReplicasReady"}]}, "Healthy"),
    ({"observedGeneration": 4, "conditions": [
        {"type": "Ready", "status": "Unknown", "reason": "Pending"}]}, "Progressing"),
])
def test_argocd_health_edge_cases(status: dict[str, Any], expected: str) -> None:
    assert gitops.argocd_health(_with_status(**status))[0] == expected


def test_the_gitops_doc_carries_the_health_check_verbatim() -> None:
    text = DOC.read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    configmap = yaml.safe_load(block)
    key = "resource.customizations.health.deepseek-operator.io_DeepSeekDeployment"
    assert configmap["data"][key] == gitops.HEALTH_LUA.read_text()
    assert Path("docs/argocd/health.lua").as_posix() in text


def test_the_crd_defaults_status_to_no_generation_observed() -> None:
    status = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "status"]
    assert status["default"] == {}
    assert {key: status["properties"][key]["default"] for key in STATUS_DEFAULT} == \
        STATUS_DEFAULT == {"observedGeneration": 0}
    # The operator reads that default as no status: a new object, not a stored one.
    assert previous_status({"metadata": {"name": "r1"}, "status": STATUS_DEFAULT}) is None
    assert gitops.kstatus([SNAPSHOTS["new"]])[0][0] == "InProgress"
