"""The local control plane behaves like a real cluster: nodes, scheduling, GC, storage, RBAC."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from e2e.cluster import controlplane, paths
from e2e.kube import token_client, wait_for

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _gpu_deployment(name: str, replicas: int, gpus: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "tolerations": [GPU_TOLERATION],
                    "containers": [{
                        "name": "engine", "image": "example.invalid/engine:1",
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                    }],
                },
            },
        },
    }


def _pods(kube: client.ApiClient, namespace: str, app: str) -> list[client.V1Pod]:
    return list(client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector=f"app={app}").items)


def _ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_nodes_are_ready_with_gpu_capacity(kube: client.ApiClient) -> None:
    nodes = client.CoreV1Api(kube).list_node().items
    expected = controlplane.node_manifests(paths.DEFAULT_NODES_FILE)
    assert sorted(str(n.metadata.name) for n in nodes) == sorted(
        m["metadata"]["name"] for m in expected)
    for node in nodes:
        ready = {c.type: c.status for c in node.status.conditions}
        assert ready.get("Ready") == "True", node.metadata.name
    gpu_nodes = [n for n in nodes if "nvidia.com/gpu" in (n.status.allocatable or {})]
    assert len(gpu_nodes) == 7
    products = sorted(n.metadata.labels["nvidia.com/gpu.product"] for n in gpu_nodes)
    assert products == (["NVIDIA-A100-SXM4-40GB"] * 2 + ["NVIDIA-H100-80GB-HBM3"] * 3
                        + ["NVIDIA-H200", "NVIDIA-L4"])
    for node in gpu_nodes:
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
        assert node.metadata.labels["nvidia.com/gpu.count"] == "8"
        assert int(node.metadata.labels["nvidia.com/gpu.memory"]) in (81559, 40960, 143771, 23034)
        assert [(t.key, t.effect) for t in node.spec.taints] == [("nvidia.com/gpu", "NoSchedule")]


def test_gpu_pods_become_ready_on_gpu_nodes(kube: client.ApiClient, namespace: str) -> None:
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, _gpu_deployment("fits", 2, 4))

    def two_ready() -> list[client.V1Pod] | None:
        ready = [p for p in _pods(kube, namespace, "fits") if _ready(p)]
        return ready if len(ready) == 2 else None

    pods = wait_for("2 Ready GPU pods", two_ready, 90)
    nodes = {n.metadata.name: n for n in client.CoreV1Api(kube).list_node().items}
    for pod in pods:
        assert pod.status.phase == "Running"
        assert "nvidia.com/gpu.product" in nodes[pod.spec.node_name].metadata.labels


def test_pod_asking_for_more_gpus_than_any_node_stays_pending(
        kube: client.ApiClient, namespace: str) -> None:
    client.AppsV1Api(kube).create_namespaced_deployment(
        namespace, _gpu_deployment("too-big", 1, 16))

    def unschedulable() -> client.V1PodCondition | None:
        for pod in _pods(kube, namespace, "too-big"):
            for cond in pod.status.conditions or []:
                if cond.type == "PodScheduled" and cond.status == "False":
                    return cond
        return None

    cond = wait_for("PodScheduled=False", unschedulable, 60)
    assert cond.reason == "Unschedulable"
    assert "nvidia.com/gpu" in cond.message
    pod = _pods(kube, namespace, "too-big")[0]
    assert pod.status.phase == "Pending" and not pod.spec.node_name


def test_untolerated_gpu_taint_keeps_pods_off_gpu_nodes(
        kube: client.ApiClient, namespace: str) -> None:
    body = _gpu_deployment("cpu-only", 1, 0)
    body["spec"]["template"]["spec"]["tolerations"] = []
    del body["spec"]["template"]["spec"]["containers"][0]["resources"]
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, body)
    pod = wait_for("a Ready CPU pod", lambda: next(
        (p for p in _pods(kube, namespace, "cpu-only") if _ready(p)), None), 60)
    assert pod.spec.node_name.startswith("cpu-")


def test_deleting_owner_garbage_collects_dependents(
        kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "dependent",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                             "uid": owner.metadata.uid, "controller": True}]}})
    core.delete_namespaced_config_map("owner", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_for("the dependent ConfigMap to be garbage-collected", gone, 60)


@pytest.mark.parametrize("mode", ["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"])
def test_pvc_binds_in_every_access_mode(kube: client.ApiClient, namespace: str,
                                        mode: str) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "cache"},
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "100Gi"}}}})

    def bound() -> client.V1PersistentVolumeClaim | None:
        claim = core.read_namespaced_persistent_volume_claim("cache", namespace)
        return claim if claim.status.phase == "Bound" else None

    pvc = wait_for(f"{mode} claim Bound", bound, 60)
    assert pvc.spec.storage_class_name == controlplane.STORAGE_CLASS
    assert pvc.status.access_modes == [mode]
    assert pvc.status.capacity["storage"] == "100Gi"


def test_pvc_with_missing_storage_class_stays_pending(
        kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "cache"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "does-not-exist",
                 "resources": {"requests": {"storage": "1Gi"}}}})
    event = wait_for("a ProvisioningFailed event", lambda: next(
        (e for e in core.list_namespaced_event(namespace).items
         if e.involved_object.name == "cache" and e.reason == "ProvisioningFailed"), None), 60)
    assert "does-not-exist" in event.message
    assert core.read_namespaced_persistent_volume_claim(
        "cache", namespace).status.phase == "Pending"


def test_rbac_refuses_a_service_account_without_a_role(
        kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}).status.token
    as_reader = client.CoreV1Api(token_client(kube, token))
    with pytest.raises(ApiException) as refused:
        as_reader.list_namespaced_config_map(namespace)
    assert refused.value.status == 403

    rbac = client.RbacAuthorizationV1Api(kube)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "read-configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    allowed = wait_for("the Role to take effect", lambda: _try_list(as_reader, namespace), 30)
    assert allowed == "allowed"
    with pytest.raises(ApiException) as still_refused:
        as_reader.list_namespaced_secret(namespace)
    assert still_refused.value.status == 403


def _try_list(core: client.CoreV1Api, namespace: str) -> str | None:
    try:
        core.list_namespaced_config_map(namespace)
    except ApiException:
        return None
    return "allowed"
