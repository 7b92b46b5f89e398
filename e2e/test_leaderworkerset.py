"""A replica that spans nodes, served by the real LeaderWorkerSet controller.

The local control plane runs the LWS controller (sigs.k8s.io/lws, e2e/cluster/lws.py) with
its admission webhooks registered by URL, the StatefulSet controller of
kube-controller-manager, and kwok nodes that make pods Running and Ready. So the R1 sample
on two 8 x H100 nodes becomes a LeaderWorkerSet, its groups (a leader StatefulSet, a
worker StatefulSet per group, their pods) come up, and the DeepSeekDeployment becomes
Ready from the LeaderWorkerSet's own status.

The operator of this module runs with a one-hour resync and relist: every status change
seen here comes from watch events, not from the safety resync.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from e2e.cluster import controlplane, lws, processes
from e2e.kube import install_pod_monitor_crd, wait_for
from e2e.operator_process import REPO, OperatorProcess
from e2e.test_controller import condition, create, get, operator_writes, wait_quiet

SAMPLE = REPO / "manifests" / "samples" / "r1-2x8-h100.yaml"
NAME = "r1-2x8-h100"
H100 = "NVIDIA-H100-80GB-HBM3"
LWS_GROUP, LWS_VERSION, LWS_PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
GROUP_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
WORKER_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
HAND = "e2e-hand"  # the other field manager of the drift test
# Creating R1 (claim, download Job, two 8-GPU pods) on a loaded 2-core machine.
READY_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def watch_driven_operator(kube: client.ApiClient, operator: OperatorProcess,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator with a one-hour resync and relist instead of the session's (which is
    started again afterwards), started after the PodMonitor CRD is installed."""
    install_pod_monitor_crd(kube)
    operator.stop()
    log = tmp_path_factory.mktemp("lws-operator") / "operator.log"
    slow = OperatorProcess(controlplane.kubeconfig_path("operator"), log,
                           ["--resync-seconds=3600", "--relist-seconds=3600",
                            "--download-poll-seconds=5"])
    try:
        slow.start()
        yield slow
    finally:
        slow.stop()
        operator.start()


@pytest.fixture(scope="module")
def h100_nodes(kube: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[list[str]]:
    """Two more simulated 8 x H100 nodes (five in all), so two groups of two nodes fit
    even while another test's pods still leave a default node."""
    nodes_file = tmp_path_factory.mktemp("lws-nodes") / "nodes.yaml"
    nodes_file.write_text(json.dumps({"nodes": [{
        "name": "gpu-h100-lws", "count": 2, "cpu": "96", "memory": "1536Gi",
        "gpu": {"count": 8, "product": H100, "memoryMiB": 81559}}]}))
    core = client.CoreV1Api(kube)
    nodes = controlplane.node_manifests(nodes_file)
    for node in nodes:
        core.create_node(node)
    names = [n["metadata"]["name"] for n in nodes]
    yield names
    for name in names:
        core.delete_node(name)


def _lws(objects: client.CustomObjectsApi, namespace: str) -> dict[str, Any] | None:
    try:
        found = objects.get_namespaced_custom_object(LWS_GROUP, LWS_VERSION, namespace,
                                                     LWS_PLURAL, NAME)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    assert isinstance(found, dict)
    return found


def _ready_groups(kube: client.ApiClient, namespace: str) -> dict[int, list[client.V1Pod]]:
    """Running, Ready pods of the LeaderWorkerSet by group index."""
    pods = client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector=f"{NAME_LABEL}={NAME}").items
    groups: dict[int, list[client.V1Pod]] = {}
    for pod in pods:
        ready = pod.status.phase == "Running" and any(
            c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if ready and not pod.metadata.deletion_timestamp:
            groups.setdefault(int(pod.metadata.labels[GROUP_LABEL]), []).append(pod)
    return groups


def _wait_ready(api: client.CustomObjectsApi, namespace: str, ready_replicas: int,
                timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(api, namespace, NAME)
        status = obj.get("status") or {}
        current = status.get("observedGeneration") == obj["metadata"]["generation"]
        return obj if (current and condition(obj, "Ready").get("status") == "True"
                       and status.get("readyReplicas") == ready_replicas) else None
    return wait_for(f"{namespace}/{NAME} Ready with {ready_replicas} replicas", check, timeout)


def _scale(api: client.CustomObjectsApi, namespace: str, replicas: int) -> None:
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME,
                                       {"spec": {"replicas": replicas}})


def test_a_multi_node_r1_is_served_by_a_real_leaderworkerset(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        watch_driven_operator: OperatorProcess, h100_nodes: list[str]) -> None:
    objects, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    apps = client.AppsV1Api(kube)
    body = yaml.safe_load(SAMPLE.read_text())
    started = time.monotonic()
    create(dsd_api, namespace, copy.deepcopy(body))

    # Ready from the LeaderWorkerSet's status, long before a resync could have run.
    obj = _wait_ready(dsd_api, namespace, 1)
    assert time.monotonic() - started < 3600
    ready = condition(obj, "Ready")
    assert (ready["reason"], ready["message"]) == ("ReplicasReady", "1/1 replicas ready")
    assert (obj["status"]["phase"], obj["status"]["replicas"]) == ("Ready", 1)
    assert obj["status"]["sizing"]["nodesPerReplica"] == 2

    lws_obj = _lws(objects, namespace)
    assert lws_obj is not None
    assert [o["uid"] for o in lws_obj["metadata"]["ownerReferences"]] == [obj["metadata"]["uid"]]
    assert lws_obj["spec"]["replicas"] == 1
    assert lws_obj["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert (lws_obj["status"]["readyReplicas"], lws_obj["status"]["replicas"]) == (1, 1)
    # The controller made the group: a leader StatefulSet and one worker StatefulSet.
    assert apps.read_namespaced_stateful_set(NAME, namespace).spec.replicas == 1
    assert apps.read_namespaced_stateful_set(f"{NAME}-0", namespace).spec.replicas == 1

    groups = _ready_groups(kube, namespace)
    assert sorted(groups) == [0]
    pods = sorted(groups[0], key=lambda p: p.metadata.labels[WORKER_LABEL])
    assert [p.metadata.name for p in pods] == [f"{NAME}-0", f"{NAME}-0-1"]
    nodes = [core.read_node(p.spec.node_name) for p in pods]
    assert [n.metadata.labels["nvidia.com/gpu.product"] for n in nodes] == [H100, H100]
    assert len({n.metadata.name for n in nodes}) == 2, "one pod per node"
    for pod in pods:
        engine = pod.spec.containers[0]
        assert engine.resources.limits["nvidia.com/gpu"] == "8"
        # Injected by the controller's pod webhook, called by the apiserver at create.
        assert "LWS_LEADER_ADDRESS" in [e.name for e in engine.env or []]

    # Scaling the groups: spec.replicas -> the LeaderWorkerSet's replicas -> a second group.
    _scale(dsd_api, namespace, 2)
    obj = _wait_ready(dsd_api, namespace, 2)
    assert _lws(objects, namespace)["spec"]["replicas"] == 2
    assert sorted(_ready_groups(kube, namespace)) == [0, 1]
    _scale(dsd_api, namespace, 1)
    _wait_ready(dsd_api, namespace, 1)
    wait_for("the second group gone", lambda: sorted(
        str(p.metadata.name) for p in core.list_namespaced_pod(
            namespace, label_selector=f"{NAME_LABEL}={NAME}").items) == [
        f"{NAME}-0", f"{NAME}-0-1"], 120)
    assert _lws(objects, namespace)["spec"]["replicas"] == 1


def test_drift_of_the_leaderworkerset_and_its_pod_monitor_is_repaired_once(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        watch_driven_operator: OperatorProcess, h100_nodes: list[str]) -> None:
    objects = client.CustomObjectsApi(kube)
    create(dsd_api, namespace, yaml.safe_load(SAMPLE.read_text()))
    _wait_ready(dsd_api, namespace, 1)
    monitor = wait_for("the PodMonitor", lambda: objects.get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "podmonitors", NAME), 60)
    path = monitor["spec"]["podMetricsEndpoints"][0]["path"]
    since = wait_quiet(namespace, quiet_seconds=5, timeout=120)

    # Another field manager changes fields the operator owns.
    objects.patch_namespaced_custom_object(
        LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL, NAME, {"spec": {"replicas": 3}},
        field_manager=HAND)
    endpoints = [{**e, "path": "/hijacked"} for e in monitor["spec"]["podMetricsEndpoints"]]
    objects.patch_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "podmonitors", NAME,
        {"spec": {"podMetricsEndpoints": endpoints}}, field_manager=HAND)

    wait_for("the LeaderWorkerSet's replicas repaired", lambda: (
        _lws(objects, namespace) or {}).get("spec", {}).get("replicas") == 1, 60)
    wait_for("the PodMonitor's path repaired", lambda: objects.get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "podmonitors", NAME)["spec"][
        "podMetricsEndpoints"][0]["path"] == path, 60)
    # The LWS controller meanwhile made and removed the groups of replicas 3; its status
    # changes reach the operator as watch events and must not start an apply war.
    _wait_ready(dsd_api, namespace, 1)
    time.sleep(10)
    writes = [f"{verb} {resource}" for verb, resource, name in operator_writes(since)
              if name == NAME and resource in (LWS_PLURAL, "podmonitors")]
    assert sorted(writes) == [f"patch {LWS_PLURAL}", "patch podmonitors"], writes


def _plain_lws(name: str, size: int = 2, **rollout: Any) -> dict[str, Any]:
    """A LeaderWorkerSet of CPU-only pods (they land on the kwok CPU node)."""
    container = {"name": "main", "image": "registry.invalid/main:1"}
    spec: dict[str, Any] = {"replicas": 1, "leaderWorkerTemplate": {
        "size": size, "workerTemplate": {"spec": {"containers": [container]}}}}
    if rollout:
        spec["rolloutStrategy"] = {"type": "RollingUpdate", "rollingUpdateConfiguration": rollout}
    return {"apiVersion": f"{LWS_GROUP}/{LWS_VERSION}", "kind": "LeaderWorkerSet",
            "metadata": {"name": name}, "spec": spec}


def _group_ready(objects: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    found = objects.get_namespaced_custom_object(LWS_GROUP, LWS_VERSION, namespace,
                                                 LWS_PLURAL, name)
    assert isinstance(found, dict)
    return bool((found.get("status") or {}).get("readyReplicas") == 1)


def test_the_webhooks_and_the_controller_survive_restarts(
        kube: client.ApiClient, namespace: str) -> None:
    objects = client.CustomObjectsApi(kube)
    # The validating webhook (not the schema) refuses maxSurge = maxUnavailable = 0.
    with pytest.raises(ApiException) as refused:
        objects.create_namespaced_custom_object(
            LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL,
            _plain_lws("frozen", maxSurge=0, maxUnavailable=0))
    message = json.loads(refused.value.body)["message"]
    assert message.startswith('admission webhook "vleaderworkerset.kb.io" denied the request')
    assert "must not be 0 when `maxSurge` is 0" in message
    # The mutating webhook defaults what the schema does not.
    objects.create_namespaced_custom_object(LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL,
                                            _plain_lws("before"))
    made = objects.get_namespaced_custom_object(LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL,
                                                "before")
    assert made["spec"]["networkConfig"]["subdomainPolicy"] == "Shared"
    assert made["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    wait_for("group of 'before' ready", lambda: _group_ready(objects, namespace, "before"), 120)

    controller = processes.recorded()[lws.PROCESS]
    controlplane.restart("kube-apiserver")
    assert processes.recorded()[lws.PROCESS] == controller and processes.alive(controller)
    lws.restart()  # and a crash of the controller itself
    assert controlplane.running()
    objects.create_namespaced_custom_object(LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL,
                                            _plain_lws("after"))
    wait_for("group of 'after' ready", lambda: _group_ready(objects, namespace, "after"), 120)
    objects.patch_namespaced_custom_object(LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL,
                                           "before", {"spec": {"replicas": 0}})
    wait_for("'before' scaled to no group", lambda: not client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector=f"{NAME_LABEL}=before").items, 120)
    assert lws.rss_bytes() > 0
