"""The operator's own Prometheus metrics (prometheus-client), served by `deepseek-operator run`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "deepseek_operator_reconciles_total",
    "Reconciles of DeepSeekDeployments by result (changed, noop, stalled).",
    ["result"])
RECONCILE_ERRORS = Counter(
    "deepseek_operator_reconcile_errors_total",
    "Reconciles that failed with a transient error and will be retried.")
RECONCILE_SECONDS = Histogram(
    "deepseek_operator_reconcile_duration_seconds",
    "Wall time of one reconcile, seconds.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WRITES = Counter(
    "deepseek_operator_child_writes_total",
    "Server-side applies and deletes of child objects.")
MANAGED = Gauge(
    "deepseek_operator_managed_deployments",
    "DeepSeekDeployments this operator instance currently manages.")
SCALE_EVENTS = Counter(
    "deepseek_operator_autoscaler_scale_events_total",
    "Replica changes made by the operator's autoscaler, by direction.",
    ["direction"])
AUTOSCALER_DECISIONS = Counter(
    "deepseek_operator_autoscaler_decisions_total",
    "Evaluations of the operator's autoscaler, by whether metrics were available.",
    ["metrics"])
CRD_SCHEMA_CURRENT = Gauge(
    "deepseek_operator_crd_schema_current",
    "1 when the served DeepSeekDeployment CRD is the one this operator was built with, "
    "0 when it differs (its Warning event and the log say how).")
