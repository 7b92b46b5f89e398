"""Access to the engines, on the real control plane: model:query as its own RBAC rule
(checked with real SubjectAccessReviews, as the gateway asks them), the engine
NetworkPolicy as an owned child, the gateway policy ConfigMap left to the holders of
system:configure, and scale from zero on the gateway's queue (a real Prometheus scraping
a stand-in of the gateway's metrics; the operator run with ``--gateway``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from deepseek_operator.api.constants import GROUP
from e2e.cluster import controlplane
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess
from e2e.rig.gateway_metrics import GatewayMetrics
from e2e.rig.prometheus import PrometheusServer
from e2e.test_controller import (
    create,
    get,
    operator_writes,
    small_model,
    utc_now,
    wait_condition,
)

ACCESS = {
    "roles": {"user": ["model:query"], "reader": ["model:read"],
              "configurer": ["system:configure"]},
    "bindings": [
        {"role": "user", "subjects": [{"kind": "User", "name": "alice"}]},
        {"role": "reader", "subjects": [{"kind": "User", "name": "bob"}]},
        {"role": "configurer", "subjects": [{"kind": "User", "name": "carol"}]},
    ],
}


def review(kube: client.ApiClient, user: str, namespace: str, name: str,
           verb: str = "create", subresource: str = "query") -> bool:
    """A SubjectAccessReview as the gateway asks it: may ``user`` ``verb`` the
    DeepSeekDeployment ``name`` (its ``subresource``)?"""
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "resourceAttributes": {
                "group": GROUP, "resource": "deepseekdeployments", "subresource": subresource,
                "verb": verb, "name": name, "namespace": namespace}}}
    result = client.AuthorizationV1Api(kube).create_subject_access_review(body)
    return bool(result.status.allowed)


def impersonating(kube: client.ApiClient, user: str) -> client.ApiClient:
    """An ApiClient that acts as ``user`` (the admin may impersonate anyone)."""
    api = client.ApiClient(kube.configuration)
    api.set_default_header("Impersonate-User", user)  # type: ignore[no-untyped-call]
    return api


def test_model_query_is_create_on_the_query_subresource_of_that_deployment(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        kubectl: Path, kubeconfig: Path) -> None:
    create(dsd_api, namespace, small_model("asked", access=ACCESS))
    create(dsd_api, namespace, small_model("other"))
    # RBAC's informer sees the new RoleBindings a moment after they exist.
    wait_for("alice may query", lambda: review(kube, "alice", namespace, "asked"), 60)
    wait_for("bob may read", lambda: review(kube, "bob", namespace, "asked", "get", ""), 60)
    assert not review(kube, "bob", namespace, "asked"), "model:read alone does not query"
    assert not review(kube, "alice", namespace, "other"), "only the named deployment"
    assert not review(kube, "alice", namespace, "asked", "get", ""), "query grants no read"
    # kubectl auth can-i and the gateway's review agree.
    assert can_i(kubectl, kubeconfig, namespace, "alice") == "yes"
    assert can_i(kubectl, kubeconfig, namespace, "bob") == "no"


def test_a_subject_taken_out_of_the_spec_or_added_by_hand_loses_access(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    both = {"bindings": [{"role": "user", "subjects": [{"kind": "User", "name": "alice"},
                                                       {"kind": "User", "name": "dave"}]}]}
    create(dsd_api, namespace, small_model("revoked", access=both))
    wait_for("dave may query", lambda: review(kube, "dave", namespace, "revoked"), 60)
    dsd_api.patch_namespaced_custom_object(
        GROUP, "v1alpha1", namespace, "deepseekdeployments", "revoked",
        {"spec": {"access": {"bindings": [{"role": "user", "subjects": [
            {"kind": "User", "name": "alice"}]}]}}})
    wait_for("dave's access revoked",
             lambda: not review(kube, "dave", namespace, "revoked"), 60)
    assert review(kube, "alice", namespace, "revoked")
    # A subject added to the RoleBinding by hand is drift like any other: repaired.
    rbac = client.RbacAuthorizationV1Api(kube)
    edited = rbac.patch_namespaced_role_binding(
        "revoked-user", namespace, [{"op": "add", "path": "/subjects/-", "value": {
            "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "mallory"}}])
    assert [s.name for s in edited.subjects] == ["alice", "mallory"]
    wait_for("mallory's hand-added subject removed", lambda: [
        s.name for s in rbac.read_namespaced_role_binding("revoked-user", namespace).subjects
    ] == ["alice"], 60)


def can_i(kubectl: Path, kubeconfig: Path, namespace: str, user: str) -> str:
    """``kubectl auth can-i create deepseekdeployments.deepseek-operator.io/asked
    --subresource=query`` as ``user``: its answer (it exits 1 for no)."""
    done = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "auth", "can-i",
                           "create", f"deepseekdeployments.{GROUP}/asked",
                           "--subresource=query", "-n", namespace, "--as", user],
                          capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.stdout.strip()


def test_the_engine_network_policy_is_an_owned_child_that_comes_back(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, small_model("fenced"))
    network = client.NetworkingV1Api(kube)

    def policy() -> Any:
        try:
            return network.read_namespaced_network_policy("fenced-engine", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    found = wait_for("the NetworkPolicy fenced-engine", policy, 60)
    uid = get(dsd_api, namespace, "fenced")["metadata"]["uid"]
    (owner,) = found.metadata.owner_references
    assert (owner.uid, owner.kind, owner.controller) == (uid, "DeepSeekDeployment", True)
    assert found.spec.policy_types == ["Ingress"]
    assert found.spec.pod_selector.match_labels["deepseek-operator.io/deployment"] == "fenced"
    sources = [peer.pod_selector.match_labels for rule in found.spec.ingress
               for peer in rule._from]
    assert {"app.kubernetes.io/name": "deepseek-gateway"} in sources
    old_uid = found.metadata.uid
    network.delete_namespaced_network_policy("fenced-engine", namespace)
    wait_for("the deleted NetworkPolicy to come back",
             lambda: (p := policy()) is not None and p.metadata.uid != old_uid, 60)


def test_gateway_policy_edits_stay_while_other_children_are_repaired(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, small_model("tuned", access=ACCESS))
    wait_condition(dsd_api, namespace, "tuned", "Ready", "True", 90)
    core = client.CoreV1Api(kube)
    created = core.read_namespaced_config_map("tuned-gateway-policy", namespace)
    defaults = yaml.safe_load(created.data["policy.yaml"])
    assert defaults["maxConcurrentPerReplica"] == 4  # the spec's maxConcurrentSequences
    assert [o.uid for o in created.metadata.owner_references] == [
        get(dsd_api, namespace, "tuned")["metadata"]["uid"]]
    edited = {**defaults, "maxQueuedRequests": 3, "queueTimeoutSeconds": 42}
    as_carol = client.CoreV1Api(impersonating(kube, "carol"))
    body = {"data": {"policy.yaml": yaml.safe_dump(edited)}}

    def carol_edits() -> bool:
        try:
            as_carol.patch_namespaced_config_map("tuned-gateway-policy", namespace, body)
        except ApiException as exc:
            if exc.status == 403:  # RBAC's informer has not seen the RoleBinding yet
                return False
            raise
        return True

    wait_for("carol (system:configure) to edit the gateway policy", carol_edits, 60)
    since = utc_now()
    with pytest.raises(ApiException) as refused:
        as_carol.patch_namespaced_config_map("tuned-runtime", namespace,
                                             {"data": {"runtime.yaml": "x"}})
    assert refused.value.status == 403, "the runtime ConfigMap is the operator's"
    # A hand edit of another child: its repair is a reconcile after the policy edit.
    core.patch_namespaced_config_map("tuned-runtime", namespace,
                                     {"data": {"runtime.yaml": "edited by hand"}})
    wait_for("the runtime ConfigMap to be repaired", lambda: core.read_namespaced_config_map(
        "tuned-runtime", namespace).data["runtime.yaml"] != "edited by hand", 60)
    kept = core.read_namespaced_config_map("tuned-gateway-policy", namespace)
    assert yaml.safe_load(kept.data["policy.yaml"]) == edited
    writes = [w for w in operator_writes(since) if w[1] == "configmaps"]
    assert ("patch", "configmaps", "tuned-runtime") in writes
    assert not [w for w in writes if w[2] == "tuned-gateway-policy"], writes
    # Deleted, it comes back with the defaults.
    core.delete_namespaced_config_map("tuned-gateway-policy", namespace)
    again = wait_for("the policy ConfigMap to be created again", lambda: next(
        (c for c in core.list_namespaced_config_map(namespace).items
         if c.metadata.name == "tuned-gateway-policy"), None), 60)
    assert yaml.safe_load(again.data["policy.yaml"]) == defaults


# --- scale from zero on the gateway's queue ---------------------------------------------


@pytest.fixture
def gateway_operator(operator: OperatorProcess, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator run with ``--gateway`` instead of the session's (restarted after)."""
    operator.stop()
    with_gateway = OperatorProcess(controlplane.kubeconfig_path("operator"),
                                   tmp_path / "gateway-operator.log", ["--gateway"])
    try:
        with_gateway.start()
        yield with_gateway
    finally:
        with_gateway.stop()
        operator.start()


@pytest.fixture
def gateway_metrics(rig_prometheus: PrometheusServer) -> Iterator[GatewayMetrics]:
    """The gateway's metric names served by a stand-in and scraped by the rig's Prometheus."""
    with GatewayMetrics() as metrics:
        rig_prometheus.set_targets([metrics.target])
        rig_prometheus.wait_for_up_targets(1)
        yield metrics
    rig_prometheus.set_targets([])


def test_a_request_queued_at_zero_replicas_brings_one_up(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        rig_prometheus: PrometheusServer, gateway_metrics: GatewayMetrics,
        gateway_operator: OperatorProcess) -> None:
    name = "woken"
    # The gateway has counted no request for it yet: the counter's series exists at 0.
    gateway_metrics.requests.labels(namespace, name)
    create(dsd_api, namespace, small_model(name, replicas=0, storage={
        "accessMode": "ReadWriteMany"}, autoscaling={
        "mode": "operator", "minReplicas": 0, "maxReplicas": 2, "targetQPSPerReplica": 2.0,
        "intervalSeconds": 5, "scaleUpStabilizationSeconds": 0,
        "prometheus": {"url": rig_prometheus.url}}))
    apps = client.AppsV1Api(kube)

    def autoscaling() -> dict[str, Any]:
        return dict((get(dsd_api, namespace, name).get("status") or {}).get("autoscaling")
                    or {})

    # The default query (no override) reads the gateway: 0 requests/s, so 0 replicas.
    idle = wait_for("a decision on the gateway's metrics", lambda: (
        a := autoscaling()).get("observedQPS") == 0 and a, 90)
    assert idle["desiredReplicas"] == 0
    assert apps.read_namespaced_deployment(name, namespace).spec.replicas == 0
    # One request held by the gateway: 1 request/s of demand, ceil(1 / 2) = 1 replica.
    gateway_metrics.queued.labels(namespace, name).set(1)
    wait_for("the Deployment at 1 replica",
             lambda: apps.read_namespaced_deployment(name, namespace).spec.replicas == 1, 90)
    woken = autoscaling()
    assert woken["observedQPS"] >= 1 and woken["desiredReplicas"] == 1, woken
