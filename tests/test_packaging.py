"""The chart and the kustomize base ship the same CRDs as crds/ (one source, copied)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deepseek_operator.render import GATEWAY_APP

REPO = Path(__file__).resolve().parent.parent
CRDS = sorted((REPO / "crds").glob("*.yaml"))


@pytest.mark.parametrize("copy_dir", ["charts/deepseek-operator/crds", "manifests/base/crds"])
def test_crd_copies_are_identical(copy_dir: str) -> None:
    copies = sorted((REPO / copy_dir).glob("*.yaml"))
    assert [c.name for c in copies] == [c.name for c in CRDS], "run `make crds`"
    for source, copy in zip(CRDS, copies, strict=True):
        assert copy.read_bytes() == source.read_bytes(), f"{copy} is stale: run `make crds`"


def test_kustomization_lists_every_crd() -> None:
    kustomization = yaml.safe_load((REPO / "manifests/base/kustomization.yaml").read_text())
    listed = {r for r in kustomization["resources"] if r.startswith("crds/")}
    assert listed == {f"crds/{c.name}" for c in CRDS}


BASE_OBJECTS = [d for d in yaml.safe_load_all((REPO / "manifests/base/operator.yaml").read_text())
                if d]


def _base(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in BASE_OBJECTS if d["kind"] == kind and d["metadata"]["name"] == name)


def test_the_base_ships_the_gateway_deployment_as_the_engines_expect_it() -> None:
    deployment = _base("Deployment", "deepseek-gateway")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]
    # The label the engines' NetworkPolicy admits (render/network.py).
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == GATEWAY_APP
    (container,) = pod["spec"]["containers"]
    assert container["args"][:4] == ["gateway", "--listen-address=0.0.0.0:8080",
                                     "--metrics-listen-address=0.0.0.0:9090",
                                     "--audit-file=/var/log/deepseek-gateway/audit.jsonl"]
    assert any(a.startswith("--queue-timeout-seconds=") for a in container["args"])
    assert any(a.startswith("--max-queued=") for a in container["args"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080},
                                  {"name": "metrics", "containerPort": 9090}]
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert not any("gpu" in key for part in container["resources"].values() for key in part)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["allowPrivilegeEscalation"] is False
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["audit"] == "/var/log/deepseek-gateway"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes["audit"]
    assert pod["spec"]["serviceAccountName"] == "deepseek-gateway"


def test_the_base_keeps_one_gateway_up_and_serves_it_on_port_80() -> None:
    selector = _base("Deployment", "deepseek-gateway")["spec"]["selector"]["matchLabels"]
    budget = _base("PodDisruptionBudget", "deepseek-gateway")["spec"]
    assert budget == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    service = _base("Service", "deepseek-gateway")["spec"]
    assert service["type"] == "ClusterIP" and service["selector"] == selector
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                 "protocol": "TCP"}]
    metrics = _base("Service", "deepseek-gateway-metrics")["spec"]
    assert metrics["type"] == "ClusterIP" and metrics["selector"] == selector
    assert metrics["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics",
                                 "protocol": "TCP"}]


def test_the_gateway_metrics_port_admits_only_the_scraper() -> None:
    ingress = _base("NetworkPolicy", "deepseek-gateway")["spec"]["ingress"]
    by_port = {rule["ports"][0]["port"]: rule for rule in ingress}
    assert set(by_port) == {8080, 9090}
    assert "from" not in by_port[8080], "the API port is open to every caller"
    (scraper,) = by_port[9090]["from"]
    assert scraper["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}


def test_the_gateway_may_review_tokens_and_access_and_read_deployments() -> None:
    role = _base("ClusterRole", "deepseek-operator-gateway")
    granted = {(group, resource): set(rule["verbs"]) for rule in role["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]}
    assert granted[("authentication.k8s.io", "tokenreviews")] == {"create"}
    assert granted[("authorization.k8s.io", "subjectaccessreviews")] == {"create"}
    assert granted[("deepseek-operator.io", "deepseekdeployments")] == {"get", "list", "watch"}
    assert not any({"create", "update", "patch", "delete"} & verbs
                   for key, verbs in granted.items() if key[1] not in (
                       "tokenreviews", "subjectaccessreviews"))
    binding = _base("ClusterRoleBinding", "deepseek-operator-gateway")
    assert binding["roleRef"]["name"] == "deepseek-operator-gateway"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "deepseek-gateway",
                                    "namespace": "deepseek-operator-system"}]


def test_the_operator_runs_with_the_gateway_and_may_grant_model_query() -> None:
    (container,) = _base("Deployment", "deepseek-operator")["spec"]["template"]["spec"][
        "containers"]
    assert "--gateway-url=http://deepseek-gateway.deepseek-operator-system.svc" in container[
        "args"], "the gateway is on, and status.endpoint names its Service"
    assert "--scraper-pod-selector=app.kubernetes.io/name=prometheus" in container["args"]
    role = _base("ClusterRole", "deepseek-operator")
    assert {"apiGroups": ["deepseek-operator.io"], "resources": ["deepseekdeployments/query"],
            "verbs": ["create"]} in role["rules"]
