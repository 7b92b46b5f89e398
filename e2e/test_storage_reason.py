"""A model cache claim the StorageClass cannot provision: StorageReady carries the
provisioner's own reason (its ProvisioningFailed Event) and the way out, and following it
(accessMode ReadWriteOnce) recovers with nothing lost. On the real control plane, with the
e2e hostPath provisioner refusing ReadWriteMany for a class, as the block-storage CSI
drivers of cloud providers (EBS, PD, Azure Disk) do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from e2e.cluster.provisioner import PROVISIONER_NAME, SUPPORTED_ACCESS_MODES
from e2e.kube import wait_for
from e2e.test_controller import condition, create, get, small_model, wait_condition


@pytest.fixture
def rwo_only_class(kube: client.ApiClient, namespace: str) -> Iterator[str]:
    """A StorageClass (named after the test's namespace) whose provisioner provisions
    ReadWriteOnce and ReadWriteOncePod only; deleted afterwards."""
    name = f"rwo-only-{namespace}"[:63]
    storage = client.StorageV1Api(kube)
    storage.create_storage_class({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name}, "provisioner": PROVISIONER_NAME,
        "parameters": {SUPPORTED_ACCESS_MODES: "ReadWriteOnce,ReadWriteOncePod"},
        "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"})
    yield name
    storage.delete_storage_class(name)


def _patch(api: client.CustomObjectsApi, namespace: str, name: str,
           spec: dict[str, Any]) -> None:
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})


def _uids(kube: client.ApiClient, namespace: str, name: str) -> dict[str, str | None]:
    core = client.CoreV1Api(kube)
    return {"service": core.read_namespaced_service(name, namespace).metadata.uid,
            "rbac": core.read_namespaced_config_map(f"{name}-rbac", namespace).metadata.uid}


def test_a_refused_rwx_claim_says_why_and_readwriteonce_recovers(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        rwo_only_class: str) -> None:
    create(dsd_api, namespace, small_model("rwx", storage={"storageClassName": rwo_only_class}))
    core = client.CoreV1Api(kube)

    def refused() -> dict[str, Any] | None:
        obj = get(dsd_api, namespace, "rwx")
        storage = condition(obj, "StorageReady")
        return obj if "ProvisioningFailed" in storage.get("message", "") else None

    obj = wait_for("StorageReady naming ProvisioningFailed", refused, 90)
    storage = condition(obj, "StorageReady")
    assert (storage["status"], storage["reason"]) == ("False", "ClaimPending")
    message = storage["message"]
    # The provisioner's own words, from its Event on the claim.
    assert "PersistentVolumeClaim rwx-model-cache is Pending: ProvisioningFailed: failed to " \
           f'provision volume with StorageClass "{rwo_only_class}"' in message
    assert "access mode ReadWriteMany not supported" in message
    # The way out.
    assert f'StorageClass "{rwo_only_class}" may not support ReadWriteMany' in message
    assert "set spec.storage.accessMode ReadWriteOnce with replicas 1" in message
    assert "\n" not in message
    claim = core.read_namespaced_persistent_volume_claim("rwx-model-cache", namespace)
    assert claim.status.phase == "Pending" and claim.spec.access_modes == ["ReadWriteMany"]
    # The Event came through the events API, about this claim, from the provisioner.
    events = core.list_namespaced_event(
        namespace, field_selector="involvedObject.kind=PersistentVolumeClaim,"
        f"involvedObject.uid={claim.metadata.uid},reason=ProvisioningFailed").items
    assert [(e.type, e.source.component) for e in events] == [("Warning", PROVISIONER_NAME)]
    assert obj["status"]["phase"] == "Pending"
    assert condition(obj, "ModelCached")["reason"] == "WaitingForStorage"
    assert condition(obj, "Stalled")["status"] == "False"
    before = _uids(kube, namespace, "rwx")

    _patch(dsd_api, namespace, "rwx", {"storage": {"accessMode": "ReadWriteOnce"}})
    ready = wait_condition(dsd_api, namespace, "rwx", "Ready", "True", timeout=120)
    assert condition(ready, "StorageReady") == {**condition(ready, "StorageReady"),
                                                "status": "True", "reason": "ClaimBound"}
    bound = core.read_namespaced_persistent_volume_claim("rwx-model-cache", namespace)
    assert bound.metadata.uid != claim.metadata.uid, "the empty claim was replaced"
    assert bound.spec.access_modes == ["ReadWriteOnce"]
    assert bound.spec.storage_class_name == rwo_only_class
    assert bound.status.phase == "Bound"
    # Nothing else was touched: the same children, and the DeepSeekDeployment serves.
    assert _uids(kube, namespace, "rwx") == before
    assert ready["metadata"]["uid"] == obj["metadata"]["uid"]
    assert client.AppsV1Api(kube).read_namespaced_deployment(
        "rwx", namespace).status.ready_replicas == 1
