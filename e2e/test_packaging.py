"""The Helm chart renders (also without --kube-version), refuses bad values naming them,
lints and installs on the control plane, also as the README says after the demo; the
kustomize base is its current `helm template` output."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from e2e.cluster import build, controlplane, paths
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess, install_manifests
from e2e.test_controller import small_model

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
                     "--set", "managedBy=kustomize", "--skip-tests")
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


OLD_FINALIZER = "deepseek-operator.io/kopf-finalizer"


def _dsd(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The DeepSeekDeployment as stored, None when it is gone."""
    try:
        obj = client.CustomObjectsApi(kube).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    assert isinstance(obj, dict)
    return obj


def test_uninstall_keeps_deepseekdeployments_and_their_namespace_deletes(
        kubeconfig: Path, kubectl: Path, kube: client.ApiClient,
        operator: OperatorProcess) -> None:
    """`helm uninstall` with a DeepSeekDeployment present returns, and leaves it (and its
    workload) serving: uninstalling the operator deletes no user workload. The operator puts
    no finalizer on it (it removes the one an older version put there), so with the
    operator gone its namespace still deletes, children garbage-collected."""
    core = client.CoreV1Api(kube)
    suffix = uuid.uuid4().hex[:6]  # a namespace of an earlier run may still be terminating
    user_ns, release_ns = f"dso-user-{suffix}", f"dso-uninstall-{suffix}"
    core.create_namespace({"metadata": {"name": user_ns}})
    try:
        body = small_model("kept")
        body["metadata"]["finalizers"] = [OLD_FINALIZER]  # as an older operator left it
        client.CustomObjectsApi(kube).create_namespaced_custom_object(
            GROUP, VERSION, user_ns, PLURAL, body)
        wait_for("the operator to reconcile it and drop the old kopf finalizer", lambda: (
            lambda d: d is not None and not d["metadata"].get("finalizers")
            and (d.get("status") or {}).get("observedGeneration") == 1)(
                _dsd(kube, user_ns, "kept")), 60)
        _helm("install", "dso-uninstall", str(CHART), "--namespace", release_ns,
              "--create-namespace", "--wait=false", kubeconfig=kubeconfig)
        _helm("uninstall", "dso-uninstall", "--namespace", release_ns, "--wait",
              "--timeout", "120s", kubeconfig=kubeconfig)
        kept = _dsd(kube, user_ns, "kept")
        assert kept is not None and "deletionTimestamp" not in kept["metadata"]
        apps = client.AppsV1Api(kube)
        assert apps.read_namespaced_deployment("kept", user_ns).metadata.deletion_timestamp \
            is None
        operator.stop()  # the operator is gone, as after uninstalling it for good
        deleted = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "delete",
                                  "namespace", user_ns, "--wait", "--timeout=120s"],
                                 capture_output=True, text=True, check=False)
        assert deleted.returncode == 0, deleted.stderr
    finally:
        if not operator.live():
            operator.start()
        for ns in (user_ns, release_ns):
            subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "delete",
                            "namespace", ns, "--ignore-not-found", "--wait=false"],
                           capture_output=True, check=False)


def _token_kubeconfig(kubeconfig: Path, token: str, path: Path) -> Path:
    """A copy of `kubeconfig` (its server and CA) that authenticates with `token`."""
    config = yaml.safe_load(kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_namespaced_rbac_serves_the_watched_namespace(
        kubeconfig: Path, kubectl: Path, kube: client.ApiClient, tmp_path: Path,
        operator: OperatorProcess) -> None:
    """With watchNamespaces the chart grants a Role per watched namespace (and cluster-wide
    reads only); the operator, run as the chart's ServiceAccount with exactly those rights,
    brings a DeepSeekDeployment there to Ready (children, the Roles it grants included)
    and its relister lists in that namespace without being refused."""
    suffix = uuid.uuid4().hex[:6]  # a namespace of an earlier run may still be terminating
    release_ns, watched = f"dso-scoped-{suffix}", f"dso-watched-{suffix}"
    core = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": watched}})
    scoped = None
    try:
        _helm("install", "dso-scoped", str(CHART), "--namespace", release_ns,
              "--create-namespace", "--set", f"watchNamespaces={{{watched}}}",
              "--set", "gateway.enabled=false", "--wait=false", kubeconfig=kubeconfig)
        token = core.create_namespaced_service_account_token(
            "dso-scoped", release_ns, {"spec": {"expirationSeconds": 3600}}).status.token
        operator.stop()  # one operator at a time
        scoped = OperatorProcess(
            _token_kubeconfig(kubeconfig, token, tmp_path / "scoped.kubeconfig"),
            tmp_path / "operator-scoped.log",
            extra_env={"DEEPSEEK_OPERATOR_RELIST_SECONDS": "10"}, namespaces=[watched])
        scoped.start()
        started = time.monotonic()
        client.CustomObjectsApi(kube).create_namespaced_custom_object(
            GROUP, VERSION, watched, PLURAL, small_model("scoped"))
        wait_for("the DeepSeekDeployment to be Ready", lambda: (
            lambda d: d is not None and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (d.get("status") or {}).get("conditions") or []))(
                _dsd(kube, watched, "scoped")), 90)
        # At least one relist (every 10 s, the shortest the settings allow) has run.
        time.sleep(max(0.0, 12.0 - (time.monotonic() - started)))
        log = scoped.log_tail(200_000)
        assert "relisting the children failed" not in log and "Forbidden" not in log, log
    finally:
        if scoped is not None:
            scoped.stop()
        if not operator.live():
            operator.start()
        _helm("uninstall", "dso-scoped", "--namespace", release_ns, "--ignore-not-found",
              kubeconfig=kubeconfig)
        for ns in (watched, release_ns):
            subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "delete",
                            "namespace", ns, "--ignore-not-found", "--wait=false"],
                           capture_output=True, check=False)


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
    assert monitor["endpoints"][0]["port"] == "metrics"
    assert monitor["selector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "gateway-metrics")
    assert objects[("Service", "deepseek-gateway")]["spec"]["type"] == "LoadBalancer"
    pod = objects[("Deployment", "deepseek-gateway")]["spec"]["template"]["spec"]
    assert objects[("Deployment", "deepseek-gateway")]["spec"]["replicas"] == 3
    assert "--max-queued=7" in pod["containers"][0]["args"]
    audit = next(v for v in pod["volumes"] if v["name"] == "audit")
    assert audit == {"name": "audit", "persistentVolumeClaim": {"claimName": "audit"}}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "audit")
    assert mount["subPathExpr"] == "$(POD_NAME)"
    assert not any(a.startswith("--audit-digest-key-file") for a in pod["containers"][0]["args"])
    keyed = _kinds("gateway.audit.digestKeySecret=audit-digest")[
        ("Deployment", "deepseek-gateway")]["spec"]["template"]["spec"]
    assert "--audit-digest-key-file=/etc/deepseek-gateway/digest/key" in keyed["containers"][0][
        "args"]
    assert {"name": "digest-key", "secret": {"secretName": "audit-digest",
                                             "defaultMode": 0o400}} in keyed["volumes"]


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


# Value combinations `helm lint --strict` and `helm template` must pass: together they set
# every value of values.yaml (test_the_combinations_cover_every_value).
COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"], "peering": {
        "enabled": True, "name": "dso"}, "replicaCount": 2},
    "existing-service-account": {"serviceAccount": {"create": False, "name": "ops"},
                                 "rbac": {"create": False}, "crds": {"manage": False}},
    "pod-placement": {
        "image": {"repository": "registry.example.com/dso", "tag": "1.2.3",
                  "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"annotations": {"iam.example.com/role": "dso"}, "name": "dso-sa"},
        "podLabels": {"team": "ml"}, "podAnnotations": {"example.com/scrape": "true"},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops",
                         "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
        "resources": {"requests": {"cpu": "200m", "memory": "300Mi"},
                      "limits": {"memory": "2Gi"}},
        "logFormat": "plain", "metricsPort": 9100, "healthPort": 8081,
        "managedBy": "argocd",
        "networkPolicy": {"scraperNamespaceLabels": {"name": "monitoring"},
                          "scraperPodLabels": {"app": "prom"}},
        "global": {},
    },
    "settings": {"settings": {
        "registryPrefix": "mirror.example.com/hub", "vllmImage": "own/vllm:1",
        "sglangImage": "own/sglang:2", "hfDownloadImage": "own/hf:3",
        "s3DownloadImage": "own/aws:4", "clusterDomain": "corp.internal", "runAsUser": 2000,
        "runAsGroup": 2000, "storageClass": "fast", "resyncSeconds": 300,
        "relistSeconds": 300, "autoscalerTickSeconds": 2, "downloadPollSeconds": 20}},
    "monitoring": {
        "serviceMonitor": {"enabled": True, "interval": "15s",
                           "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                             "labels": {"grafana_dashboard": "1", "team": "ml"}},
        "prometheusAdapterRules": {"enabled": True, "namespace": "monitoring"}},
    "gateway": {"gateway": {
        "replicaCount": 3, "queueTimeoutSeconds": 60, "maxQueued": 8, "metricsPort": 9100,
        "audit": {"volume": "persistentVolumeClaim", "claimName": "audit", "sizeLimit": "2Gi",
                  "digestKeySecret": "audit-digest"},
        "service": {"type": "LoadBalancer", "port": 8080},
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                      "limits": {"memory": "1Gi"}},
        "serviceMonitor": {"enabled": True, "interval": "30s"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "affinity": {"podAntiAffinity": {}}}},
    "no-gateway": {"gateway": {"enabled": False}},
}


SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def _value_paths(value: Any, schema: dict[str, Any] = SCHEMA,
                 path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Paths of the values in a values tree, descending into the mappings whose schema names
    their keys (not into free-form maps: labels, resources, affinity)."""
    properties = schema.get("properties")
    if isinstance(value, dict) and properties:
        return {p for key, child in value.items()
                for p in _value_paths(child, properties[key], (*path, key))}
    return {path}


def test_the_combinations_cover_every_value() -> None:
    documented = _value_paths(yaml.safe_load((CHART / "values.yaml").read_text()))
    covered = set().union(*(_value_paths(c) for c in COMBINATIONS.values()))
    assert documented - covered == set(), "add the new values to COMBINATIONS"


def _values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _objects(tmp_path: Path, values: dict[str, Any], release: str = "x",
             namespace: str = "ops") -> list[dict[str, Any]]:
    rendered = _helm("template", release, str(CHART), "--namespace", namespace,
                     "--kube-version", _kube_version(), "-f", _values_file(tmp_path, values)
                     .as_posix())
    return [d for d in yaml.safe_load_all(rendered) if d]


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_chart_lints_strict_and_renders_with_each_combination(name: str,
                                                               tmp_path: Path) -> None:
    values = _values_file(tmp_path, COMBINATIONS[name])
    linted = _helm("lint", "--strict", str(CHART), "--kube-version", _kube_version(),
                   "-f", str(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in linted
    kinds = {d["kind"] for d in _objects(tmp_path, COMBINATIONS[name])}
    assert {"Deployment", "Service", "Pod"} <= kinds  # Pod: the `helm test` hook


@pytest.mark.parametrize("value", ["metricsPort=abc", "serviceAccount.create=maybe",
                                   "imagePullSecrets[0].nam=regcred"])
def test_helm_lint_strict_fails_on_a_wrong_value(value: str) -> None:
    cmd = [str(build.build_all()["helm"]), "lint", "--strict", str(CHART), "--kube-version",
           _kube_version(), "--set", value]
    refused = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert value.split("=")[0].split(".")[-1].split("[")[0] in refused.stdout + refused.stderr


def _pod(objects: list[dict[str, Any]], name: str = "x") -> dict[str, Any]:
    (deployment,) = [d for d in objects if d["kind"] == "Deployment"
                     and d["metadata"]["name"] == name]
    return dict(deployment["spec"]["template"])


def test_every_name_follows_the_release(tmp_path: Path) -> None:
    """Two releases (in two namespaces) share no object, cluster-scoped ones included, and
    each binds its own ServiceAccount."""
    def keys(release: str, namespace: str) -> set[tuple[str, str, str]]:
        objects = _objects(tmp_path, {}, release, namespace)
        binding = next(d for d in objects if d["kind"] == "ClusterRoleBinding"
                       and d["metadata"]["name"] == release)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": release,
                                        "namespace": namespace}]
        assert _pod(objects, release)["spec"]["serviceAccountName"] == release
        return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
                for d in objects}
    assert keys("one", "ns-1") & keys("two", "ns-2") == set()


def test_an_existing_service_account_is_used_and_must_be_named(tmp_path: Path) -> None:
    objects = _objects(tmp_path, COMBINATIONS["existing-service-account"])
    assert not any(d["kind"] in ("ServiceAccount", "ClusterRole", "Role") and
                   d["metadata"]["name"] in ("x", "ops") for d in objects)
    assert _pod(objects)["spec"]["serviceAccountName"] == "ops"
    cmd = [str(build.build_all()["helm"]), "template", "x", str(CHART),
           "--set", "serviceAccount.create=false"]
    refused = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "needs serviceAccount.name" in refused.stderr


def test_pod_values_reach_the_operator_pod(tmp_path: Path) -> None:
    objects = _objects(tmp_path, COMBINATIONS["pod-placement"])
    template = _pod(objects)
    spec = template["spec"]
    assert template["metadata"]["labels"]["team"] == "ml"
    assert template["metadata"]["annotations"] == {"example.com/scrape": "true"}
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["serviceAccountName"] == "dso-sa"
    assert (spec["priorityClassName"], spec["nodeSelector"]) == (
        "system-cluster-critical", {"kubernetes.io/os": "linux"})
    assert spec["tolerations"][0]["key"] == "dedicated" and "nodeAffinity" in spec["affinity"]
    (container,) = spec["containers"]
    assert container["image"] == "registry.example.com/dso:1.2.3"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    (deployment,) = [d for d in objects if d["kind"] == "Deployment"
                     and d["metadata"]["name"] == "x"]
    assert "team" not in deployment["spec"]["selector"]["matchLabels"]  # selectors are immutable
    gateway = _pod(objects, "deepseek-gateway")
    assert gateway["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    account = next(d for d in objects if d["kind"] == "ServiceAccount"
                   and d["metadata"]["name"] == "dso-sa")
    assert account["metadata"]["annotations"] == {"iam.example.com/role": "dso"}


def test_a_disruption_budget_comes_with_standby_replicas(tmp_path: Path) -> None:
    assert not any(d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "x"
                   for d in _objects(tmp_path, {}))
    (budget,) = [d for d in _objects(tmp_path, COMBINATIONS["namespaced"])
                 if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "x"]
    assert budget["spec"]["minAvailable"] == 1


def _rule_resources(rules: list[dict[str, Any]]) -> set[str]:
    return {r for rule in rules for r in rule["resources"]}


def test_watch_namespaces_grant_roles_in_those_namespaces_only(tmp_path: Path) -> None:
    objects = _objects(tmp_path, COMBINATIONS["namespaced"])
    roles = {d["metadata"]["namespace"]: d for d in objects if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"]: d for d in objects if d["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    assert bindings["team-a"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "x", "namespace": "ops"}]
    (cluster_role,) = [d for d in objects if d["kind"] == "ClusterRole"
                       and d["metadata"]["name"] == "x"]
    assert _rule_resources(cluster_role["rules"]) == {
        "namespaces", "storageclasses", "customresourcedefinitions"}
    clusterwide = next(d for d in _objects(tmp_path, {}) if d["kind"] == "ClusterRole"
                       and d["metadata"]["name"] == "x")
    assert _rule_resources(clusterwide["rules"]) == _rule_resources(
        roles["team-a"]["rules"]) | _rule_resources(cluster_role["rules"]) | {
        "clusterkopfpeerings"}


def _test_hook(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (pod,) = [d for d in objects if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    return dict(pod)


def test_the_helm_test_hook_checks_the_running_operator(
        tmp_path: Path, operator: OperatorProcess) -> None:
    """The `helm test` Pod's check, run here against the e2e operator's metrics (kwok
    runs no container, so `helm test` itself cannot run on the local control plane)."""
    pod = _test_hook(_objects(tmp_path, {"gateway": {"enabled": False}}))
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["METRICS_URL"] == "http://x-metrics.ops.svc:9090/metrics"
    assert env["GATEWAY_URL"] == ""
    local = {"METRICS_URL": f"http://127.0.0.1:{operator.metrics_port}/metrics",
             "GATEWAY_URL": ""}
    result = subprocess.run([sys.executable, "-c", container["args"][0]], env=local,
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0 and "operator metrics: ok" in result.stdout, result.stderr
    wrong = {**local, "METRICS_URL": f"http://127.0.0.1:{operator.health_port}/healthz"}
    failed = subprocess.run([sys.executable, "-c", container["args"][0]], env=wrong,
                            capture_output=True, text=True, check=False, timeout=60)
    assert failed.returncode != 0 and "no deepseek_operator_ metrics" in failed.stderr
