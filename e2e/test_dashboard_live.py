"""The chart's Grafana dashboard against the real thing: a real Prometheus scrapes the
running operator while it reconciles and autoscales a DeepSeekDeployment, and every query
of the dashboard runs there; the ones about the operator return series."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from e2e import dashboard
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess
from e2e.rig.prometheus import PrometheusServer, ScrapeTarget
from e2e.test_controller import create, get, small_model

NAME = "dash"
OBSERVED_QPS = 5.0  # what the autoscaler's query returns: 3 replicas at 2 req/s each


def _queries(namespace: str) -> list[str]:
    """The dashboard's expressions with its variables set to this test's deployment."""
    values = {"$namespace": namespace, "$deployment": NAME, "$__rate_interval": "1m",
              "$__interval": "30s",
              "$__range": "10m"}
    out = []
    for expr in dashboard.expressions(json.loads(dashboard.DEFAULT_OUTPUT.read_text())):
        for variable, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        out.append(expr)
    return out


def test_every_dashboard_query_runs_on_prometheus_scraping_the_operator(
        rig_prometheus: PrometheusServer, operator: OperatorProcess,
        dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    rig_prometheus.set_targets([ScrapeTarget(f"127.0.0.1:{operator.metrics_port}")])
    rig_prometheus.wait_for_up_targets(1)
    create(dsd_api, namespace, small_model(NAME, storage={"accessMode": "ReadWriteMany"},
                                           autoscaling={
        "mode": "operator", "minReplicas": 1, "maxReplicas": 4, "targetQPSPerReplica": 2.0,
        "intervalSeconds": 5, "scaleUpStabilizationSeconds": 0,
        "prometheus": {"url": rig_prometheus.url, "query": f"vector({OBSERVED_QPS})"}}))

    def scaled() -> dict[str, Any] | None:
        obj = get(dsd_api, namespace, NAME)
        status = obj.get("status") or {}
        return obj if (status.get("autoscaling") or {}).get("desiredReplicas") == 3 \
            and status.get("desiredReplicas") == 3 and status.get("readyReplicas") == 3 \
            and status.get("phase") == "Ready" else None
    wait_for(f"{NAME} scaled to 3 and Ready", scaled, 120)

    prometheus = rig_prometheus.client()
    queries = _queries(namespace)
    # The gateway does not run here, and no reconcile failed: those two return nothing.
    quiet = [q for q in queries if "deepseek_gateway_" in q or "reconcile_errors" in q]

    target = next(q for q in queries if q.startswith(
        "deepseek_operator_autoscaler_target_qps_per_replica"))

    def answers() -> dict[str, list[dict[str, Any]]] | None:
        """Every query's result once all operator queries return series and the
        scrape shows the 3 replicas (the target is 2 req/s per replica x 3)."""
        results = {q: list(prometheus.custom_query(q)) for q in queries}
        empty = [q for q, r in results.items() if not r and q not in quiet]
        scraped = results[target] and float(results[target][0]["value"][1]) == 2.0 * 3
        return None if empty or not scraped else results
    by_expr = wait_for("every operator query of the dashboard to return series", answers, 90)

    observed = next(q for q in queries if q.startswith("deepseek_operator_autoscaler_obs"))
    assert float(by_expr[observed][0]["value"][1]) == OBSERVED_QPS
    decisions = next(q for q in queries if "offset 10m" in q)
    causes = {(r["metric"]["direction"], r["metric"]["cause"]) for r in by_expr[decisions]}
    assert ("up", "Computed") in causes
    cached = next(q for q in queries if 'type="ModelCached"' in q)
    assert {r["metric"]["reason"] for r in by_expr[cached]} == {"Downloaded"}
