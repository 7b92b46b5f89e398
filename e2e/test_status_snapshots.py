"""DeepSeekDeployments captured from the control plane in each state GitOps tools care
about, checked live with the Argo CD health check (Lua) and kstatus (cli-utils).

With ``DEEPSEEK_OPERATOR_WRITE_SNAPSHOTS=1`` (``make status-snapshots``) the captured
objects also replace the committed copies in tests/data/status-snapshots/, which
tests/test_gitops_health.py checks without a cluster.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest
from kubernetes import client

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.api.crd import STATUS_DEFAULT
from e2e import gitops
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess
from e2e.test_controller import condition, create, get, small_model, wait_condition
from e2e.test_serving_safety import L70, without_leaderworkerset  # noqa: F401  (fixture)


def _patch(api: client.CustomObjectsApi, namespace: str, name: str,
           spec: dict[str, Any]) -> None:
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})


def _progressing(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    """The object once its status is of the current generation and Progressing=True."""
    def check() -> dict[str, Any] | None:
        obj = get(api, namespace, name)
        current = (obj.get("status") or {}).get("observedGeneration") == obj["metadata"][
            "generation"]
        return obj if current and condition(obj, "Progressing").get("status") == "True" \
            else None
    return wait_for(f"{namespace}/{name} Progressing=True", check, 60, interval=0.1)


@pytest.mark.usefixtures("without_leaderworkerset")
def test_status_snapshots_get_the_expected_gitops_health(
        dsd_api: client.CustomObjectsApi, namespace: str, operator: OperatorProcess) -> None:
    captured: dict[str, dict[str, Any]] = {}

    # Created while no operator runs: only the CRD's status default, nothing observed.
    operator.stop()
    try:
        create(dsd_api, namespace, copy.deepcopy(L70))
        captured["new"] = get(dsd_api, namespace, "l70")
        assert captured["new"]["status"] == STATUS_DEFAULT
    finally:
        operator.start()
    captured["progressing"] = _progressing(dsd_api, namespace, "l70")
    captured["ready"] = wait_condition(dsd_api, namespace, "l70", "Ready", "True", 120)

    # A spec change the operator has not seen (it is stopped): generation 2, status of 1.
    operator.stop()
    try:
        _patch(dsd_api, namespace, "l70", {"gpu": {"maxConcurrentSequences": 2}})
        captured["generation-not-observed"] = get(dsd_api, namespace, "l70")
    finally:
        operator.start()
    wait_condition(dsd_api, namespace, "l70", "Ready", "True", 120)

    # A change the cluster cannot serve (one replica would span nodes: a LeaderWorkerSet,
    # whose API the fixture removed): Stalled, while the last good Deployment still serves.
    _patch(dsd_api, namespace, "l70", {"model": {"maxModelLen": 131072},
                                       "gpu": {"maxConcurrentSequences": 16}})
    captured["degraded-stalled-serving"] = wait_condition(
        dsd_api, namespace, "l70", "Stalled", "True", 60)

    # A spec that can never work: Stalled, phase Failed.
    too_big = small_model("too-big")
    too_big["spec"]["model"] = {"name": "deepseek-r1", "maxModelLen": 8192}
    too_big["spec"]["gpu"] = {"type": "A100-40GB", "count": 1}
    create(dsd_api, namespace, too_big)
    captured["stalled"] = wait_condition(dsd_api, namespace, "too-big", "Stalled", "True", 60)

    # Four replicas of 8 H100s where three fit (the three H100 nodes): serving 3 of 4,
    # phase Degraded, not Stalled.
    partly = small_model("partly")
    partly["spec"].update(replicas=4, storage={"accessMode": "ReadWriteMany"},
                          model={"name": "deepseek-r1-distill-llama-70b", "maxModelLen": 8192},
                          gpu={"type": "H100-80GB", "count": 8})
    create(dsd_api, namespace, partly)
    captured["degraded-partly-ready"] = wait_for("3 of 4 replicas ready, weights cached", lambda: (
        lambda o: o if (o.get("status") or {}).get("readyReplicas") == 3
        and condition(o, "ModelCached").get("status") == "True" else None)(
            get(dsd_api, namespace, "partly")), 120)
    assert condition(captured["degraded-partly-ready"], "Scheduled")["status"] == "False"

    phases = {name: (obj.get("status") or {}).get("phase") for name, obj in captured.items()}
    assert phases == {"new": None, "progressing": phases["progressing"], "ready": "Ready",
                      "generation-not-observed": "Ready",
                      "degraded-stalled-serving": "Degraded", "stalled": "Failed",
                      "degraded-partly-ready": "Degraded"}
    assert phases["progressing"] in {"Pending", "Downloading", "Starting"}
    unseen = captured["generation-not-observed"]
    assert unseen["status"]["observedGeneration"] < unseen["metadata"]["generation"]

    snapshots = {name: gitops.snapshot(obj) for name, obj in captured.items()}
    assert set(snapshots) == set(gitops.EXPECTED)
    names = sorted(snapshots)
    verdicts = gitops.kstatus([snapshots[name] for name in names])
    got = {name: (gitops.argocd_health(snapshots[name])[0], verdict[0])
           for name, verdict in zip(names, verdicts, strict=True)}
    assert got == gitops.EXPECTED

    if os.environ.get("DEEPSEEK_OPERATOR_WRITE_SNAPSHOTS") == "1":
        gitops.SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        for name, obj in snapshots.items():
            (gitops.SNAPSHOTS / f"{name}.json").write_text(
                json.dumps(obj, indent=2, sort_keys=True) + "\n")
