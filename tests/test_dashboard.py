"""The chart's Grafana dashboard and ServiceMonitors.

The dashboard JSON is generated (e2e/dashboard.py, `make dashboard`) and committed; every
PromQL expression in it must parse, by Prometheus' own parser (a Go program built from the
pinned github.com/prometheus/prometheus module, e2e/cluster/promql) and by `promtool check
rules` (Debian's prometheus package, `make system-deps`), and every metric it selects must
be one the operator or the gateway exports (their prometheus-client registries).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from e2e import dashboard
from e2e.cluster import build, paths
from prometheus_client import REGISTRY, CollectorRegistry

from deepseek_operator.controller import metrics as operator_metrics  # noqa: F401  (registers)
from deepseek_operator.gateway.metrics import GatewayMetrics

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "deepseek-operator"
COMMITTED = ROOT / dashboard.DEFAULT_OUTPUT
# Grafana's variables, replaced by what Grafana would put there (a regex for a multi-value
# variable with "All", a duration for the interval variables).
GRAFANA_VARIABLES = {"$namespace": ".*", "$deployment": ".*", "$__rate_interval": "1m",
                     "$__interval": "30s",
                     "$__range": "6h"}
# prometheus-client's sample names per family type (the family name has no suffix).
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created"), "info": ("_info",),
            "unknown": ("",)}


def _exported(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry can expose, whether or not it has samples yet."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def _exprs() -> list[str]:
    """The dashboard's expressions with Grafana's variables filled in."""
    out = []
    for expr in dashboard.expressions(json.loads(COMMITTED.read_text())):
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        out.append(expr)
    return out


def test_the_committed_dashboard_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == dashboard.render(), "run `make dashboard`"


def test_the_dashboard_shows_each_asked_for_signal() -> None:
    model = json.loads(COMMITTED.read_text())
    titles = {p["title"] for p in model["panels"]}
    assert {"Desired and ready replicas", "Observed QPS vs target", "Scale decisions by cause",
            "Reconciles by result", "Reconcile errors", "Model cache"} <= titles
    variables = [v["name"] for v in model["templating"]["list"]]
    assert variables == ["datasource", "namespace", "deployment"]
    assert len({p["id"] for p in model["panels"]}) == len(model["panels"])


def test_every_expression_parses_and_selects_exported_metrics() -> None:
    exprs = _exprs()
    parser = build.build_promql(paths.versions()["prometheus"])
    out = subprocess.run([str(parser)], input=json.dumps(exprs), capture_output=True,
                         text=True, check=True).stdout
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["expr"] for r in results] == exprs
    assert [(r["expr"], r["error"]) for r in results if r["error"]] == []

    exported = _exported(REGISTRY) | _exported(GatewayMetrics().registry)
    selected = {name for r in results for name in r["metrics"]}
    assert "" not in selected, "a selector without a metric name"
    assert selected - exported == set()
    # The per-deployment families this dashboard exists for are all used.
    assert {"deepseek_operator_deployment_desired_replicas",
            "deepseek_operator_deployment_ready_replicas",
            "deepseek_operator_autoscaler_observed_qps",
            "deepseek_operator_autoscaler_target_qps_per_replica",
            "deepseek_operator_autoscaler_scale_decisions_total",
            "deepseek_operator_deployment_reconciles_total",
            "deepseek_operator_deployment_reconcile_errors_total",
            "deepseek_operator_deployment_condition"} <= selected


def test_promtool_accepts_every_expression(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: `make system-deps` installs Debian's prometheus")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr{i}", "expr": expr} for i, expr in enumerate(_exprs())]}]}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_exprs())} rules found" in done.stdout


def _helm_template(*sets: str) -> list[dict[str, Any]]:
    helm = build.build_helm(paths.versions()["helm"]) / "helm"
    args = [str(helm), "template", "x", str(CHART), "--namespace", "ops", "--kube-version",
            paths.versions()["kubernetes"].removeprefix("v")]
    for value in sets:
        args += ["--set", value]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _crd_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of a Prometheus Operator CRD, from the pinned module."""
    module = build._module_dir("github.com/prometheus-operator/prometheus-operator",
                               paths.versions()["prometheus-operator"])
    crd = yaml.safe_load((module / "example" / "prometheus-operator-crd" /
                          f"monitoring.coreos.com_{kind.lower()}s.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in _helm_template()}
    assert ("ServiceMonitor", "x") not in kinds
    assert ("ConfigMap", "x-dashboard") not in kinds


def test_the_service_monitors_select_the_metrics_services_and_keep_their_labels() -> None:
    docs = _helm_template("serviceMonitor.enabled=true", "serviceMonitor.labels.release=kps",
                          "gateway.serviceMonitor.enabled=true")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceMonitor"}
    schema = _crd_schema("ServiceMonitor")
    for monitor_name, service_name in (("x", "x-metrics"), ("deepseek-gateway",
                                                            "deepseek-gateway-metrics")):
        monitor, service = monitors[monitor_name], services[service_name]
        jsonschema.validate(monitor, schema)
        selector = monitor["spec"]["selector"]["matchLabels"]
        matching = [name for name, svc in services.items()
                    if selector.items() <= svc["metadata"]["labels"].items()]
        assert matching == [service_name]
        endpoint = monitor["spec"]["endpoints"][0]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["honorLabels"] is True
    assert monitors["x"]["metadata"]["labels"]["release"] == "kps"
    gateway_endpoint = monitors["deepseek-gateway"]["spec"]["endpoints"][0]
    assert gateway_endpoint["port"] == "metrics", "the metrics listener, not the API port"
    assert services["deepseek-gateway-metrics"]["spec"]["type"] == "ClusterIP"


def test_the_dashboard_configmap_carries_the_committed_json() -> None:
    docs = _helm_template("grafanaDashboard.enabled=true", "grafanaDashboard.namespace=grafana")
    [configmap] = [d for d in docs if d["kind"] == "ConfigMap"
                   and d["metadata"]["name"] == "x-dashboard"]
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["deepseek-operator.json"]) == json.loads(
        COMMITTED.read_text())
    assert re.fullmatch(r"[-._a-zA-Z0-9]+", next(iter(configmap["data"])))
