"""The operator process: peering (two replicas, one active), JSON logs, its own metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster import controlplane
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess
from e2e.test_controller import create, get, small_model, wait_condition

PEERING = "e2e-peering"


@pytest.fixture
def peered_pair(kube: client.ApiClient, operator: OperatorProcess,
                tmp_path: Path) -> Iterator[tuple[OperatorProcess, OperatorProcess]]:
    """Two operators in one kopf peering (the older one started first), instead of the
    session's standalone operator, which is restarted afterwards."""
    custom = client.CustomObjectsApi(kube)
    custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", {
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
        "metadata": {"name": PEERING}})
    operator.stop()
    kubeconfig = controlplane.kubeconfig_path("operator")
    older = OperatorProcess(kubeconfig, tmp_path / "older.log",
                            ["--peering", PEERING, "--log-format", "json"])
    newer = OperatorProcess(kubeconfig, tmp_path / "newer.log", ["--peering", PEERING])
    try:
        older.start()
        time.sleep(1.5)  # distinct start times give distinct peering priorities
        newer.start()
        yield older, newer
    finally:
        older.stop()
        newer.stop()
        custom.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)
        operator.start()


def test_two_peered_replicas_have_one_active(
        peered_pair: tuple[OperatorProcess, OperatorProcess],
        dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    older, newer = peered_pair
    wait_for("the older replica to pause in favour of the newer one",
             lambda: "Pausing operations in favour of" in older.log_tail(200_000), 30)
    create(dsd_api, namespace, small_model("peered"))
    wait_condition(dsd_api, namespace, "peered", "Ready", "True", 90)
    assert "peered" in newer.log_tail(500_000)  # the active replica reconciled it
    assert "peered" not in older.log_tail(500_000)  # the paused one never saw it
    # The older replica logs JSON, one object per line.
    lines = [ln for ln in older.log_path.read_text().splitlines() if ln.startswith("{")]
    assert lines and all(isinstance(json.loads(ln), dict) for ln in lines)


def test_operator_serves_its_own_metrics(operator: OperatorProcess,
                                         dsd_api: client.CustomObjectsApi,
                                         namespace: str) -> None:
    create(dsd_api, namespace, small_model("metered"))
    wait_condition(dsd_api, namespace, "metered", "Ready", "True", 90)
    text = operator.metrics()
    for name in ("deepseek_operator_reconciles_total", "deepseek_operator_child_writes_total",
                 "deepseek_operator_reconcile_duration_seconds_bucket",
                 "deepseek_operator_managed_deployments"):
        assert name in text, name
    changed = [ln for ln in text.splitlines()
               if ln.startswith('deepseek_operator_reconciles_total{result="changed"}')]
    assert changed and float(changed[0].split()[-1]) >= 1
    assert operator.live()


def test_operator_settings_from_the_environment_shape_what_it_creates(
        kube: client.ApiClient, operator: OperatorProcess, dsd_api: client.CustomObjectsApi,
        namespace: str, tmp_path: Path) -> None:
    """An operator started with DEEPSEEK_OPERATOR_* settings (as the chart's `settings`
    values and the kustomize overlay set them), instead of the session's, which is
    restarted afterwards: the mirror prefix, UID/GID, default StorageClass and cluster
    domain reach the children and the status."""
    from e2e.cluster.controlplane import STORAGE_CLASS

    operator.stop()
    configured = OperatorProcess(controlplane.kubeconfig_path("operator"),
                                 tmp_path / "configured.log", extra_env={
                                     "DEEPSEEK_OPERATOR_REGISTRY_PREFIX": "mirror.local:5000",
                                     "DEEPSEEK_OPERATOR_CLUSTER_DOMAIN": "corp.internal",
                                     "DEEPSEEK_OPERATOR_RUN_AS_USER": "2000",
                                     "DEEPSEEK_OPERATOR_RUN_AS_GROUP": "3000",
                                     "DEEPSEEK_OPERATOR_STORAGE_CLASS": STORAGE_CLASS})
    try:
        configured.start()
        create(dsd_api, namespace, small_model("configured"))
        wait_condition(dsd_api, namespace, "configured", "Ready", "True", 90)
        apps = client.AppsV1Api(kube)
        pod = apps.read_namespaced_deployment("configured", namespace).spec.template.spec
        assert pod.containers[0].image.startswith("mirror.local:5000/vllm/vllm-openai:")
        assert (pod.security_context.run_as_user, pod.security_context.run_as_group) == (
            2000, 3000)
        claims = client.CoreV1Api(kube).list_namespaced_persistent_volume_claim(namespace)
        (claim,) = [c for c in claims.items if c.metadata.name.startswith("configured")]
        assert claim.spec.storage_class_name == STORAGE_CLASS
        status = dsd_api.get_namespaced_custom_object(
            "deepseek-operator.io", "v1alpha1", namespace, "deepseekdeployments",
            "configured")["status"]
        assert status["endpoint"] == f"http://configured.{namespace}.svc.corp.internal:8000/v1"
    finally:
        configured.stop()
        operator.start()


def test_a_missing_default_storage_class_is_named_in_status(
        operator: OperatorProcess, dsd_api: client.CustomObjectsApi, namespace: str,
        tmp_path: Path) -> None:
    """The operator's --storage-class names a class the cluster lacks: the claim stays
    Pending and StorageReady says which class, and that it is the operator's default."""
    operator.stop()
    configured = OperatorProcess(controlplane.kubeconfig_path("operator"),
                                 tmp_path / "missing-class.log",
                                 extra_env={"DEEPSEEK_OPERATOR_STORAGE_CLASS": "no-such-class"})
    try:
        configured.start()
        create(dsd_api, namespace, small_model("classless"))
        cond = wait_for("StorageReady StorageClassNotFound", lambda: next(
            (c for c in (get(dsd_api, namespace, "classless").get("status") or {}).get(
                "conditions") or [] if c["type"] == "StorageReady"
             and c["reason"] == "StorageClassNotFound"), None), timeout=60)
        assert cond["status"] == "False"
        assert '"no-such-class" does not exist' in cond["message"]
        assert "operator's default, its --storage-class" in cond["message"]
    finally:
        configured.stop()
        operator.start()
