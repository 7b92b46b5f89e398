"""The prometheus-adapter rule of mode hpa (charts/deepseek-operator/files/
prometheus-adapter-rules.yaml): it serves the metric the rendered HPA reads, from the
counters the engines expose, with the labels the PodMonitor (and the e2e rig) give them;
the chart ships it verbatim in a ConfigMap. e2e/test_hpa_real.py runs it for real."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from e2e.cluster import build, metrics_adapter, paths
from e2e.rig.prometheus import NAMESPACE_LABEL, POD_LABEL

from deepseek_operator.render.autoscaling import HPA_METRIC, RATE_WINDOW, REQUEST_COUNTERS

CHART = Path(__file__).resolve().parents[1] / "charts" / "deepseek-operator"
RULES_FILE = CHART / "files" / "prometheus-adapter-rules.yaml"


def _rule() -> dict[str, Any]:
    [rule] = yaml.safe_load(RULES_FILE.read_text())["rules"]
    assert isinstance(rule, dict)
    return rule


def test_the_rig_reads_the_charts_file() -> None:
    assert metrics_adapter.RULES_FILE == RULES_FILE


def test_the_rule_serves_the_hpas_metric_from_every_engines_counter() -> None:
    rule = _rule()
    assert rule["name"]["as"] == HPA_METRIC
    names = re.search(r'__name__=~"([^"]+)"', rule["seriesQuery"])
    assert names is not None and set(names[1].split("|")) == set(REQUEST_COUNTERS.values())
    # The query names the counters itself (the adapter would substitute only one).
    assert "<<.Series>>" not in rule["metricsQuery"]
    assert f'__name__=~"{names[1]}"' in rule["metricsQuery"]
    assert f"[{RATE_WINDOW}]" in rule["metricsQuery"]
    assert rule["resources"]["overrides"] == {
        NAMESPACE_LABEL: {"resource": "namespace"}, POD_LABEL: {"resource": "pod"}}


def test_the_query_parses_as_promql_once_the_adapter_fills_it_in() -> None:
    query = (_rule()["metricsQuery"]
             .replace("<<.LabelMatchers>>", 'namespace="ai",pod=~"r1-a|r1-b"')
             .replace("<<.GroupBy>>", "pod"))
    parser = build.build_promql(paths.versions()["prometheus"])
    out = subprocess.run([str(parser)], input=json.dumps([query]), capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out)["error"] == ""


def test_the_chart_ships_the_file_in_a_configmap() -> None:
    helm = build.build_helm(paths.versions()["helm"]) / "helm"
    out = subprocess.run([str(helm), "template", "x", str(CHART), "--namespace", "ops",
                          "--set", "prometheusAdapterRules.enabled=true",
                          "--set", "prometheusAdapterRules.namespace=monitoring"],
                         capture_output=True, text=True, check=True).stdout
    [configmap] = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "ConfigMap"
                   and d["metadata"]["name"] == "x-prometheus-adapter-rules"]
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["data"]["config.yaml"] == RULES_FILE.read_text().rstrip("\n")
    off = subprocess.run([str(helm), "template", "x", str(CHART)], capture_output=True,
                         text=True, check=True).stdout
    assert "prometheus-adapter-rules" not in off
