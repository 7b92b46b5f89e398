"""The Helm chart renders (also without --kube-version), refuses bad values naming them,
lints and installs on the control plane, also as the README says after the demo; the
kustomize base is its current `helm template` output."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.cluster import build, controlplane, paths
from e2e.operator_process import install_manifests

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "deepseek-operator"


def _helm(*args: str, kubeconfig: Path | None = None) -> str:
    cmd = [str(build.build_all()["helm"]), *args]
    if kubeconfig is not None:
        cmd += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _kube_version() -> str:
    return paths.versions()["kubernetes"]


def test_kustomize_base_is_the_current_helm_template() -> None:
    rendered = _helm("template", "deepseek-operator", str(CHART), "--namespace",
                     "deepseek-operator-system", "--kube-version", _kube_version(),
                     "--set", "managedBy=kustomize")
    committed = (REPO / "manifests/base/operator.yaml").read_text()
    assert committed.split("\n", 1)[1] == rendered, "run `make manifests`"
    # Helm does not manage what `kubectl apply -k` (or Argo CD, Flux) applies.
    labels = [d["metadata"]["labels"] for d in yaml.safe_load_all(committed) if d]
    assert labels and all(la["app.kubernetes.io/managed-by"] == "kustomize" for la in labels)


def test_chart_lints_and_refuses_replicas_without_peering() -> None:
    assert "0 chart(s) failed" in _helm("lint", str(CHART), "--kube-version", _kube_version())
    cmd = [str(build.build_all()["helm"]), "template", "x", str(CHART), "--kube-version",
           _kube_version(), "--set", "replicaCount=2"]
    refused = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "peering" in refused.stderr
    with_peering = _helm("template", "x", str(CHART), "--kube-version", _kube_version(),
                         "--set", "replicaCount=2", "--set", "peering.enabled=true")
    deployment = next(d for d in yaml.safe_load_all(with_peering) if d and d["kind"] ==
                      "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=deepseek-operator" in args


def test_chart_installs_on_the_control_plane(kubeconfig: Path) -> None:
    _helm("upgrade", "--install", "dso-e2e", str(CHART), "--namespace", "dso-chart-e2e",
          "--create-namespace", "--set", "watchNamespaces={dso-chart-e2e}", "--wait=false",
          kubeconfig=kubeconfig)
    try:
        status = _helm("status", "dso-e2e", "--namespace", "dso-chart-e2e", "-o", "yaml",
                       kubeconfig=kubeconfig)
        assert yaml.safe_load(status)["info"]["status"] == "deployed"
    finally:
        _helm("uninstall", "dso-e2e", "--namespace", "dso-chart-e2e", kubeconfig=kubeconfig)


def test_helm_template_works_without_kube_version() -> None:
    rendered = _helm("template", "deepseek-operator", str(CHART))
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered) if d]
    assert "Deployment" in kinds and "ClusterRole" in kinds


def _kinds(*sets: str) -> dict[tuple[str, str], dict[str, Any]]:
    args = [a for value in sets for a in ("--set", value)]
    rendered = _helm("template", "x", str(CHART), "--kube-version", _kube_version(), *args)
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered) if d}


def test_the_gateway_is_on_by_default_and_switches_off_with_its_value() -> None:
    default = _kinds()
    for key in [("Deployment", "deepseek-gateway"), ("Service", "deepseek-gateway"),
                ("PodDisruptionBudget", "deepseek-gateway"), ("ClusterRole", "x-gateway"),
                ("ServiceAccount", "deepseek-gateway")]:
        assert key in default, key
    assert ("ServiceMonitor", "deepseek-gateway") not in default
    operator_args = default[("Deployment", "x")]["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert "--gateway-url=http://deepseek-gateway.default.svc" in operator_args
    off = _kinds("gateway.enabled=false")
    assert not any("gateway" in name for _, name in off)
    assert not any(arg.startswith("--gateway") for arg in off[("Deployment", "x")]["spec"][
        "template"]["spec"]["containers"][0]["args"])


def test_gateway_values_reach_its_objects() -> None:
    objects = _kinds("gateway.serviceMonitor.enabled=true", "gateway.service.type=LoadBalancer",
                     "gateway.maxQueued=7", "gateway.audit.volume=persistentVolumeClaim",
                     "gateway.audit.claimName=audit", "gateway.replicaCount=3")
    monitor = objects[("ServiceMonitor", "deepseek-gateway")]["spec"]
    assert monitor["endpoints"][0]["path"] == "/metrics"
    assert objects[("Service", "deepseek-gateway")]["spec"]["type"] == "LoadBalancer"
    pod = objects[("Deployment", "deepseek-gateway")]["spec"]["template"]["spec"]
    assert objects[("Deployment", "deepseek-gateway")]["spec"]["replicas"] == 3
    assert "--max-queued=7" in pod["containers"][0]["args"]
    audit = next(v for v in pod["volumes"] if v["name"] == "audit")
    assert audit == {"name": "audit", "persistentVolumeClaim": {"claimName": "audit"}}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "audit")
    assert mount["subPathExpr"] == "$(POD_NAME)"


@pytest.mark.parametrize(("value", "message"), [
    ("gateway.replicaCount=1", "/gateway/replicaCount"),
    ("gateway.audit.volume=persistentVolumeClaim", "needs gateway.audit.claimName"),
    ("logFormat=xml", "logFormat"),
    ("metricsPort=abc", "metricsPort"),
    ("healthPort=0", "healthPort"),
    ("image.pullPolicy=Sometimes", "pullPolicy"),
    ("metricPort=9090", "metricPort"),
    ("healthPort=9090", "metricsPort and healthPort must differ (both are 9090)"),
])
def test_helm_refuses_a_bad_value_naming_it(value: str, message: str) -> None:
    cmd = [str(build.build_all()["helm"]), "template", "x", str(CHART), "--set", value]
    refused = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert message in refused.stderr and len(refused.stderr) < 1000, refused.stderr


def _readme_helm_install() -> list[str]:
    """The README's `helm install` command line, split as a shell would."""
    (line,) = [ln for ln in (REPO / "README.md").read_text().splitlines()
               if ln.startswith("helm install ")]
    return shlex.split(line)


def test_the_readme_helm_install_works_after_the_demo(kubeconfig: Path, kubectl: Path) -> None:
    """What `make demo` installs for its operator process does not collide with the
    chart's objects, and uninstalling the chart leaves the demo's operator its rights."""
    install_manifests(kubectl, kubeconfig)  # as `make demo` does
    helm, *args = _readme_helm_install()
    assert helm == "helm"
    release, namespace = args[1], args[args.index("-n") + 1]
    try:
        _helm(*args, "--wait=false", kubeconfig=kubeconfig)
        status = _helm("status", release, "--namespace", namespace, "-o", "yaml",
                       kubeconfig=kubeconfig)
        assert yaml.safe_load(status)["info"]["status"] == "deployed"
    finally:
        _helm("uninstall", release, "--namespace", namespace, "--ignore-not-found",
              kubeconfig=kubeconfig)
    can_i = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "auth", "can-i",
                            "patch", "deepseekdeployments.deepseek-operator.io", "-A",
                            "--as", controlplane.OPERATOR_USER],
                           capture_output=True, text=True, check=False)
    assert can_i.stdout.strip() == "yes", can_i.stderr


def _operator_settings(deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The OperatorSettings the operator container of `deployment` starts with: its
    DEEPSEEK_OPERATOR_* environment, loaded as `run` loads it."""
    from deepseek_operator.controller.settings import load

    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert env and all(name.startswith("DEEPSEEK_OPERATOR_") for name in env), env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load()


def test_chart_settings_reach_the_operator_as_its_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"registryPrefix": "mirror.example.com/hub", "vllmImage": "own/vllm:1",
              "sglangImage": "own/sglang:2", "hfDownloadImage": "own/hf:3",
              "s3DownloadImage": "own/aws:4", "clusterDomain": "corp.internal",
              "runAsUser": 1000000, "runAsGroup": 3000, "storageClass": "fast-rwx",
              "resyncSeconds": 300, "relistSeconds": 120.5, "autoscalerTickSeconds": 2,
              "downloadPollSeconds": 15}
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(chart_values["settings"]) == set(values), "test every documented setting"
    args = [a for key, value in values.items()
            for a in ("--set-json", f"settings.{key}={json.dumps(value)}")]
    rendered = _helm("template", "x", str(CHART), "--kube-version", _kube_version(), *args)
    deployment = next(d for d in yaml.safe_load_all(rendered)
                      if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "x")
    settings = _operator_settings(deployment, monkeypatch)
    assert (settings.registry_prefix, settings.vllm_image, settings.sglang_image,
            settings.hf_download_image, settings.s3_download_image) == (
        "mirror.example.com/hub", "own/vllm:1", "own/sglang:2", "own/hf:3", "own/aws:4")
    assert (settings.cluster_domain, settings.run_as_user, settings.run_as_group,
            settings.storage_class) == ("corp.internal", 1000000, 3000, "fast-rwx")
    assert (settings.resync_seconds, settings.relist_seconds,
            settings.autoscaler_tick_seconds, settings.download_poll_seconds) == (300, 120.5, 2,
                                                                                 15)


def test_unset_chart_settings_leave_the_operator_defaults() -> None:
    deployment = _kinds()[("Deployment", "x")]
    assert "env" not in deployment["spec"]["template"]["spec"]["containers"][0]


def test_the_settings_overlay_example_builds_and_its_settings_load(
        monkeypatch: pytest.MonkeyPatch) -> None:
    kubectl = build.build_all()["kubectl"]
    built = subprocess.run([str(kubectl), "kustomize", str(REPO / "manifests/overlays/settings")],
                           capture_output=True, text=True, check=True).stdout
    deployment = next(d for d in yaml.safe_load_all(built)
                      if d and d["kind"] == "Deployment"
                      and d["metadata"]["name"] == "deepseek-operator")
    settings = _operator_settings(deployment, monkeypatch)
    assert settings.cluster_domain == "corp.internal"
    assert settings.render_settings().vllm_image.startswith("mirror.example.com/dockerhub/")
    assert (settings.run_as_user, settings.run_as_group, settings.storage_class) == (
        2000, 2000, "fast-rwx")
