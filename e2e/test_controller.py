"""The operator against the real control plane: reconcile, status, drift, deletion, errors."""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.render.labels import pod_selector
from e2e.cluster import audit, controlplane
from e2e.kube import install_pod_monitor_crd, wait_for
from e2e.operator_process import OperatorProcess

OPERATOR_USER = controlplane.OPERATOR_USER


def small_model(name: str, **spec: Any) -> dict[str, Any]:
    """A DeepSeekDeployment that fits one A100-40GB of the test cluster."""
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "DeepSeekDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "deepseek-r1-distill-qwen-1.5b", "maxModelLen": 8192},
            "gpu": {"type": "A100-40GB", "maxConcurrentSequences": 4},
            "replicas": 1,
            "autoscaling": {"mode": "none"},
        },
    }
    for key, value in spec.items():
        body["spec"][key] = {**body["spec"].get(key, {}), **value} if isinstance(
            value, dict) else value
    return body


def create(api: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> None:
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def get(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    assert isinstance(obj, dict)
    return obj


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def wait_condition(api: client.CustomObjectsApi, namespace: str, name: str, ctype: str,
                   status: str, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(api, namespace, name)
        current = (obj.get("status") or {}).get("observedGeneration") == obj["metadata"][
            "generation"]
        return obj if current and condition(obj, ctype).get("status") == status else None

    return wait_for(f"{namespace}/{name} {ctype}={status}", check, timeout)


def run_kubectl(kubectl: Path, kubeconfig: Path, *args: str) -> str:
    result = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), *args],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def deployment(kube: client.ApiClient, namespace: str, name: str) -> client.V1Deployment:
    return client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)


def operator_writes(since: str) -> list[tuple[str, str, str]]:
    """(verb, resource, name) of every write by the operator since an RFC 3339 time."""
    return [(e["verb"], audit.resource_of(e), (e.get("objectRef") or {}).get("name", ""))
            for e in audit.operator_entries(since)
            if e["verb"] in ("create", "update", "patch", "delete", "deletecollection")]


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def wait_quiet(namespace: str, quiet_seconds: float = 3, timeout: float = 60) -> str:
    """Wait until the operator has written nothing in ``namespace`` for ``quiet_seconds``
    (the end of a start-up, kopf's own annotations included, takes longer on a loaded
    machine); return the time to count further writes from."""
    def quiet() -> str | None:
        since = utc_now()
        time.sleep(quiet_seconds)
        if any(e["verb"] in ("create", "update", "patch", "delete")
               and (e.get("objectRef") or {}).get("namespace") == namespace
               for e in audit.operator_entries(since)):
            return None
        return since

    return wait_for(f"the operator quiet in {namespace}", quiet, timeout, interval=0)


def test_create_to_ready_with_children_and_status(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        kubectl: Path, kubeconfig: Path) -> None:
    create(dsd_api, namespace, small_model("r1"))
    run_kubectl(kubectl, kubeconfig, "wait", "--for=condition=Ready", "dsd/r1", "-n", namespace,
                "--timeout=90s")
    obj = get(dsd_api, namespace, "r1")
    status = obj["status"]
    assert status["phase"] == "Ready"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["replicas"] == status["readyReplicas"] == 1
    assert status["endpoint"] == f"http://r1.{namespace}.svc.cluster.local:8000/v1"
    assert status["sizing"]["gpusPerReplica"] == 1
    for ctype in ("StorageReady", "ModelCached", "Scheduled", "AutoscalerReady"):
        assert condition(obj, ctype)["status"] == "True", ctype
    assert condition(obj, "Stalled")["status"] == "False"
    # The scale subresource's selector finds exactly the serving pods.
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=status["selector"])
    assert len(pods.items) == 1
    assert pods.items[0].spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    # Every child is owned by the CR; the model cache is retained (no owner) by default.
    uid = obj["metadata"]["uid"]
    dep = deployment(kube, namespace, "r1")
    assert [o.uid for o in dep.metadata.owner_references] == [uid]
    claim = client.CoreV1Api(kube).read_namespaced_persistent_volume_claim(
        "r1-model-cache", namespace)
    assert not claim.metadata.owner_references
    # Events are posted asynchronously, a moment after the status.
    wait_for("a ReplicasReady event on the CR", lambda: any(
        e.reason == "ReplicasReady" for e in client.CoreV1Api(kube).list_namespaced_event(
            namespace, field_selector="involvedObject.name=r1").items), 30)


def test_noop_reconcile_makes_zero_writes(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, small_model("quiet"))
    wait_condition(dsd_api, namespace, "quiet", "Ready", "True", 90)
    since = wait_quiet(namespace)  # the last status write and child events settle
    # A child event makes the operator reconcile; nothing differs, so nothing is written.
    client.CoreV1Api(kube).patch_namespaced_service(
        "quiet", namespace, {"metadata": {"annotations": {"example.com/touched": "1"}}})
    time.sleep(5)
    mine = [w for w in operator_writes(since) if w[2].startswith("quiet")]
    assert mine == [], mine


def test_spec_change_rolls_workload_and_updates_generation(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, small_model("roll"))
    wait_condition(dsd_api, namespace, "roll", "Ready", "True", 90)
    before = deployment(kube, namespace, "roll").spec.template.spec.containers[0]
    dsd_api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "roll", {
        "spec": {"engine": {"image": "vllm/vllm-openai:v0.0.0-e2e"},
                 "model": {"maxModelLen": 4096}}})
    obj = wait_condition(dsd_api, namespace, "roll", "Ready", "True", 90)
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 2
    after = deployment(kube, namespace, "roll").spec.template.spec.containers[0]
    assert after.image == "vllm/vllm-openai:v0.0.0-e2e" != before.image
    assert "4096" in " ".join(after.args or []) + " ".join(after.command or [])


def test_kubectl_scale_changes_replicas(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        kubectl: Path, kubeconfig: Path) -> None:
    create(dsd_api, namespace, small_model("scaled", storage={"accessMode": "ReadWriteMany"}))
    wait_condition(dsd_api, namespace, "scaled", "Ready", "True", 90)
    run_kubectl(kubectl, kubeconfig, "scale", "dsd/scaled", "-n", namespace, "--replicas=3")
    wait_for("Deployment at 3 replicas",
             lambda: deployment(kube, namespace, "scaled").spec.replicas == 3, 30)
    obj = wait_for("3 ready replicas in status", lambda: (
        lambda o: o if (o.get("status") or {}).get("readyReplicas") == 3 else None)(
            get(dsd_api, namespace, "scaled")), 60)
    assert condition(obj, "Ready")["status"] == "True"
    scale = dsd_api.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "scaled")
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3


def test_drift_is_repaired(kube: client.ApiClient, dsd_api: client.CustomObjectsApi,
                           namespace: str) -> None:
    create(dsd_api, namespace, small_model("drift"))
    wait_condition(dsd_api, namespace, "drift", "Ready", "True", 90)
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    core.delete_namespaced_service("drift", namespace)
    wait_for("the deleted Service to come back", lambda: _exists(
        lambda: core.read_namespaced_service("drift", namespace)), 30)
    image = deployment(kube, namespace, "drift").spec.template.spec.containers[0].image
    apps.patch_namespaced_deployment("drift", namespace, {"spec": {"replicas": 4, "template": {
        "spec": {"containers": [{"name": "engine", "image": "evil:latest"}]}}}})
    wait_for("the hand edit to be undone", lambda: (
        lambda d: d.spec.replicas == 1 and d.spec.template.spec.containers[0].image == image)(
            deployment(kube, namespace, "drift")), 30)


def _exists(read: Any) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@pytest.mark.parametrize("retain", [True, False])
def test_delete_keeps_the_model_cache_only_when_asked(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        retain: bool) -> None:
    name = f"del-{str(retain).lower()}"
    create(dsd_api, namespace, small_model(name, storage={"retainOnDelete": retain}))
    wait_condition(dsd_api, namespace, name, "Ready", "True", 90)
    dsd_api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    wait_for("the CR to be gone (no finalizer hangs)", lambda: not _exists(
        lambda: get(dsd_api, namespace, name)), 30)
    core = client.CoreV1Api(kube)
    wait_for("children garbage-collected", lambda: not _exists(
        lambda: deployment(kube, namespace, name)) and not _exists(
        lambda: core.read_namespaced_service(name, namespace)), 60)
    claim = f"{name}-model-cache"
    if retain:
        time.sleep(3)
        assert _exists(lambda: core.read_namespaced_persistent_volume_claim(claim, namespace))
    else:
        wait_for("the cache claim deleted", lambda: not _exists(
            lambda: core.read_namespaced_persistent_volume_claim(claim, namespace)), 60)


def test_spec_that_cannot_fit_is_stalled_with_numbers(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    body = small_model("too-big")
    body["spec"]["model"] = {"name": "deepseek-r1", "maxModelLen": 8192}
    body["spec"]["gpu"] = {"type": "A100-40GB", "count": 1}
    create(dsd_api, namespace, body)
    obj = wait_condition(dsd_api, namespace, "too-big", "Stalled", "True", 60)
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "InvalidSpec"
    assert "spec.gpu.count" in stalled["message"] and "GiB" in stalled["message"]
    assert condition(obj, "Ready")["status"] == "False"
    assert obj["status"]["phase"] == "Failed"
    assert not _exists(lambda: deployment(kube, namespace, "too-big"))
    events = client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector="involvedObject.name=too-big").items
    assert any(e.type == "Warning" and e.reason == "InvalidSpec" for e in events)


def test_a_forged_status_does_not_survive_the_next_reconcile(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """`kubectl patch --subresource=status` on a stalled DeepSeekDeployment without a
    Deployment: the next reconcile (here: an annotation) writes every field it owns, so the
    forged ready count (the READY column, the gateway's capacity) is gone."""
    body = small_model("forged")
    body["spec"]["model"] = {"name": "deepseek-r1", "maxModelLen": 8192}
    body["spec"]["gpu"] = {"type": "A100-40GB", "count": 1}
    create(dsd_api, namespace, body)
    wait_condition(dsd_api, namespace, "forged", "Stalled", "True", 60)
    # Until its watch delivered its own status write, the operator takes a copy that does
    # not show that write for an old one (only it writes status): forge after the watch
    # caught up (milliseconds here), as a hand edit would come.
    time.sleep(2)
    dsd_api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "forged",
        {"status": {"phase": "Ready", "readyReplicas": 5, "replicas": 5}})
    dsd_api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "forged",
        {"metadata": {"annotations": {"example.com/touched": "1"}}})

    def repaired() -> dict[str, Any] | None:
        status = get(dsd_api, namespace, "forged").get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for("the forged status overwritten", repaired, timeout=60)
    assert (status["readyReplicas"], status["replicas"]) == (0, 0)
    assert not _exists(lambda: deployment(kube, namespace, "forged"))


def test_more_gpus_than_the_cluster_has_is_unschedulable(
        dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    body = small_model("no-gpus")
    body["spec"]["gpu"] = {"type": "H100-80GB"}
    body["spec"]["replicas"] = 4
    body["spec"]["model"] = {"name": "deepseek-r1-distill-llama-70b", "maxModelLen": 8192}
    body["spec"]["gpu"]["count"] = 8
    body["spec"]["storage"] = {"accessMode": "ReadWriteMany"}
    create(dsd_api, namespace, body)
    # The first message may name the claim that is still binding; then the GPUs.
    obj = wait_for("Scheduled=False naming the missing GPUs", lambda: (
        lambda o: o if "Insufficient nvidia.com/gpu" in condition(o, "Scheduled").get(
            "message", "") else None)(get(dsd_api, namespace, "no-gpus")), 90)
    scheduled = condition(obj, "Scheduled")
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
    # Three replicas of 8 H100s fit on the three H100 nodes, the fourth does not.
    obj = wait_for("3 of 4 replicas ready", lambda: (
        lambda o: o if (o.get("status") or {}).get("readyReplicas") == 3 else None)(
            get(dsd_api, namespace, "no-gpus")), 60)
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Scheduled")["status"] == "False"
    assert condition(obj, "Ready")["status"] == "False"


def test_missing_storage_class_is_reported(dsd_api: client.CustomObjectsApi,
                                           namespace: str) -> None:
    create(dsd_api, namespace, small_model("no-sc", storage={"storageClassName": "fast-nvme"}))
    obj = wait_condition(dsd_api, namespace, "no-sc", "StorageReady", "False", 60)
    assert condition(obj, "StorageReady")["reason"] == "StorageClassNotFound"
    assert "fast-nvme" in condition(obj, "StorageReady")["message"]
    assert obj["status"]["phase"] == "Pending"


def test_operator_restart_converges_without_duplicates(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        operator: OperatorProcess) -> None:
    for i in range(5):
        create(dsd_api, namespace, small_model(f"restart-{i}"))
    time.sleep(0.5)
    operator.kill()  # in the middle of reconciling: no graceful shutdown
    operator.start()
    for i in range(5):
        wait_condition(dsd_api, namespace, f"restart-{i}", "Ready", "True", 120)
    deployments = client.AppsV1Api(kube).list_namespaced_deployment(namespace).items
    jobs = client.BatchV1Api(kube).list_namespaced_job(namespace).items
    assert sorted(str(d.metadata.name) for d in deployments) == [f"restart-{i}" for i in range(5)]
    assert len(jobs) == 5


@pytest.fixture
def extra_gpu_nodes(kube: client.ApiClient, tmp_path: Path) -> Iterator[int]:
    """Six more simulated 8 x A100 nodes, so 50 one-GPU replicas fit beside other tests."""
    nodes_file = tmp_path / "nodes.yaml"
    nodes_file.write_text(json.dumps({"nodes": [{
        "name": "gpu-extra", "count": 6, "cpu": "96", "memory": "1Ti",
        "gpu": {"count": 8, "product": "NVIDIA-A100-SXM4-80GB", "memoryMiB": 81920}}]}))
    core = client.CoreV1Api(kube)
    nodes = controlplane.node_manifests(nodes_file)
    for node in nodes:
        core.create_node(node)
    yield 6 * 8
    for node in nodes:
        core.delete_node(node["metadata"]["name"])


def test_fifty_deployments_at_once_all_become_ready(
        dsd_api: client.CustomObjectsApi, namespace: str, extra_gpu_nodes: int) -> None:
    for i in range(50):
        body = copy.deepcopy(small_model(f"many-{i:02d}"))
        body["spec"]["gpu"]["type"] = ""  # any GPU node with enough memory
        create(dsd_api, namespace, body)

    def all_ready() -> bool:
        items = dsd_api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        return len(items) == 50 and all(condition(o, "Ready").get("status") == "True"
                                        for o in items)

    wait_for("50 DeepSeekDeployments Ready", all_ready, 300, interval=2)


def test_failed_download_ends_in_a_failed_condition_with_the_jobs_message(
        dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    body = small_model("bad-bucket")
    body["spec"]["model"]["uri"] = "s3://e2e-fail/weights"
    create(dsd_api, namespace, body)
    obj = wait_condition(dsd_api, namespace, "bad-bucket", "ModelCached", "False", 90)
    obj = wait_for("ModelCached=False reason DownloadFailed", lambda: (
        lambda o: o if condition(o, "ModelCached").get("reason") == "DownloadFailed" else None)(
            get(dsd_api, namespace, "bad-bucket")), 90)
    cached = condition(obj, "ModelCached")
    assert "exit code 3" in cached["message"] or "PodFailurePolicy" in cached["message"]
    # What the script said (the pod's termination message; here the kwok stage's).
    assert "The download said: permanent download error for s3://e2e-fail/weights" \
        in cached["message"]
    assert condition(obj, "Stalled")["status"] == "True"
    assert condition(obj, "Ready")["reason"] == "DownloadFailed"
    assert obj["status"]["phase"] == "Failed"


def test_hand_set_replicas_stay_when_another_autoscaler_owns_them(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    body = small_model("hpa-owned", storage={"accessMode": "ReadWriteMany"})
    body["spec"]["autoscaling"] = {"mode": "hpa", "minReplicas": 1, "maxReplicas": 4}
    create(dsd_api, namespace, body)
    wait_for("the HorizontalPodAutoscaler", lambda: _exists(
        lambda: client.AutoscalingV2Api(kube).read_namespaced_horizontal_pod_autoscaler(
            "hpa-owned", namespace)), 60)
    wait_for("the Deployment", lambda: _exists(lambda: deployment(kube, namespace,
                                                                  "hpa-owned")), 60)
    client.AppsV1Api(kube).patch_namespaced_deployment_scale(
        "hpa-owned", namespace, {"spec": {"replicas": 3}})
    time.sleep(2)  # let the reconcile of the scale change settle
    since = utc_now()
    # A child event makes the operator reconcile; it must leave replicas to the HPA.
    client.CoreV1Api(kube).patch_namespaced_service(
        "hpa-owned", namespace, {"metadata": {"annotations": {"example.com/touched": "1"}}})
    time.sleep(5)
    assert deployment(kube, namespace, "hpa-owned").spec.replicas == 3
    status = get(dsd_api, namespace, "hpa-owned")["status"]
    assert status["desiredReplicas"] == 3  # the Desired column shows the HPA's count
    scaler = condition(get(dsd_api, namespace, "hpa-owned"), "AutoscalerReady")
    assert "spec.replicas (1) is not used in this mode" in scaler["message"], scaler
    # The per-direction tolerances reach the HPA in the apiserver's canonical quantity
    # form, so the re-apply above found nothing to change.
    behavior = client.AutoscalingV2Api(kube).read_namespaced_horizontal_pod_autoscaler(
        "hpa-owned", namespace).spec.behavior
    assert (behavior.scale_up.tolerance, behavior.scale_down.tolerance) == ("60m", "100m")
    hpa_writes = [w for w in operator_writes(since) if w[1] == "horizontalpodautoscalers"]
    assert hpa_writes == [], hpa_writes
    managers = {m.manager: m for m in deployment(kube, namespace,
                                                 "hpa-owned").metadata.managed_fields}
    assert "f:replicas" not in json.dumps(
        managers["deepseek-operator"].fields_v1 if "deepseek-operator" in managers else {})


@pytest.mark.parametrize("mode", ["hpa", "keda"])
def test_switching_to_an_external_autoscaler_keeps_the_serving_replicas(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        mode: str) -> None:
    name = f"to-{mode}"
    body = small_model(name, replicas=3, storage={"accessMode": "ReadWriteMany"})
    body["spec"]["autoscaling"] = {"mode": "none", "minReplicas": 1, "maxReplicas": 4}
    create(dsd_api, namespace, body)
    wait_condition(dsd_api, namespace, name, "Ready", "True", 120)
    pods_before = {p.metadata.name for p in client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector=pod_selector(name)).items}
    dsd_api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {
        "spec": {"autoscaling": {"mode": mode}}})
    # Server-side apply resets a released spec.replicas to its default (1) unless someone
    # else holds it: the operator hands it over at its live value first.
    counts: set[int] = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        counts.add(int(deployment(kube, namespace, name).spec.replicas))
        time.sleep(0.2)
    assert counts == {3}, counts
    managers = {m.manager for m in deployment(kube, namespace, name).metadata.managed_fields}
    assert "deepseek-operator-handover" in managers, managers
    pods_after = {p.metadata.name for p in client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector=pod_selector(name)).items}
    assert pods_before <= pods_after, "a serving pod was taken down"


def test_pvc_uri_reads_weights_from_an_existing_claim(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    body = small_model("from-pvc")
    body["spec"]["model"]["uri"] = "pvc://shared-models/qwen"
    create(dsd_api, namespace, body)
    obj = wait_condition(dsd_api, namespace, "from-pvc", "StorageReady", "False", 60)
    assert '"shared-models" does not exist' in condition(obj, "StorageReady")["message"]
    client.CoreV1Api(kube).create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "shared-models"},
        "spec": {"accessModes": ["ReadWriteMany"],
                 "resources": {"requests": {"storage": "10Gi"}}}})
    obj = wait_condition(dsd_api, namespace, "from-pvc", "Ready", "True", 90)
    assert condition(obj, "ModelCached")["status"] == "True"
    assert client.BatchV1Api(kube).list_namespaced_job(namespace).items == []


def test_turning_retain_on_delete_on_keeps_the_cache(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, small_model("retain-later", storage={"retainOnDelete": False}))
    wait_condition(dsd_api, namespace, "retain-later", "Ready", "True", 90)
    core = client.CoreV1Api(kube)
    claim = "retain-later-model-cache"
    assert core.read_namespaced_persistent_volume_claim(
        claim, namespace).metadata.owner_references
    dsd_api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "retain-later", {
        "spec": {"storage": {"retainOnDelete": True}}})
    wait_for("the owner reference released", lambda: not (
        core.read_namespaced_persistent_volume_claim(claim, namespace).metadata.owner_references),
        30)
    dsd_api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "retain-later")
    wait_for("the Deployment garbage-collected", lambda: not _exists(
        lambda: deployment(kube, namespace, "retain-later")), 60)
    assert _exists(lambda: core.read_namespaced_persistent_volume_claim(claim, namespace))


def test_a_write_the_api_refuses_is_reported(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, small_model("refused-write"))
    wait_condition(dsd_api, namespace, "refused-write", "Ready", "True", 90)
    # A hand edit that makes the operator's Service invalid to apply (two ports named http).
    core = client.CoreV1Api(kube)
    service = core.read_namespaced_service("refused-write", namespace)
    service.spec.ports = [client.V1ServicePort(name="http", port=9999, target_port=8000)]
    core.replace_namespaced_service("refused-write", namespace, service)
    obj = wait_condition(dsd_api, namespace, "refused-write", "Stalled", "True", 90)
    assert condition(obj, "Stalled")["reason"] == "ApplyFailed"
    assert "Service" in condition(obj, "Stalled")["message"]
    assert "if the object was edited by hand, delete it" in condition(obj, "Stalled")["message"]
    assert condition(obj, "Progressing")["message"].startswith(
        "waiting for the object to be fixed or deleted")
    assert condition(obj, "Ready")["status"] == "False"
    core.delete_namespaced_service("refused-write", namespace)
    wait_condition(dsd_api, namespace, "refused-write", "Ready", "True", 90)


def test_pod_monitor_once_the_prometheus_operator_is_installed(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """With the Prometheus Operator's real PodMonitor CRD (from the pinned module) installed,
    a DeepSeekDeployment gets a PodMonitor that selects its serving pods' named metrics port,
    owned by it, and a reconcile with nothing to change still writes nothing. The CRD stays
    installed: later tests then run as on a cluster with the Prometheus Operator."""
    install_pod_monitor_crd(kube)
    create(dsd_api, namespace, small_model("scraped"))
    objects = client.CustomObjectsApi(kube)

    def pod_monitor() -> dict[str, Any] | None:
        try:
            found = objects.get_namespaced_custom_object(
                "monitoring.coreos.com", "v1", namespace, "podmonitors", "scraped")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        assert isinstance(found, dict)
        return found

    # The operator looks the kinds up again when a CRD of a child kind is installed.
    monitor = wait_for("the PodMonitor", pod_monitor, 120)
    obj = wait_condition(dsd_api, namespace, "scraped", "Ready", "True", 90)
    assert [o["uid"] for o in monitor["metadata"]["ownerReferences"]] == [obj["metadata"]["uid"]]
    endpoint, = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    selector = ",".join(f"{k}={v}" for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=selector).items
    assert [p.metadata.name for p in pods] == [
        p.metadata.name for p in client.CoreV1Api(kube).list_namespaced_pod(
            namespace, label_selector=obj["status"]["selector"]).items]
    assert len(pods) == 1
    assert "http" in [port.name for port in pods[0].spec.containers[0].ports]
    since = wait_quiet(namespace)
    client.CoreV1Api(kube).patch_namespaced_service(
        "scraped", namespace, {"metadata": {"annotations": {"example.com/touched": "1"}}})
    time.sleep(5)
    mine = [w for w in operator_writes(since) if w[2].startswith("scraped")]
    assert mine == [], mine


def test_a_cache_claim_deleted_by_hand_is_filled_again(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """The claim comes back empty, so the completed download Job, which filled the old one,
    is replaced by a new one that fills it."""
    create(dsd_api, namespace, small_model("refill", storage={"accessMode": "ReadWriteMany"}))
    wait_condition(dsd_api, namespace, "refill", "Ready", "True", 90)
    core, batch = client.CoreV1Api(kube), client.BatchV1Api(kube)
    selector = "deepseek-operator.io/deployment=refill"
    old_job, = batch.list_namespaced_job(namespace, label_selector=selector).items
    time.sleep(1.1)  # creation times have a resolution of one second
    core.delete_namespaced_persistent_volume_claim("refill-model-cache", namespace)
    # The (simulated) serving pod still mounts it: drop the protection finalizer, as the
    # kube-controller-manager does once no pod uses the claim.
    core.patch_namespaced_persistent_volume_claim(
        "refill-model-cache", namespace, {"metadata": {"finalizers": None}})

    def new_complete_job() -> client.V1Job | None:
        jobs = batch.list_namespaced_job(namespace, label_selector=selector).items
        return next((j for j in jobs if j.metadata.uid != old_job.metadata.uid
                     and (j.status.succeeded or 0) >= 1), None)

    job = wait_for("a new download Job, complete", new_complete_job, 90)
    claim = core.read_namespaced_persistent_volume_claim("refill-model-cache", namespace)
    assert claim.metadata.creation_timestamp > old_job.metadata.creation_timestamp
    assert job.metadata.creation_timestamp >= claim.metadata.creation_timestamp
    obj = wait_condition(dsd_api, namespace, "refill", "Ready", "True", 60)
    assert condition(obj, "ModelCached")["status"] == "True"


def test_an_image_that_cannot_be_pulled_is_the_ready_reason_until_fixed(
        dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """The kubelet's waiting reason reaches Ready (test stage: kwok-e2e-stages.yaml), and a
    corrected image clears it. The hf:// download runs in the engine image, so its Job is
    the first to be stuck, and ModelCached says so too."""
    create(dsd_api, namespace, small_model(
        "badimage", engine={"image": "registry.invalid/e2e/unpullable:v0"}))
    obj = wait_for("Ready=False with reason ImagePullBackOff", lambda: (
        lambda o: o if condition(o, "Ready").get("reason") == "ImagePullBackOff" else None)(
            get(dsd_api, namespace, "badimage")), 90)
    message = condition(obj, "Ready")["message"]
    assert "container download: ImagePullBackOff" in message, message
    assert "registry.invalid/e2e/unpullable:v0" in message, message
    assert condition(obj, "ModelCached")["reason"] == "ImagePullBackOff"
    assert condition(obj, "Stalled")["status"] == "False"  # the kubelet keeps retrying
    dsd_api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "badimage", {
        "spec": {"engine": {"image": "vllm/vllm-openai:v0.0.0-e2e"}}})
    wait_condition(dsd_api, namespace, "badimage", "Ready", "True", 90)


def test_a_serving_pod_that_cannot_pull_its_image_is_the_ready_reason(
        dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """With s3:// weights the download runs in its own image and completes; the serving
    pod's container is the stuck one."""
    body = small_model("badserve", engine={"image": "registry.invalid/e2e/unpullable:v0"})
    body["spec"]["model"]["uri"] = "s3://e2e-weights/qwen"
    create(dsd_api, namespace, body)
    obj = wait_for("Ready=False with reason ImagePullBackOff", lambda: (
        lambda o: o if condition(o, "Ready").get("reason") == "ImagePullBackOff" else None)(
            get(dsd_api, namespace, "badserve")), 90)
    assert condition(obj, "ModelCached")["status"] == "True"
    message = condition(obj, "Ready")["message"]
    assert message.startswith("0/1 replicas ready; pod badserve-"), message
    assert "container engine: ImagePullBackOff" in message, message


def test_a_smaller_cache_size_keeps_the_claim_as_it_is(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """Kubernetes refuses to shrink a claim; the operator keeps the live request instead of
    failing to apply (a change to a smaller model does the same)."""
    create(dsd_api, namespace, small_model("shrink", storage={"size": "20Gi"}))
    wait_condition(dsd_api, namespace, "shrink", "Ready", "True", 90)
    dsd_api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "shrink", {
        "spec": {"storage": {"size": "10Gi"}}})
    obj = wait_condition(dsd_api, namespace, "shrink", "Ready", "True", 60)
    assert condition(obj, "Stalled")["status"] == "False"
    claim = client.CoreV1Api(kube).read_namespaced_persistent_volume_claim(
        "shrink-model-cache", namespace)
    assert claim.spec.resources.requests["storage"] == "20Gi"


def test_an_existing_claim_too_small_for_the_weights_is_named(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    client.CoreV1Api(kube).create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "tiny"},
        "spec": {"accessModes": ["ReadWriteMany"],
                 "resources": {"requests": {"storage": "1Gi"}}}})
    core = client.CoreV1Api(kube)
    wait_for("the claim Bound", lambda: core.read_namespaced_persistent_volume_claim(
        "tiny", namespace).status.phase == "Bound", 30)
    create(dsd_api, namespace, small_model("tiny-cache", storage={"existingClaim": "tiny"}))
    obj = wait_for("StorageReady=False ClaimTooSmall", lambda: (
        lambda o: o if condition(o, "StorageReady").get("reason") == "ClaimTooSmall" else None)(
            get(dsd_api, namespace, "tiny-cache")), 60)
    message = condition(obj, "StorageReady")["message"]
    assert message.startswith("PersistentVolumeClaim tiny holds 1Gi, less than the "), message
    assert condition(obj, "Ready")["status"] == "False"
    # The download would fill the volume: it waits for a claim that fits.
    assert condition(obj, "ModelCached")["message"].startswith(
        "the download waits for the model cache claim: PersistentVolumeClaim tiny holds 1Gi")
    assert client.BatchV1Api(kube).list_namespaced_job(
        namespace, label_selector="deepseek-operator.io/deployment=tiny-cache").items == []


def test_an_existing_claim_created_later_is_taken_up_from_its_watch_event(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """The claim an existingClaim names is not a child, yet its events reconcile the
    deployment: created after the deployment, it is seen at once (no timer runs while a
    claim is missing; the safety resync comes after ten minutes), and so is its deletion
    by its owner."""
    create(dsd_api, namespace, small_model("late", storage={"existingClaim": "late-cache"}))
    obj = wait_for("StorageReady=False ClaimNotFound", lambda: (
        lambda o: o if condition(o, "StorageReady").get("reason") == "ClaimNotFound" else None)(
            get(dsd_api, namespace, "late")), 60)
    assert condition(obj, "StorageReady")["message"].startswith(
        'PersistentVolumeClaim "late-cache" does not exist: create it, or fix '
        "spec.storage.existingClaim")
    core = client.CoreV1Api(kube)
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "late-cache"},
        "spec": {"accessModes": ["ReadWriteMany"],
                 "resources": {"requests": {"storage": "1Gi"}}}})
    obj = wait_for("StorageReady=False ClaimTooSmall", lambda: (
        lambda o: o if condition(o, "StorageReady").get("reason") == "ClaimTooSmall" else None)(
            get(dsd_api, namespace, "late")), 60)
    assert "PersistentVolumeClaim late-cache holds 1Gi" in condition(obj, "StorageReady")[
        "message"]
    # Deleted by its owner: gone at once, or held while pods mount it (the download may
    # have started before the claim bound: README, known limitations).
    core.delete_namespaced_persistent_volume_claim("late-cache", namespace)
    gone = wait_for("StorageReady=False ClaimNotFound or ClaimTerminating", lambda: (
        lambda o: o if condition(o, "StorageReady").get("reason") in (
            "ClaimNotFound", "ClaimTerminating") else None)(
            get(dsd_api, namespace, "late")), 60)
    storage = condition(gone, "StorageReady")
    if storage["reason"] == "ClaimTerminating":
        assert "the operator does not own it (spec.storage.existingClaim" in storage[
            "message"], storage
        assert "creates it again" not in storage["message"]


def test_deleting_the_object_in_the_way_resolves_a_name_conflict_at_once(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """The way out a NameConflict names (delete the object) is taken up from that
    deletion's watch event, not at the safety resync ten minutes later."""
    core = client.CoreV1Api(kube)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "freed-runtime"}})
    create(dsd_api, namespace, small_model("freed"))
    wait_for("Stalled=True NameConflict", lambda: (
        lambda o: o if condition(o, "Stalled").get("reason") == "NameConflict" else None)(
            get(dsd_api, namespace, "freed")), 60)
    core.delete_namespaced_config_map("freed-runtime", namespace)
    wait_condition(dsd_api, namespace, "freed", "Ready", "True", timeout=90)


def test_objects_of_the_same_name_that_are_not_ours_are_left_alone(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """A ConfigMap someone else made under a child's name is neither changed nor adopted,
    so deleting the DeepSeekDeployment cannot delete it."""
    core = client.CoreV1Api(kube)
    core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "clash-runtime"}, "data": {"important": "data"}})
    create(dsd_api, namespace, small_model("clash"))
    obj = wait_for("Stalled=True NameConflict", lambda: (
        lambda o: o if condition(o, "Stalled").get("reason") == "NameConflict" else None)(
            get(dsd_api, namespace, "clash")), 60)
    message = condition(obj, "Stalled")["message"]
    assert message.startswith(f"ConfigMap {namespace}/clash-runtime exists and is not owned "
                              "by this DeepSeekDeployment"), message
    theirs = core.read_namespaced_config_map("clash-runtime", namespace)
    assert theirs.data == {"important": "data"} and not theirs.metadata.owner_references
    assert not _exists(lambda: deployment(kube, namespace, "clash"))
    dsd_api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "clash")
    wait_for("the DeepSeekDeployment gone", lambda: not _exists(
        lambda: get(dsd_api, namespace, "clash")), 60)
    assert core.read_namespaced_config_map("clash-runtime", namespace).data == {
        "important": "data"}
