"""The Grafana dashboard of the chart (charts/deepseek-operator/dashboards/), built with the
Grafana Foundation SDK (PyPI ``grafana-foundation-sdk``, a dev dependency).

``make dashboard`` runs ``python -m e2e.dashboard --output PATH``; tests/test_dashboard.py
checks that the committed file is what this module builds, that every PromQL expression
parses (Prometheus' own parser and ``promtool check rules``) and that every metric it
selects is one the operator or the gateway exports.

What it shows, per DeepSeekDeployment (variables ``namespace`` and ``deployment``, the
labels every per-deployment series carries): desired and ready replicas; the observed
request rate against the target (targetQPSPerReplica x desired replicas) and the gateway's
rate; the autoscaler's decisions by direction and cause; reconciles by result and
reconcile errors; the ModelCached condition, the phase and the current conditions.
Metrics: operator/deepseek_operator/controller/metrics.py and gateway/metrics.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grafana_foundation_sdk.builders import prometheus, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig, VizLegendOptions
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

UID = "deepseek-operator"
DEFAULT_OUTPUT = Path("charts/deepseek-operator/dashboards/deepseek-operator.json")
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# The per-deployment label matchers of every query (Grafana interpolates the variables).
SEL = 'namespace=~"$namespace", deployment=~"$deployment"'
WHO = "{{namespace}}/{{deployment}}"


def _query(expr: str, legend: str = WHO, instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)
    return query.instant() if instant else query.range()


def _grown(selector: str, window: str) -> str:
    """PromQL: how much each counter series of ``selector`` grew over ``window``, by
    namespace, deployment, direction and cause; a series born inside the window counts
    from 0 (``increase`` would count it from its first sample); a reset counts as 0."""
    return ("sum by (namespace, deployment, direction, cause) (clamp_min("
            f"{selector} - ({selector} offset {window} or {selector} * 0), 0))")


def _series(title: str, description: str, unit: str,
            *queries: prometheus.Dataquery, bars: bool = False) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).unit(unit)
             .datasource(DATASOURCE).height(8).span(12)
             .legend(VizLegendOptions().show_legend(True)
                     .display_mode(LegendDisplayMode.LIST)
                     .placement(LegendPlacement.BOTTOM)))
    if bars:
        panel = (panel.draw_style(GraphDrawStyle.BARS).fill_opacity(80)
                 .stacking(StackingConfig().mode(StackingMode.NORMAL)))
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _states(title: str, description: str, expr: str, legend: str) -> statetimeline.Panel:
    return (statetimeline.Panel().title(title).description(description)
            .datasource(DATASOURCE).height(8).span(12).show_value("never")
            .with_target(_query(expr, legend)))


def build() -> Dashboard:
    """The dashboard, as an SDK builder (``.build()`` gives the model)."""
    namespace = (QueryVariable("namespace").label("Namespace").datasource(DATASOURCE)
                 .query("label_values(deepseek_operator_deployment_phase, namespace)")
                 .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
                 .multi(True).include_all(True).all_value(".*"))
    deployment = (QueryVariable("deployment").label("DeepSeekDeployment").datasource(DATASOURCE)
                  .query('label_values(deepseek_operator_deployment_phase'
                         '{namespace=~"$namespace"}, deployment)')
                  .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                  .sort(VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True)
                  .all_value(".*"))
    return (
        Dashboard("DeepSeek operator").uid(UID).tags(["deepseek-operator", "kubernetes"])
        .description("DeepSeekDeployments: replicas, traffic against the target, the "
                     "operator's autoscaler decisions, reconciles and the model cache.")
        .refresh("30s").time("now-6h", "now").timezone("browser").editable()
        .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(namespace).with_variable(deployment)
        .with_row(Row("Replicas and traffic"))
        .with_panel(_series(
            "Desired and ready replicas",
            "status.desiredReplicas (asked for now, by whoever owns the count) and "
            "status.readyReplicas of each DeepSeekDeployment.", "short",
            _query(f"deepseek_operator_deployment_desired_replicas{{{SEL}}}", f"{WHO} desired"),
            _query(f"deepseek_operator_deployment_ready_replicas{{{SEL}}}", f"{WHO} ready")))
        .with_panel(_series(
            "Observed QPS vs target",
            "The request rate the operator's autoscaler last observed "
            "(status.autoscaling.observedQPS), the capacity it sizes for "
            "(targetQPSPerReplica x desired replicas) and the rate the gateway counts.",
            "reqps",
            _query(f"deepseek_operator_autoscaler_observed_qps{{{SEL}}}", f"{WHO} observed"),
            _query(f"deepseek_operator_autoscaler_target_qps_per_replica{{{SEL}}} "
                   "* on (namespace, deployment) "
                   f"deepseek_operator_deployment_desired_replicas{{{SEL}}}",
                   f"{WHO} target (per replica x desired)"),
            _query("sum by (namespace, deployment) "
                   f"(rate(deepseek_gateway_requests_total{{{SEL}}}[$__rate_interval]))",
                   f"{WHO} gateway")))
        .with_row(Row("Autoscaler"))
        .with_panel(_series(
            "Scale decisions by cause",
            "Replica changes made by the operator's autoscaler in each interval, by "
            "direction and by the policy rule that settled the count (Decision.cause). "
            "Counted as the counter's growth since the previous interval, the first "
            "decision of each kind included (increase() would miss it: a labelled "
            "counter's series starts at 1).", "short",
            _query(_grown(f'deepseek_operator_autoscaler_scale_decisions_total{{{SEL}, '
                          'direction!="hold"}', "$__interval"),
                   f"{WHO} {{{{direction}}}} ({{{{cause}}}})"), bars=True))
        .with_panel(
            table.Panel().title("Decisions in the time range")
            .description("Every evaluation of the operator's autoscaler in the time "
                         "range, holds included, by direction and cause.")
            .datasource(DATASOURCE).height(8).span(12)
            .with_target(_query(
                _grown(f"deepseek_operator_autoscaler_scale_decisions_total{{{SEL}}}",
                       "$__range") + " > 0",
                instant=True).format(PromQueryFormat.TABLE)))
        .with_panel(_states(
            "Autoscaler metrics",
            "The AutoscalerReady condition: False with its reason while the request rate "
            "cannot be read (the count is held).",
            f'deepseek_operator_deployment_condition{{{SEL}, type="AutoscalerReady"}}',
            f"{WHO} {{{{status}}}} {{{{reason}}}}"))
        .with_row(Row("Reconciles"))
        .with_panel(_series(
            "Reconciles by result", "Reconciles per second: changed (wrote something), "
            "noop, stalled (the spec cannot work as it is).", "ops",
            _query("sum by (namespace, deployment, result) (rate("
                   f"deepseek_operator_deployment_reconciles_total{{{SEL}}}[$__rate_interval]))",
                   f"{WHO} {{{{result}}}}")))
        .with_panel(_series(
            "Reconcile errors", "Reconciles that failed with a transient error and are "
            "retried (an API error, a conflict); the operator log names the cause.", "ops",
            _query("sum by (namespace, deployment) (rate("
                   f"deepseek_operator_deployment_reconcile_errors_total{{{SEL}}}"
                   "[$__rate_interval]))", f"{WHO} errors")))
        .with_panel(_series(
            "Reconcile duration (all deployments)", "Wall time of one reconcile, p50 "
            "and p99 over every deployment this operator manages.", "s",
            _query("histogram_quantile(0.5, sum by (le) (rate("
                   "deepseek_operator_reconcile_duration_seconds_bucket[$__rate_interval])))",
                   "p50"),
            _query("histogram_quantile(0.99, sum by (le) (rate("
                   "deepseek_operator_reconcile_duration_seconds_bucket[$__rate_interval])))",
                   "p99")))
        .with_row(Row("Model cache and status"))
        .with_panel(_states(
            "Model cache", "The ModelCached condition: Downloaded, Downloading, "
            "DownloadFailed, WaitingForStorage, ...",
            f'deepseek_operator_deployment_condition{{{SEL}, type="ModelCached"}}',
            f"{WHO} {{{{reason}}}}"))
        .with_panel(_states(
            "Phase", "status.phase: Pending, Downloading, Starting, Ready, Degraded, Failed.",
            f"deepseek_operator_deployment_phase{{{SEL}}}", f"{WHO} {{{{phase}}}}"))
        .with_panel(
            table.Panel().title("Conditions now")
            .description("Every condition of each DeepSeekDeployment, with its status and "
                         "reason (kubectl describe dsd has the messages).")
            .datasource(DATASOURCE).height(8).span(24)
            .with_target(_query(f"deepseek_operator_deployment_condition{{{SEL}}}",
                                instant=True).format(PromQueryFormat.TABLE)))
    )


def render() -> str:
    """The dashboard JSON as committed: keys sorted, two-space indent, final newline;
    panels numbered 1, 2, ... in layout order (Grafana needs distinct panel ids)."""
    model = json.loads(JSONEncoder().encode(build().build()))
    for number, panel in enumerate(model["panels"], 1):
        panel["id"] = number
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


def expressions(dashboard: dict[str, object]) -> list[str]:
    """Every PromQL expression of a dashboard JSON model: panel targets (rows' panels
    included) and query variables' ``label_values(METRIC{...}, label)`` selectors."""
    found: list[str] = []

    def walk(panels: object) -> None:
        for panel in panels if isinstance(panels, list) else []:
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    found.append(str(target["expr"]))
            walk(panel.get("panels"))

    walk(dashboard.get("panels"))
    templating = dashboard.get("templating")
    for variable in (templating.get("list") if isinstance(templating, dict) else None) or []:
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and isinstance(text, str):
            inner = text.removeprefix("label_values(").rstrip(")")
            found.append(inner.rsplit(",", 1)[0].strip())
    return found


def main(argv: list[str] | None = None) -> int:
    """Write the dashboard JSON (default: the chart's copy)."""
    parser = argparse.ArgumentParser(prog="python -m e2e.dashboard", description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
