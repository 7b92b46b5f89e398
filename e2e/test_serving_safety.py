"""Changes the cluster cannot serve never take a working model down; storage advice that
can be followed; one event per real transition (the real control plane; the tests of a
kind the cluster does not serve remove the LeaderWorkerSet API for their duration)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.controller.cache import ChildCache
from deepseek_operator.controller.cluster import Cluster
from deepseek_operator.controller.plan import ObjectKey, calculate_plan
from e2e.cluster import lws
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess
from e2e.test_controller import (
    condition,
    create,
    get,
    run_kubectl,
    small_model,
    wait_condition,
)

# Distill-Llama-70B in fp8 on A100 40GB: one 4-GPU pod at 8192 tokens x 4 sequences; at
# 131072 x 16 the KV cache needs two nodes (a LeaderWorkerSet).
L70: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "DeepSeekDeployment",
    "metadata": {"name": "l70"},
    "spec": {"model": {"name": "deepseek-r1-distill-llama-70b", "quantization": "fp8",
                       "maxModelLen": 8192},
             "gpu": {"type": "A100-40GB", "maxConcurrentSequences": 4},
             "autoscaling": {"mode": "none"}},
}


@pytest.fixture
def without_leaderworkerset(kubectl: Path, operator: OperatorProcess) -> Iterator[None]:
    """A cluster that does not serve LeaderWorkerSet (the local control plane runs its
    controller): the CRD is deleted for the test and applied again afterwards, each while
    the operator is stopped (kopf ends the operator when the watch of a kind whose CRD was
    just deleted answers 404 before kopf drops that watch: README, Known limitations)."""
    operator.stop()
    try:
        lws.remove_api(kubectl)
    finally:
        operator.start()
    try:
        yield
    finally:
        operator.stop()
        try:
            lws.restore_api(kubectl)
        finally:
            operator.start()


def _patch(api: client.CustomObjectsApi, namespace: str, name: str,
           spec: dict[str, Any]) -> None:
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})


def _events(kube: client.ApiClient, namespace: str, name: str) -> list[client.CoreV1Event]:
    events = client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items
    return [e for e in events if e.involved_object.kind == "DeepSeekDeployment"]


@pytest.mark.usefixtures("without_leaderworkerset")
def test_a_change_the_cluster_cannot_serve_keeps_the_model_serving(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        kubectl: Path, kubeconfig: Path) -> None:
    create(dsd_api, namespace, copy.deepcopy(L70))
    wait_condition(dsd_api, namespace, "l70", "Ready", "True", timeout=120)
    apps = client.AppsV1Api(kube)
    before = apps.read_namespaced_deployment("l70", namespace)

    _patch(dsd_api, namespace, "l70", {"model": {"maxModelLen": 131072},
                                       "gpu": {"maxConcurrentSequences": 16}})
    obj = wait_condition(dsd_api, namespace, "l70", "Stalled", "True")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "APINotInstalled"
    assert "LeaderWorkerSet" in stalled["message"]
    assert "lower spec.model.maxModelLen x spec.gpu.maxConcurrentSequences" in stalled[
        "message"]
    assert obj["status"]["phase"] == "Degraded", "the last good Deployment still serves"
    assert "Degraded" in run_kubectl(kubectl, kubeconfig, "get", "dsd", "l70", "-n", namespace)
    after = apps.read_namespaced_deployment("l70", namespace)
    assert after.metadata.uid == before.metadata.uid
    assert after.metadata.generation == before.metadata.generation, "not even changed"
    assert after.status.ready_replicas == 1
    assert not any("deleted Deployment" in (e.message or "")
                   for e in _events(kube, namespace, "l70"))

    _patch(dsd_api, namespace, "l70", {"model": {"maxModelLen": 8192},
                                       "gpu": {"maxConcurrentSequences": 4}})
    back = wait_condition(dsd_api, namespace, "l70", "Ready", "True")
    assert condition(back, "Stalled")["status"] == "False"
    assert apps.read_namespaced_deployment("l70", namespace).metadata.uid == before.metadata.uid


def test_following_the_storage_class_advice_fixes_the_claim(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, small_model("sc", storage={"storageClassName": "fast-ssd"}))
    obj = wait_condition(dsd_api, namespace, "sc", "StorageReady", "False")
    storage = condition(obj, "StorageReady")
    assert storage["reason"] == "StorageClassNotFound"
    assert "set spec.storage.storageClassName to an existing class" in storage["message"]

    _patch(dsd_api, namespace, "sc", {"storage": {"storageClassName": "standard"}})
    wait_condition(dsd_api, namespace, "sc", "Ready", "True", timeout=90)
    claim = client.CoreV1Api(kube).read_namespaced_persistent_volume_claim(
        "sc-model-cache", namespace)
    assert claim.spec.storage_class_name == "standard"
    assert not [e for e in _events(kube, namespace, "sc") if e.reason == "ApplyFailed"]


def test_a_bound_claim_that_cannot_change_says_the_way_out(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, small_model("bound"))
    wait_condition(dsd_api, namespace, "bound", "Ready", "True", timeout=90)
    _patch(dsd_api, namespace, "bound", {"storage": {"storageClassName": "fast-ssd",
                                                     "accessMode": "ReadWriteOnce"}})
    obj = wait_condition(dsd_api, namespace, "bound", "Stalled", "True")
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "ClaimImmutable"
    assert "storageClassName (standard -> fast-ssd)" in stalled["message"]
    assert "accessModes (ReadWriteMany -> ReadWriteOnce)" in stalled["message"]
    assert "set spec.storage back, or delete the claim" in stalled["message"]
    assert "{" not in stalled["message"], "no raw Go struct diff"
    assert obj["status"]["phase"] == "Degraded"
    assert client.AppsV1Api(kube).read_namespaced_deployment(
        "bound", namespace).status.ready_replicas == 1


def test_normal_start_up_posts_one_event_per_transition_and_no_warning(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, small_model("quiet"))
    wait_condition(dsd_api, namespace, "quiet", "Ready", "True", timeout=90)
    events = _events(kube, namespace, "quiet")
    assert [e for e in events if e.type == "Warning"] == []
    messages = [e.message or "" for e in events]
    assert len(messages) == len(set(messages)), "the same message twice"
    assert sum(e.count or 1 for e in events) <= 8, [(e.reason, e.message) for e in events]


def test_a_job_whose_template_changed_is_recreated(kube: client.ApiClient,
                                                   namespace: str) -> None:
    cluster = Cluster(kube, ChildCache())
    job: dict[str, Any] = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "recreated", "namespace": namespace},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1", "command": ["true"]}]}}},
    }
    assert cluster.execute(calculate_plan([job], {})) == [f"created Job {namespace}/recreated"]
    first = cluster.read(ObjectKey.of(job))
    assert first is not None
    changed = copy.deepcopy(job)
    changed["spec"]["template"]["spec"]["containers"][0]["command"] = ["false"]
    observed = {ObjectKey.of(job): first}
    plan = calculate_plan([changed], observed)
    assert cluster.execute(plan) == [
        f"recreated Job {namespace}/recreated (immutable fields changed)"]

    def replaced() -> dict[str, Any] | None:
        live = cluster.read(ObjectKey.of(job))
        return live if live and live["metadata"]["uid"] != first["metadata"]["uid"] else None

    live = wait_for("the new Job", replaced, 30)
    assert live["spec"]["template"]["spec"]["containers"][0]["command"] == ["false"]


def test_any_unicode_in_a_value_reaches_the_children(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """A character outside the Basic Multilingual Plane (the client would send it as a
    JSON surrogate pair, which the apiserver's apply decoder refuses)."""
    create(dsd_api, namespace, small_model("emoji", engine={"env": [
        {"name": "GREETING", "value": "hello \U0001f600 \u4f60\u597d"}]}))
    wait_condition(dsd_api, namespace, "emoji", "Ready", "True", timeout=90)
    env = client.AppsV1Api(kube).read_namespaced_deployment(
        "emoji", namespace).spec.template.spec.containers[0].env
    assert "hello \U0001f600 \u4f60\u597d" in [e.value for e in env]


def test_free_form_values_kubernetes_refuses_stall_naming_the_spec_field(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """An unknown key in spec.scheduling.affinity (server-side apply answers 500 for it)
    and a fraction where Kubernetes wants an integer: Stalled, naming the spec's field,
    instead of retries forever."""
    create(dsd_api, namespace, small_model("typo", scheduling={"affinity": {
        "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecutionn": []}}}))
    typo = condition(wait_condition(dsd_api, namespace, "typo", "Stalled", "True"), "Stalled")
    assert typo["reason"] == "ApplyFailed"
    assert "comes from spec.scheduling.affinity" in typo["message"]
    # The claim and the download, applied before the refused Deployment, say how they are.
    details = wait_for("StorageReady and ModelCached True under the stall", lambda: (
        lambda o: o if condition(o, "ModelCached").get("status") == "True"
        and condition(o, "StorageReady").get("status") == "True" else None)(
            get(dsd_api, namespace, "typo")), 90)
    assert condition(details, "Stalled")["reason"] == "ApplyFailed"
    create(dsd_api, namespace, small_model("fraction", scheduling={"affinity": {
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1.5, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}}}))
    fraction = condition(wait_condition(dsd_api, namespace, "fraction", "Stalled", "True"),
                         "Stalled")
    assert fraction["reason"] == "InvalidSpec"
    assert ("spec.scheduling.affinity.podAntiAffinity."
            "preferredDuringSchedulingIgnoredDuringExecution[0].weight") in fraction["message"]


def test_typed_env_sources_and_tolerations_are_checked_by_the_apiserver(
        dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    for spec, field in (
            ({"engine": {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s",
                                                                              "key": "k"},
                                                             "A": {}}}]}},
             "spec.engine.env[0].valueFrom"),
            ({"scheduling": {"tolerations": [{"key": "k", "value": 1.5}]}},
             "spec.scheduling.tolerations[0].value")):
        try:  # strict field validation, as kubectl apply does by default
            dsd_api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, small_model("refused", **spec),
                field_validation="Strict")
        except ApiException as exc:
            assert exc.status in (400, 422) and field in (exc.body or ""), exc.body
        else:
            raise AssertionError(f"{spec} was accepted")


def _unschedulable_on_the_edit(dsd_api: client.CustomObjectsApi, namespace: str,
                               name: str) -> dict[str, Any] | None:
    """The DeepSeekDeployment once its status is of its current generation and says
    Scheduled=False; None before."""
    obj = get(dsd_api, namespace, name)
    current = obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
    return obj if current and condition(obj, "Scheduled").get("status") == "False" else None


def test_a_gpu_type_the_cluster_lacks_leaves_the_old_pods_serving(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """Make before break: the new pod cannot be placed (no B200 node), so the rollout
    waits and the old pod keeps serving; reverting the change finishes it."""
    create(dsd_api, namespace, small_model("gpu"))
    wait_condition(dsd_api, namespace, "gpu", "Ready", "True", timeout=90)
    _patch(dsd_api, namespace, "gpu", {"gpu": {"type": "B200-180GB"}})

    obj = wait_for("the new pod Unschedulable",
                   lambda: _unschedulable_on_the_edit(dsd_api, namespace, "gpu"), 60)
    assert "nvidia.com/gpu.product=NVIDIA-B200" in condition(obj, "Scheduled")["message"]
    assert obj["status"]["phase"] == "Degraded", "the old pod serves"
    assert obj["status"]["readyReplicas"] == 1
    apps = client.AppsV1Api(kube)
    assert apps.read_namespaced_deployment("gpu", namespace).status.ready_replicas == 1
    _patch(dsd_api, namespace, "gpu", {"gpu": {"type": "A100-40GB"}})
    wait_condition(dsd_api, namespace, "gpu", "Ready", "True", timeout=90)


def test_a_switch_to_a_leaderworkerset_counts_the_deployment_that_still_serves(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    """A longer context needs two nodes: the LeaderWorkerSet replaces the Deployment, make
    before break. While its pods cannot be placed (a node label no node has), status
    counts the Deployment that still serves (Degraded, 1 ready, said in Ready's message),
    not the new kind's 0 (Pending); reverting the change finishes it."""
    create(dsd_api, namespace, copy.deepcopy(L70))
    wait_condition(dsd_api, namespace, "l70", "Ready", "True", timeout=120)
    _patch(dsd_api, namespace, "l70", {"model": {"maxModelLen": 131072},
                                       "gpu": {"maxConcurrentSequences": 16},
                                       "scheduling": {"nodeSelector": {"pool": "none"}}})

    obj = wait_for("the LeaderWorkerSet's pods Unschedulable",
                   lambda: _unschedulable_on_the_edit(dsd_api, namespace, "l70"), 90)
    assert obj["status"]["readyReplicas"] == 1
    assert obj["status"]["phase"] == "Degraded", "the Deployment still serves"
    ready = condition(obj, "Ready")
    assert ready["status"] == "False"
    assert ready["message"].endswith(
        "; Deployment l70 keeps serving 1 ready replica until the LeaderWorkerSet has all "
        "its replicas ready"), ready["message"]
    assert client.AppsV1Api(kube).read_namespaced_deployment(
        "l70", namespace).status.ready_replicas == 1
    _patch(dsd_api, namespace, "l70", {"model": {"maxModelLen": 8192},
                                       "gpu": {"maxConcurrentSequences": 4},
                                       "scheduling": {"nodeSelector": None}})
    wait_condition(dsd_api, namespace, "l70", "Ready", "True", timeout=90)
