"""status.autoscaling of mode hpa: what the HorizontalPodAutoscaler decided, from its status.

The HPA controller (kube-controller-manager, pkg/controller/podautoscaler) writes into
the HPA's autoscaling/v2 status: ``currentReplicas`` and ``desiredReplicas`` (its last
decision, after bounds, stabilization windows and rate policies), ``lastScaleTime``,
``currentMetrics`` (for our Pods metric: ``pods.current.averageValue``, the per-pod
average it read, a quantity such as ``"4500m"``) and the conditions ``AbleToScale``,
``ScalingActive`` and ``ScalingLimited``, whose messages say why.

The HPA does not publish the replica count before its stabilization (our
``computedReplicas``), so that field stays empty in this mode. ``observedQPS`` is the
per-pod average times ``currentReplicas``: the total the HPA acted on when every current
pod reported the metric (pods without one are left out of the HPA's average).
"""

from __future__ import annotations

import math
from typing import Any

from kubernetes.utils import parse_quantity

from deepseek_operator.api.status import AutoscalingStatus

_REASON_MAX = 1024


def _per_pod_average(status: dict[str, Any], metric: str) -> float | None:
    """The averageValue the HPA read for the Pods metric ``metric``, requests/s per pod."""
    for current in status.get("currentMetrics") or []:
        pods = current.get("pods") or {}
        if current.get("type") != "Pods" or (pods.get("metric") or {}).get("name") != metric:
            continue
        value = (pods.get("current") or {}).get("averageValue")
        if value is None:
            return None
        try:
            average = float(parse_quantity(value))  # type: ignore[no-untyped-call]
        except ValueError:
            return None
        return average if math.isfinite(average) and average >= 0 else None
    return None


def _condition_text(status: dict[str, Any]) -> str:
    """The HPA's conditions that explain its decision, as ``Type: message`` parts:
    AbleToScale and ScalingActive always, ScalingLimited only while it limits."""
    parts = []
    for cond in status.get("conditions") or []:
        kind = cond.get("type")
        if kind == "ScalingLimited" and cond.get("status") != "True":
            continue
        if kind in ("AbleToScale", "ScalingActive", "ScalingLimited"):
            parts.append(f"{kind} {cond.get('status')}: {cond.get('message', '')}".strip())
    return "; ".join(parts)


def hpa_autoscaling(hpa: dict[str, Any] | None, metric: str,
                    target_qps_per_replica: float) -> AutoscalingStatus | None:
    """status.autoscaling for mode hpa from the HorizontalPodAutoscaler ``hpa`` (an API
    dict; None when it does not exist) whose Pods metric is ``metric``, with target
    ``target_qps_per_replica`` requests/s per pod.

    Returns None while the HPA controller has not written a status (no
    ``desiredReplicas``). Otherwise: ``desiredReplicas`` (None while the HPA reads no
    value of its metric: then it decides nothing) and ``lastScaleTime`` as the HPA has
    them, ``observedQPS`` (module docstring; absent while the metric cannot be read),
    ``targetQPSPerReplica``, and a ``reason`` naming the per-pod average, the replica
    counts and the HPA's own condition messages (cut at 1024 characters).
    """
    if hpa is None or hpa.get("kind") != "HorizontalPodAutoscaler":
        return None
    status = hpa.get("status") or {}
    desired = status.get("desiredReplicas")
    if desired is None:
        return None
    current = int(status.get("currentReplicas") or 0)
    average = _per_pod_average(status, metric)
    observed = round(average * current, 3) if average is not None else None
    read = (f"{average:g} req/s per pod (target {target_qps_per_replica:g}) over {current} "
            f"pod(s)" if average is not None else f"no value of {metric} read")
    # Without a metric value the HPA computes nothing: its desiredReplicas (often 0) is
    # not a decision, and it keeps the current count.
    decided = int(desired) if average is not None else None
    change = (f"{current} -> {decided} replicas" if decided is not None
              else f"it holds {current} replicas")
    reason = f"HorizontalPodAutoscaler: {read}, {change}"
    conditions = _condition_text(status)
    if conditions:
        reason += f"; {conditions}"
    if len(reason) > _REASON_MAX:
        reason = reason[:_REASON_MAX - 3] + "..."
    return AutoscalingStatus.model_validate({
        "observedQPS": observed,
        "targetQPSPerReplica": target_qps_per_replica,
        "desiredReplicas": decided,
        "lastScaleTime": status.get("lastScaleTime"),
        "reason": reason,
    })
