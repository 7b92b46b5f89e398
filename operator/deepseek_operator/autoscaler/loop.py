"""The operator's autoscaler (``autoscaling.mode: operator``): observe, decide, scale.

Every ``spec.autoscaling.intervalSeconds`` for each DeepSeekDeployment: read the request
rate from Prometheus, read the workload's scale subresource, run the pure policy
(``autoscaler.policy.decide``), record the decision in ``status.autoscaling`` and the
``AutoscalerReady`` condition, and write the new count through the workload's scale
subresource and into ``spec.replicas`` (the CR's own scale subresource).
``status.autoscaling.desiredReplicas`` is written first: the renderer reads it, so a
reconcile that runs next applies the same count instead of fighting it.

Policy state (stabilization history) is kept in memory. After an operator restart the
history starts with the current count, so no scale-down happens before a full down window
has been observed again — a restart never sheds capacity.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.dynamic.exceptions import NotFoundError

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.api.errors import InvalidSpecError
from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.api.status import Condition, ConditionStatus, ConditionType
from deepseek_operator.autoscaler.metrics_source import MetricsUnavailable, query_qps
from deepseek_operator.autoscaler.policy import (
    Decision,
    Observation,
    PolicyConfig,
    PolicyState,
    decide,
)
from deepseek_operator.kubeapi import Resources
from deepseek_operator.render import WORKLOAD_API_VERSIONS, names, qps_query

log = logging.getLogger(__name__)

REASON_METRICS_OK = "MetricsAvailable"
REASON_NO_SERIES = "NoMetrics"
REASON_METRICS_UNAVAILABLE = "MetricsUnavailable"
REASON_INVALID_QUERY = "InvalidQuery"


def policy_config(dsd: DeepSeekDeployment) -> PolicyConfig:
    """The policy's configuration from ``spec.autoscaling`` (seconds, requests/s)."""
    spec = dsd.spec.autoscaling
    return PolicyConfig(
        min_replicas=spec.min_replicas, max_replicas=spec.max_replicas,
        target_qps_per_replica=spec.target_qps_per_replica,
        scale_up_tolerance=spec.scale_up_tolerance,
        scale_down_tolerance=spec.scale_down_tolerance,
        scale_up_stabilization_seconds=float(spec.scale_up_stabilization_seconds),
        scale_down_stabilization_seconds=float(spec.scale_down_stabilization_seconds),
        scale_to_zero_idle_seconds=float(spec.scale_to_zero_idle_seconds))


def _rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(microsecond=0).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Tick:
    """One autoscaler evaluation: the replicas before, the decision, and why metrics were
    missing if they were."""

    current_replicas: int
    decision: Decision
    qps: float | None
    unavailable: str | None


@dataclass
class Autoscaler:
    """Per-DeepSeekDeployment policy state and the API calls of the autoscaler."""

    api: ApiClient
    _states: dict[tuple[str, str], PolicyState] = field(default_factory=dict)
    _last: dict[tuple[str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.resources = Resources(self.api)
        self.custom = CustomObjectsApi(self.api)

    def forget(self, namespace: str, name: str) -> None:
        """Drop the state of a deleted DeepSeekDeployment."""
        self._states.pop((namespace, name), None)
        self._last.pop((namespace, name), None)

    def due(self, dsd: DeepSeekDeployment, now: float) -> bool:
        """True when ``intervalSeconds`` have passed since the last evaluation."""
        key = (dsd.metadata.namespace or "", dsd.metadata.name)
        last = self._last.get(key)
        # Half a second of slack: the kopf timer that drives us is not exactly periodic.
        return last is None or now - last >= dsd.spec.autoscaling.interval_seconds - 0.5

    def _workload(self, dsd: DeepSeekDeployment) -> tuple[Any, dict[str, Any]] | None:
        """(DynamicClient resource, object) of the serving workload, or None if absent."""
        for kind, api_version in WORKLOAD_API_VERSIONS.items():
            resource = self.resources.get(api_version, kind)
            if resource is None:
                continue
            try:
                obj = resource.get(name=names.workload(dsd), namespace=dsd.metadata.namespace)
            except NotFoundError:
                continue
            return resource, dict(obj.to_dict())
        return None

    def evaluate(self, dsd: DeepSeekDeployment, body: dict[str, Any],
                 now: float | None = None) -> Tick | None:
        """Run one evaluation and make its writes. None when there is no workload yet.

        ``body`` is the stored object (for its current conditions). Raises ApiException
        when a Kubernetes call fails (the next tick retries).
        """
        now = time.time() if now is None else now
        namespace, name = dsd.metadata.namespace or "", dsd.metadata.name
        self._last[(namespace, name)] = now
        found = self._workload(dsd)
        if found is None:
            return None
        resource, workload = found
        current = int((workload.get("spec") or {}).get("replicas") or 0)
        ready = int((workload.get("status") or {}).get("readyReplicas") or 0)
        spec = dsd.spec.autoscaling
        unavailable: str | None = None
        unavailable_reason = REASON_METRICS_UNAVAILABLE
        try:
            qps = query_qps(spec.prometheus.url, qps_query(dsd))
        except InvalidSpecError as exc:
            # In mode operator nothing else renders the query, so this is where a bad
            # override (an unknown placeholder) gets reported, naming the field.
            qps, unavailable, unavailable_reason = None, str(exc), REASON_INVALID_QUERY
        except MetricsUnavailable as exc:
            qps, unavailable = None, str(exc)
        state = self._states.get((namespace, name)) or PolicyState(
            recommendations=((now, current),))
        decision = decide(policy_config(dsd), Observation(
            now=now, qps=qps, current_replicas=current, ready_replicas=min(ready, current),
            pending_replicas=max(current - ready, 0)), state)
        self._states[(namespace, name)] = decision.state
        self._write_status(dsd, body, decision, qps, unavailable, unavailable_reason, now)
        if dsd.spec.replicas != decision.desired_replicas:
            # Keep spec.replicas (the CR's scale subresource, `kubectl get dsd` DESIRED) in
            # step with the autoscaler, as the HPA does with a Deployment's: a hand-set
            # `kubectl scale dsd` is corrected here.
            self.custom.patch_namespaced_custom_object_scale(
                GROUP, VERSION, namespace, PLURAL, name,
                {"spec": {"replicas": decision.desired_replicas}})
        if decision.desired_replicas != current:
            resource.subresources["scale"].patch(
                body={"spec": {"replicas": decision.desired_replicas}},
                name=names.workload(dsd), namespace=namespace,
                content_type="application/merge-patch+json")
        return Tick(current, decision, qps, unavailable)

    def _write_status(self, dsd: DeepSeekDeployment, body: dict[str, Any], decision: Decision,
                      qps: float | None, unavailable: str | None, unavailable_reason: str,
                      now: float) -> None:
        old = (body.get("status") or {})
        old_auto = old.get("autoscaling") or {}
        cond_status: ConditionStatus
        if unavailable:
            cond_status, reason, message = "False", unavailable_reason, (
                f"{unavailable}; holding {decision.desired_replicas} replicas")
        elif qps is None:
            cond_status, reason, message = "False", REASON_NO_SERIES, (
                f"the QPS query returned no series; holding {decision.desired_replicas} "
                "replicas")
        else:
            cond_status, reason, message = "True", REASON_METRICS_OK, decision.reason
        conditions = [dict(c) for c in old.get("conditions") or []]
        previous = next((c for c in conditions
                         if c.get("type") == ConditionType.AUTOSCALER_READY), None)
        since = _rfc3339(now)
        if previous is not None and previous.get("status") == cond_status:
            since = str(previous.get("lastTransitionTime") or since)
        condition = Condition(
            type=ConditionType.AUTOSCALER_READY, status=cond_status, reason=reason,
            message=message[:32768], last_transition_time=since,
            observed_generation=dsd.metadata.generation,
        ).model_dump(by_alias=True, exclude_none=True)
        conditions = [c for c in conditions
                      if c.get("type") != ConditionType.AUTOSCALER_READY] + [condition]
        # A JSON merge patch removes keys set to null: without a measurement there is no
        # observedQPS or computedReplicas, rather than a stale one.
        autoscaling: dict[str, Any] = {
            "observedQPS": None if qps is None else round(qps, 3),
            "targetQPSPerReplica": dsd.spec.autoscaling.target_qps_per_replica,
            "computedReplicas": decision.computed_replicas,
            "desiredReplicas": decision.desired_replicas,
            "lastScaleTime": _rfc3339(now) if decision.scaled else old_auto.get("lastScaleTime"),
            "reason": decision.reason[:1024],
        }
        present = {k: v for k, v in autoscaling.items() if v is not None}
        if present == old_auto and conditions == old.get("conditions"):
            return
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, dsd.metadata.namespace, PLURAL, dsd.metadata.name,
            {"status": {"autoscaling": autoscaling, "conditions": conditions}})
