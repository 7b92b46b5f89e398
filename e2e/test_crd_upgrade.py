"""CRD lifecycle on the local control plane: `helm upgrade` from the previous release leaves
the old CRD (Helm never upgrades crds/), the upgraded operator applies its own
(`--manage-crd`, the chart's default) and a field the old CRD lacked is then kept; an
operator that may not apply it reports the stale schema by event, log and metric.

Each test stops the session's operator, runs its own, and restores the current CRD and the
session's operator afterwards."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from deepseek_operator.api.crd import build_crd
from deepseek_operator.controller.crd_sync import CRD_NAME, schema_drift
from e2e.cluster import build, controlplane
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess, install_manifests
from e2e.test_controller import create, get, small_model

REPO = Path(__file__).resolve().parent.parent
CRD_FILE = "crds/deepseek-operator.io_deepseekdeployments.yaml"
PREVIOUS_RELEASE = "bb024ec39c364c957fb49a7bf4e51bf14ac6a7be"
"""The last commit that landed before the CRD was managed: its chart has no crds.manage and
its CRD lacks spec.engine.apiKeySecret."""
NEW_FIELD = {"engine": {"apiKeySecret": {"name": "engine-key", "key": "api-key"}}}
"""A spec field the previous release's CRD lacks (so its apiserver prunes it)."""


def _kubectl(kubectl: Path, kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, check=True).stdout


def _helm(kubeconfig: Path, *args: str) -> str:
    result = subprocess.run([str(build.build_all()["helm"]), "--kubeconfig", str(kubeconfig),
                             *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _served_crd(kube: client.ApiClient) -> dict[str, Any]:
    response = client.ApiextensionsV1Api(kube).read_custom_resource_definition(
        CRD_NAME, _preload_content=False)
    crd: dict[str, Any] = json.loads(response.data)  # type: ignore[attr-defined]
    return crd


def _metric(operator: OperatorProcess, name: str) -> float | None:
    for line in operator.metrics().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def _serve_crd(kubectl: Path, kubeconfig: Path, crd: dict[str, Any]) -> None:
    """Make the apiserver serve `crd` (an older or edited copy), as a plain apply by hand
    or an old `helm install` would have left it."""
    _kubectl(kubectl, kubeconfig, "apply", "--server-side", "--force-conflicts",
             "--field-manager=old-install", "-f", "-", stdin=yaml.safe_dump(crd))
    _kubectl(kubectl, kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
             f"crd/{CRD_NAME}")


@pytest.fixture
def own_operator(operator: OperatorProcess, kubectl: Path,
                 kubeconfig: Path) -> Iterator[list[OperatorProcess]]:
    """Room for a test's own operator: the session's is stopped, and afterwards the
    test's operators are stopped, the current CRD applied again and the session's
    operator restarted."""
    operator.stop()
    started: list[OperatorProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()
        install_manifests(kubectl, kubeconfig)
        operator.start()


def _start(started: list[OperatorProcess], log: Path, *args: str) -> OperatorProcess:
    proc = OperatorProcess(controlplane.kubeconfig_path("operator"), log, list(args))
    started.append(proc)
    proc.start()
    return proc


def test_helm_upgrade_from_the_previous_release_serves_the_new_fields(
        kube: client.ApiClient, kubectl: Path, kubeconfig: Path, namespace: str,
        dsd_api: client.CustomObjectsApi, own_operator: list[OperatorProcess],
        tmp_path: Path) -> None:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar",
                              PREVIOUS_RELEASE, "charts/deepseek-operator"],
                             capture_output=True, check=False)
    assert archive.returncode == 0, (
        f"the previous release's chart is read from git history ({PREVIOUS_RELEASE[:7]}); "
        f"a full clone is needed: {archive.stderr.decode()[:300]}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp_path, filter="data")
    old_chart = tmp_path / "charts/deepseek-operator"
    old_crd = yaml.safe_load((old_chart / CRD_FILE).read_text())
    assert "apiKeySecret" not in json.dumps(old_crd), "the field must be new since then"
    release, release_ns = "dso-upgrade", f"{namespace}-release"

    # The previous release, as `helm install` left it on a cluster: its CRD, its chart.
    _serve_crd(kubectl, kubeconfig, old_crd)
    _helm(kubeconfig, "install", release, str(old_chart), "--namespace", release_ns,
          "--create-namespace", "--wait=false")
    try:
        create(dsd_api, namespace, small_model("upgraded"))
        dsd_api.patch_namespaced_custom_object("deepseek-operator.io", "v1alpha1", namespace,
                                               "deepseekdeployments", "upgraded",
                                               {"spec": NEW_FIELD})
        assert "apiKeySecret" not in get(dsd_api, namespace, "upgraded")["spec"]["engine"], (
            "the old CRD prunes the field")

        _helm(kubeconfig, "upgrade", release, str(REPO / "charts/deepseek-operator"),
              "--namespace", release_ns, "--wait=false")
        # Helm left the CRD as it was: the served schema still lacks the field.
        assert any("spec.engine.apiKeySecret" in d
                   for d in schema_drift(_served_crd(kube), build_crd()))
        values = yaml.safe_load(_helm(kubeconfig, "get", "values", release, "--namespace",
                                      release_ns, "--all", "-o", "yaml"))
        assert values["crds"]["manage"] is True, "the upgraded chart runs --manage-crd"

        # The upgraded operator (as the chart runs it) applies its CRD at start.
        upgraded = _start(own_operator, tmp_path / "upgraded.log", "--manage-crd")
        wait_for("the served CRD to be the built one",
                 lambda: schema_drift(_served_crd(kube), build_crd()) == [], timeout=60)
        wait_for("crd_schema_current 1",
                 lambda: _metric(upgraded, "deepseek_operator_crd_schema_current") == 1.0)
        dsd_api.patch_namespaced_custom_object("deepseek-operator.io", "v1alpha1", namespace,
                                               "deepseekdeployments", "upgraded",
                                               {"spec": NEW_FIELD})
        kept = get(dsd_api, namespace, "upgraded")["spec"]["engine"]
        assert kept["apiKeySecret"] == NEW_FIELD["engine"]["apiKeySecret"]
    finally:
        _helm(kubeconfig, "uninstall", release, "--namespace", release_ns,
              "--ignore-not-found")
        client.CoreV1Api(kube).delete_namespace(release_ns)


def test_a_stale_crd_is_reported_by_event_log_and_metric(
        kube: client.ApiClient, kubectl: Path, kubeconfig: Path,
        own_operator: list[OperatorProcess], tmp_path: Path) -> None:
    stale = build_crd()
    spec = stale["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    engine = spec["properties"]["engine"]
    del engine["properties"]["args"]
    # A default or rule may not name an unknown field: drop those that name args.
    del engine["default"]["args"]
    engine["x-kubernetes-validations"] = [
        rule for rule in engine.get("x-kubernetes-validations", [])
        if "args" not in rule["rule"] and "args" not in rule.get("fieldPath", "")]
    _serve_crd(kubectl, kubeconfig, stale)

    reporting = _start(own_operator, tmp_path / "stale.log")  # no --manage-crd
    wait_for("crd_schema_current 0",
             lambda: _metric(reporting, "deepseek_operator_crd_schema_current") == 0.0)
    assert "spec.engine.args" in json.dumps(schema_drift(_served_crd(kube), build_crd()))

    def warning() -> Any:
        events = client.CoreV1Api(kube).list_event_for_all_namespaces(
            field_selector=f"involvedObject.name={CRD_NAME},reason=CRDSchemaOutdated").items
        return events[0] if events else None

    event = wait_for("the CRDSchemaOutdated event", warning, timeout=30)
    assert event.type == "Warning"
    assert "lacks 1 field(s)" in event.message and "spec.engine.args" in event.message
    assert "--manage-crd" in event.message
    assert "is not the one this operator was built with" in reporting.log_tail(2_000_000)
    # The CRD it was built with, applied again, is seen at once (its watch event).
    install_manifests(kubectl, kubeconfig)
    wait_for("crd_schema_current 1",
             lambda: _metric(reporting, "deepseek_operator_crd_schema_current") == 1.0)
