"""A model of the Kubernetes HorizontalPodAutoscaler for one External metric with an
AverageValue target, used as the benchmark's baseline.

Follows kubernetes/kubernetes pkg/controller/podautoscaler (our own code, same algorithm):

- replica_calculator.go ``GetExternalPerPodMetricReplicas``: ``ratio = metric / (target *
  statusReplicas)``; if ``|1 - ratio| > tolerance`` the proposal is ``ceil(metric /
  target)``, otherwise ``statusReplicas``. ``statusReplicas`` counts every pod the
  workload has, Ready or not.
- horizontal.go ``reconcileAutoscaler``: a count outside ``[min, max]`` is corrected first;
  the first sync records the current count as a recommendation.
- ``stabilizeRecommendationWithBehaviors``: a proposal ``>= current`` takes the lowest
  recommendation of the scale-up window, otherwise the highest of the scale-down window;
  a recommendation counts while its time is after ``now - window``.
- ``convertDesiredReplicasWithBehaviorRate`` with the default ``behavior`` of
  autoscaling/v2 (the HPA documentation, "Default Behavior"): scale up by at most
  ``max(4 pods, 100 %)`` per 15 s, scale down by at most 100 % per 15 s, each limit counted
  from the replica changes of the last 15 s.

Checked against the real controller (kube-controller-manager of the pinned Kubernetes) by
e2e/bench/real_hpa.py, which ``make bench-autoscaler`` runs: given the controller's inputs
at each sync, it decides the same (README, "Autoscaling").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

POLICY_PERIOD_SECONDS = 15.0
SCALE_UP_PODS = 4
SCALE_UP_PERCENT = 100
SCALE_DOWN_PERCENT = 100


@dataclass
class HorizontalPodAutoscalerModel:
    """The HPA's decision for one target; call :meth:`decide` once per sync period.

    Attributes:
        min_replicas: ``spec.minReplicas`` (>= 1: scale to zero is an alpha feature).
        max_replicas: ``spec.maxReplicas``.
        target_per_pod: ``target.averageValue``, requests/s per pod.
        tolerance: ``--horizontal-pod-autoscaler-tolerance`` (default 0.1).
        scale_up_window_seconds: ``behavior.scaleUp.stabilizationWindowSeconds`` (0).
        scale_down_window_seconds: ``behavior.scaleDown.stabilizationWindowSeconds`` (300).
    """

    min_replicas: int
    max_replicas: int
    target_per_pod: float
    tolerance: float = 0.1
    scale_up_window_seconds: float = 0.0
    scale_down_window_seconds: float = 300.0
    _recommendations: list[tuple[float, int]] = field(default_factory=list)
    _scale_events: list[tuple[float, int]] = field(default_factory=list)

    def decide(self, now: float, metric: float, current: int) -> int:
        """The replica count the HPA writes at ``now`` for an External metric value
        ``metric`` (requests/s summed over the deployment) and ``current`` pods."""
        if not self._recommendations:
            self._recommendations.append((now, current))
        if current > self.max_replicas:
            desired = self.max_replicas
        elif current < self.min_replicas:
            desired = self.min_replicas
        else:
            proposal = current
            if abs(1.0 - metric / (self.target_per_pod * current)) > self.tolerance:
                proposal = math.ceil(metric / self.target_per_pod)
            stabilized = self._stabilize(now, current, proposal)
            desired = self._rate_limit(now, current, stabilized)
        if desired != current:
            self._scale_events.append((now, desired - current))
        return desired

    def _stabilize(self, now: float, current: int, proposal: int) -> int:
        up = proposal >= current
        window = self.scale_up_window_seconds if up else self.scale_down_window_seconds
        in_window = [rec for time, rec in self._recommendations if time > now - window]
        result = min([proposal, *in_window]) if up else max([proposal, *in_window])
        longest = max(self.scale_up_window_seconds, self.scale_down_window_seconds)
        self._recommendations = [
            (time, rec) for time, rec in self._recommendations if time >= now - longest
        ]
        self._recommendations.append((now, proposal))
        return result

    def _rate_limit(self, now: float, current: int, desired: int) -> int:
        self._scale_events = [
            (time, delta)
            for time, delta in self._scale_events
            if time > now - POLICY_PERIOD_SECONDS
        ]
        if desired > current:
            added = sum(delta for _, delta in self._scale_events if delta > 0)
            start = current - added
            limit = max(start + SCALE_UP_PODS, math.ceil(start * (1 + SCALE_UP_PERCENT / 100)))
            return min(desired, max(limit, current), self.max_replicas)
        if desired < current:
            removed = sum(-delta for _, delta in self._scale_events if delta < 0)
            start = current + removed
            limit = int(start * (1 - SCALE_DOWN_PERCENT / 100))
            return max(desired, min(limit, current), self.min_replicas)
        return desired
