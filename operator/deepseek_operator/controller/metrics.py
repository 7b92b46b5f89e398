"""The operator's own Prometheus metrics (prometheus-client), served by `deepseek-operator run`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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

# Per DeepSeekDeployment (labels namespace and deployment, as the gateway's metrics). The
# series of a deleted deployment are removed (forget_deployment), so a scrape shows the
# deployments this instance manages now.
DEPLOYMENT_LABELS = ("namespace", "deployment")
DEPLOYMENT_RECONCILES = Counter(
    "deepseek_operator_deployment_reconciles_total",
    "Reconciles of one DeepSeekDeployment by result (changed, noop, stalled).",
    [*DEPLOYMENT_LABELS, "result"])
DEPLOYMENT_RECONCILE_ERRORS = Counter(
    "deepseek_operator_deployment_reconcile_errors_total",
    "Reconciles of one DeepSeekDeployment that failed with a transient error (retried).",
    DEPLOYMENT_LABELS)
SCALE_DECISIONS = Counter(
    "deepseek_operator_autoscaler_scale_decisions_total",
    "Decisions of the operator's autoscaler for one DeepSeekDeployment, by direction (up, "
    "down, hold) and cause: the policy rule that settled the count (autoscaler.policy.CAUSES).",
    [*DEPLOYMENT_LABELS, "direction", "cause"])
# Each per-deployment family with its label names, in order.
_PER_DEPLOYMENT: tuple[tuple[Counter, tuple[str, ...]], ...] = (
    (DEPLOYMENT_RECONCILES, (*DEPLOYMENT_LABELS, "result")),
    (DEPLOYMENT_RECONCILE_ERRORS, DEPLOYMENT_LABELS),
    (SCALE_DECISIONS, (*DEPLOYMENT_LABELS, "direction", "cause")))


def forget_deployment(namespace: str, name: str) -> None:
    """Remove every series of the per-deployment counters for one DeepSeekDeployment."""
    for family, labelnames in _PER_DEPLOYMENT:
        for metric in family.collect():
            stale = {tuple(s.labels.get(label, "") for label in labelnames)
                     for s in metric.samples
                     if s.labels.get("namespace") == namespace
                     and s.labels.get("deployment") == name}
            for labelvalues in stale:
                family.remove(*labelvalues)


class DeploymentCollector(Collector):
    """Gauges read at scrape time from the status of each DeepSeekDeployment the operator
    holds (its latest watched copy, so what is stored in the API):

    * ``deepseek_operator_deployment_desired_replicas``, ``..._ready_replicas``:
      ``status.desiredReplicas`` and ``status.readyReplicas``, replicas;
    * ``deepseek_operator_deployment_condition{type, status, reason}``: 1 for each
      condition in ``status.conditions`` (Ready, Stalled, ModelCached, ...);
    * ``deepseek_operator_deployment_phase{phase}``: 1 for ``status.phase``;
    * ``deepseek_operator_autoscaler_observed_qps``: ``status.autoscaling.observedQPS``,
      requests/s (absent while metrics are missing);
    * ``deepseek_operator_autoscaler_target_qps_per_replica``:
      ``status.autoscaling.targetQPSPerReplica``, requests/s;

    each labelled ``namespace`` and ``deployment``. ``source`` returns the copies (API
    dicts); the operator sets it to its Reconciler's at start-up.
    """

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[Mapping[str, Any]]] = lambda: ()

    def describe(self) -> list[Metric]:
        """The families without samples (lets the registry check names at register time)."""
        return list(_deployment_families().values())

    def collect(self) -> list[Metric]:
        """One sample per deployment (and per condition) from the current copies."""
        families = _deployment_families()
        for body in self.source():
            meta, status = body.get("metadata") or {}, body.get("status") or {}
            ids = [str(meta.get("namespace", "")), str(meta.get("name", ""))]
            autoscaling = status.get("autoscaling") or {}
            for family, value in (
                    ("desired", status.get("desiredReplicas")),
                    ("ready", status.get("readyReplicas")),
                    ("qps", autoscaling.get("observedQPS")),
                    ("target", autoscaling.get("targetQPSPerReplica"))):
                if isinstance(value, int | float):
                    families[family].add_metric(ids, float(value))
            for cond in status.get("conditions") or []:
                families["condition"].add_metric(
                    [*ids, str(cond.get("type", "")), str(cond.get("status", "")),
                     str(cond.get("reason", ""))], 1.0)
            if status.get("phase"):
                families["phase"].add_metric([*ids, str(status["phase"])], 1.0)
        return list(families.values())


def _deployment_families() -> dict[str, GaugeMetricFamily]:
    labels = list(DEPLOYMENT_LABELS)
    return {
        "desired": GaugeMetricFamily(
            "deepseek_operator_deployment_desired_replicas",
            "Replicas the workload is asked for now (status.desiredReplicas).", labels=labels),
        "ready": GaugeMetricFamily(
            "deepseek_operator_deployment_ready_replicas",
            "Replicas ready to serve (status.readyReplicas).", labels=labels),
        "condition": GaugeMetricFamily(
            "deepseek_operator_deployment_condition",
            "1 for each condition of status.conditions, with its type, status and reason.",
            labels=[*labels, "type", "status", "reason"]),
        "phase": GaugeMetricFamily(
            "deepseek_operator_deployment_phase", "1 for status.phase.",
            labels=[*labels, "phase"]),
        "qps": GaugeMetricFamily(
            "deepseek_operator_autoscaler_observed_qps",
            "Request rate the autoscaler last observed, requests/s "
            "(status.autoscaling.observedQPS).", labels=labels),
        "target": GaugeMetricFamily(
            "deepseek_operator_autoscaler_target_qps_per_replica",
            "Throughput one replica is sized for, requests/s "
            "(status.autoscaling.targetQPSPerReplica).", labels=labels),
    }


DEPLOYMENTS = DeploymentCollector()
REGISTRY.register(DEPLOYMENTS)
