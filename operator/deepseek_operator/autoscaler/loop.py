"""The operator's autoscaler (``autoscaling.mode: operator``): observe, decide, scale.

Every ``spec.autoscaling.intervalSeconds`` for each DeepSeekDeployment: read the request
rate from Prometheus, read the workload's scale subresource, run the pure policy
(``autoscaler.policy.decide``) and write the new count through the workload's scale
subresource and into ``spec.replicas`` (the CR's own scale subresource). The decision's
``status.autoscaling`` block and ``AutoscalerReady`` condition are returned as a status
patch (``autoscaler_status``, pure) for the operator's one status writer, which writes it
before the scale: the renderer reads ``status.autoscaling.desiredReplicas``, so a
reconcile that runs next applies the same count instead of fighting it.

``spec.replicas`` set by hand (``kubectl scale dsd``) is the autoscaler's to correct while
it can see traffic; the Tick says so, and the operator posts an Event. While metrics are
missing the autoscaler has nothing better than a human's count: a hand-set
``spec.replicas`` (within minReplicas..maxReplicas) then stands and is held.

Policy state (stabilization history) is kept in memory. After an operator restart the
history starts with the current count, so no scale-down happens before a full down window
has been observed again — a restart never sheds capacity.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.dynamic.exceptions import NotFoundError

from deepseek_operator.api.conditions import (
    REASON_INVALID_QUERY,
    REASON_METRICS_OK,
    REASON_METRICS_UNAVAILABLE,
    REASON_NO_SERIES,
    ConditionType,
    rfc3339,
    set_condition,
)
from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.api.errors import InvalidSpecError
from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.api.status import Condition
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


@dataclass(frozen=True)
class Tick:
    """One autoscaler evaluation: the replicas before, the decision, why metrics were
    missing if they were, the status patch for the operator's status writer (None when
    the stored status already says it), a hand-set ``spec.replicas`` this decision
    overrode (None when there was none), and a hand-set ``spec.replicas`` outside
    minReplicas..maxReplicas, which the autoscaler took as the nearest bound
    (``capped_from``, None when none was; ``replica_range``: that (min, max))."""

    current_replicas: int
    decision: Decision
    qps: float | None
    unavailable: str | None
    status: dict[str, Any] | None = None
    overridden: int | None = None
    capped_from: int | None = None
    replica_range: tuple[int, int] = (0, 0)


@dataclass
class Autoscaler:
    """Per-DeepSeekDeployment policy state and the API calls of the autoscaler.

    ``gateway``: the gateway fronts every deployment, so the default query is the
    gateway's (``render.qps_query``, as ``RenderSettings.gateway``).
    """

    api: ApiClient
    gateway: bool = False
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
                 write_status: Callable[[dict[str, Any]], None],
                 now: float | None = None) -> Tick | None:
        """Run one evaluation and make its scale writes. None when there is no workload yet.

        ``body`` is the stored object (for its status). ``write_status(patch)`` is the
        operator's status writer, called before the scale is written when the status
        changed. Raises ApiException when a Kubernetes call fails (the next tick retries).
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
            qps = query_qps(spec.prometheus.url, qps_query(dsd, self.gateway))
        except InvalidSpecError as exc:
            # In mode operator nothing else renders the query, so this is where a bad
            # override (an unknown placeholder) gets reported, naming the field.
            qps, unavailable, unavailable_reason = None, str(exc), REASON_INVALID_QUERY
        except MetricsUnavailable as exc:
            qps, unavailable = None, str(exc)
        by_hand = hand_set_replicas(dsd, body)
        if qps is None and by_hand is not None:
            current = by_hand  # no metrics: the hand-set count stands, and is held
        state = self._states.get((namespace, name)) or PolicyState(
            recommendations=((now, current),))
        decision = decide(policy_config(dsd), Observation(
            now=now, qps=qps, current_replicas=current, ready_replicas=min(ready, current),
            pending_replicas=max(current - ready, 0)), state)
        self._states[(namespace, name)] = decision.state
        patch = autoscaler_status(dsd, body.get("status") or {}, decision, qps, unavailable,
                                  unavailable_reason, now)
        if patch is not None:
            write_status(patch)
        if dsd.spec.replicas != decision.desired_replicas:
            # Keep spec.replicas (the CR's scale subresource, `kubectl get dsd` DESIRED) in
            # step with the autoscaler, as the HPA does with a Deployment's: a hand-set
            # `kubectl scale dsd` is corrected here.
            self.custom.patch_namespaced_custom_object_scale(
                GROUP, VERSION, namespace, PLURAL, name,
                {"spec": {"replicas": decision.desired_replicas}})
        workload_replicas = int((workload.get("spec") or {}).get("replicas") or 0)
        if decision.desired_replicas != workload_replicas:
            resource.subresources["scale"].patch(
                body={"spec": {"replicas": decision.desired_replicas}},
                name=names.workload(dsd), namespace=namespace,
                content_type="application/merge-patch+json")
        overridden = by_hand if by_hand is not None and by_hand != decision.desired_replicas \
            else None
        capped_from = dsd.spec.replicas if by_hand is not None and by_hand != dsd.spec.replicas \
            else None
        return Tick(workload_replicas, decision, qps, unavailable, patch, overridden,
                    capped_from, (spec.min_replicas, spec.max_replicas))


def hand_set_replicas(dsd: DeepSeekDeployment, body: dict[str, Any]) -> int | None:
    """``spec.replicas`` when someone other than the autoscaler set it: it differs from the
    autoscaler's last decision (``status.autoscaling.desiredReplicas``, which the loop
    copies into spec.replicas). Clamped to minReplicas..maxReplicas; None when there is no
    earlier decision or the two agree."""
    last = ((body.get("status") or {}).get("autoscaling") or {}).get("desiredReplicas")
    wanted = dsd.spec.replicas
    if last is None or wanted is None or wanted == last:
        return None
    bounds = dsd.spec.autoscaling
    return min(max(wanted, bounds.min_replicas), bounds.max_replicas)


def autoscaler_status(dsd: DeepSeekDeployment, stored: dict[str, Any], decision: Decision,
                      qps: float | None, unavailable: str | None, unavailable_reason: str,
                      now: float) -> dict[str, Any] | None:
    """The merge patch of ``.status`` that records one decision: ``autoscaling`` (keys set
    to None are removed: without a measurement there is no observedQPS) and the
    ``conditions`` with AutoscalerReady set (api.conditions.set_condition). None when
    ``stored`` (the current ``.status``, wire form) already says all of it.

    ``qps``: requests/s, None when missing; ``unavailable``: why, when metrics could not be
    read; ``now``: epoch seconds.
    """
    old_auto = stored.get("autoscaling") or {}
    if unavailable:
        ok, reason, message = False, unavailable_reason, (
            f"{unavailable}; holding {decision.desired_replicas} replicas")
    elif qps is None:
        ok, reason, message = False, REASON_NO_SERIES, (
            f"the QPS query returned no series; holding {decision.desired_replicas} replicas")
    else:
        ok, reason, message = True, REASON_METRICS_OK, decision.reason
    old_conditions = [Condition.model_validate(c) for c in stored.get("conditions") or []]
    conditions = [c.model_dump(by_alias=True, exclude_none=True) for c in set_condition(
        old_conditions, ConditionType.AUTOSCALER_READY, ok, reason, message,
        generation=dsd.metadata.generation, now=rfc3339(now))]
    autoscaling: dict[str, Any] = {
        "observedQPS": None if qps is None else round(qps, 3),
        "targetQPSPerReplica": dsd.spec.autoscaling.target_qps_per_replica,
        "computedReplicas": decision.computed_replicas,
        "desiredReplicas": decision.desired_replicas,
        "lastScaleTime": rfc3339(now) if decision.scaled else old_auto.get("lastScaleTime"),
        "reason": decision.reason[:1024],
    }
    present = {k: v for k, v in autoscaling.items() if v is not None}
    if present == old_auto and conditions == stored.get("conditions"):
        return None
    return {"autoscaling": autoscaling, "conditions": conditions}
