"""The autoscaling policy: one observation of a deployment's traffic -> desired replicas.

Pure: no I/O, no clock, no Kubernetes client. The autoscaler loop reads the metric and the
workload's scale, calls :func:`decide` with the state the previous call returned, writes
``Decision.desired_replicas`` through the scale subresource and keeps ``Decision.state``.

Units: times are seconds (any monotonic or epoch float, as long as the caller is
consistent), traffic is requests per second (req/s), replica counts are ints.

The core is the formula of the project design,
``desired = clamp(ceil(QPS / targetQPSPerReplica), minReplicas, maxReplicas)``, reached in one
step. Around it: a tolerance band per direction and scale-up and scale-down stabilization
windows, both with the semantics of the Kubernetes HorizontalPodAutoscaler
(kubernetes/kubernetes, pkg/controller/podautoscaler: replica_calculator.go for the band,
horizontal.go ``stabilizeRecommendationWithBehaviors`` for the windows), a short settling
wait that merges a run of scale-downs into one, a hold on missing metrics, care for
replicas that are still loading, and scale to zero. Each rule is documented on
:func:`decide`; e2e/bench/autoscaler.py measures them against the HPA.

The defaults differ from the HPA's in three places, each chosen with that benchmark (seeds
1-12 of its 24 h trace, then checked on seeds 13-36, which were not used to choose): a
scale-up tolerance of 6 % instead of 10 %, a 60 s scale-up window instead of 0 s, and the
30 s settling wait. The HPA's band filters noise by size, so it leaves a deployment up to
10 % short for as long as the traffic stays there; these defaults filter it by time
instead: a shortfall above 6 % is acted on once it has lasted a minute. Bursts shorter
than that, which end before a new replica has loaded its model, no longer add replicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TypeGuard

# Load values this close to an integer count as that integer, so float rounding in the
# division (0.30000000000000004 / 0.1) cannot add a replica.
_INTEGER_SLACK = 1e-9
_MAX_REPLICAS = float(2**31 - 1)
"""The largest replica count the API stores (int32)."""



@dataclass(frozen=True)
class PolicyConfig:
    """What the policy needs from ``spec.autoscaling``.

    Attributes:
        min_replicas: lower bound, >= 0; 0 enables scale to zero.
        max_replicas: upper bound, >= max(1, min_replicas).
        target_qps_per_replica: throughput one replica is sized for, requests/s, > 0.
        scale_up_tolerance: relative band above the current count inside which the policy
            holds, in [0, 1) (the HPA's ``behavior.scaleUp.tolerance``, whose default is
            0.1); ours is 0.06, see the module docstring.
        scale_down_tolerance: the same band below the current count, in [0, 1) (the HPA's
            ``behavior.scaleDown.tolerance``, default 0.1, which ours keeps).
        scale_up_stabilization_seconds: up window, >= 0; 0 acts at once (the HPA's
            default); ours is 60 s, see the module docstring.
        scale_down_stabilization_seconds: down window, >= 0; 300 is the HPA's default.
        scale_down_settle_seconds: longest wait for a falling scale-down target to settle,
            >= 0 (rule 5 of :func:`decide`); 0 scales down at every step like the HPA. The
            default, 30 s (two 15 s intervals), was chosen with e2e/bench/autoscaler.py.
        scale_to_zero_idle_seconds: with ``min_replicas == 0``, how long traffic must have
            been exactly 0 req/s before the last replica is removed, >= 0.

    Raises:
        ValueError: naming the field, for a value outside the ranges above.
    """

    min_replicas: int
    max_replicas: int
    target_qps_per_replica: float
    scale_up_tolerance: float = 0.06
    scale_down_tolerance: float = 0.1
    scale_up_stabilization_seconds: float = 60.0
    scale_down_stabilization_seconds: float = 300.0
    scale_down_settle_seconds: float = 30.0
    scale_to_zero_idle_seconds: float = 600.0

    def __post_init__(self) -> None:
        _require_count("min_replicas", self.min_replicas)
        _require_count("max_replicas", self.max_replicas)
        if self.max_replicas < max(1, self.min_replicas):
            raise ValueError(
                f"max_replicas must be >= 1 and >= min_replicas ({self.min_replicas}), "
                f"got {self.max_replicas}"
            )
        if not _finite(self.target_qps_per_replica) or self.target_qps_per_replica <= 0:
            raise ValueError(
                "target_qps_per_replica must be a finite number of requests/s > 0, "
                f"got {self.target_qps_per_replica!r}"
            )
        for field in ("scale_up_tolerance", "scale_down_tolerance"):
            value = getattr(self, field)
            if not _finite(value) or not 0 <= value < 1:
                raise ValueError(f"{field} must be a number in [0, 1), got {value!r}")
        for field in (
            "scale_up_stabilization_seconds",
            "scale_down_stabilization_seconds",
            "scale_down_settle_seconds",
            "scale_to_zero_idle_seconds",
        ):
            value = getattr(self, field)
            if not _finite(value) or value < 0:
                raise ValueError(f"{field} must be a finite number of seconds >= 0, got {value!r}")


@dataclass(frozen=True)
class Observation:
    """One look at the deployment, taken by the autoscaler loop.

    Attributes:
        now: the time of the observation, seconds (monotonic or epoch, but one clock).
        qps: observed traffic in requests/s (a rate over a window), or None when the metric
            is missing (Prometheus unreachable, slow, or no series).
        current_replicas: ``spec.replicas`` of the workload (its scale subresource).
        ready_replicas: replicas that are Ready and so serve traffic.
        pending_replicas: replicas that exist but are not yet capacity: unschedulable,
            scheduled but not Ready, or still loading the model.

    Raises:
        ValueError: naming the field, for a count that is not an int >= 0, a non-finite
            time, or a qps that is negative or NaN (the caller maps "no data" to None).
    """

    now: float
    qps: float | None
    current_replicas: int
    ready_replicas: int
    pending_replicas: int

    def __post_init__(self) -> None:
        if not _finite(self.now):
            raise ValueError(f"now must be a finite number of seconds, got {self.now!r}")
        if self.qps is not None and (not _finite(self.qps) or self.qps < 0):
            raise ValueError(
                f"qps must be a finite number of requests/s >= 0, or None, got {self.qps!r}"
            )
        for field in ("current_replicas", "ready_replicas", "pending_replicas"):
            _require_count(field, getattr(self, field))


@dataclass(frozen=True)
class PolicyState:
    """What :func:`decide` remembers between calls; start with ``PolicyState()``.

    Attributes:
        recommendations: ``(time, replicas)`` of recent recommendations (after the
            tolerance band, before clamping), oldest first, pruned to the longer
            stabilization window: 20 pairs at a 15 s interval and a 300 s window.
        zero_traffic_since: start of the current unbroken run of 0 req/s observations;
            None while there is traffic or after a missing metric.
        down_floor: the highest recommendation of the down window at the previous
            decision, when that decision weighed a scale-down; else None.
        settling_since: when the current wait for ``down_floor`` to stop falling began.
        last_scale_at: time of the last decision that changed the replica count.
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    zero_traffic_since: float | None = None
    down_floor: int | None = None
    settling_since: float | None = None
    last_scale_at: float | None = None



@dataclass(frozen=True)
class Decision:
    """The outcome of one :func:`decide` call.

    Attributes:
        desired_replicas: the count to write to the scale subresource.
        computed_replicas: ``ceil(qps / target_qps_per_replica)`` before the tolerance
            band, stabilization and clamping; None when the metric was missing.
        reason: one human sentence saying what was decided and why, with the numbers.
        scaled: ``desired_replicas != observation.current_replicas``.
        state: the state to pass to the next call.
        cause: which rule of :func:`decide` settled the count, one of :data:`CAUSES`
            (a bounded set, so it can be a metric label; ``reason`` has the numbers).
    """

    desired_replicas: int
    computed_replicas: int | None
    reason: str
    scaled: bool
    state: PolicyState
    cause: str = "Computed"


CAUSES = ("Computed", "MetricMissing", "Tolerance", "UpStabilization", "DownStabilization",
          "Settling", "Bounds", "ScaleToZeroWait", "ReplicasLoading")
"""The values of ``Decision.cause``, the last rule of :func:`decide` that changed the count:

Computed: ``ceil(QPS / target)`` as it is (rule 2, or no rule moved it); MetricMissing:
held without a measurement (rule 1); Tolerance: held inside the band (rule 3);
UpStabilization / DownStabilization: limited by a window (rule 4); Settling: a scale-down
waits for the floor to settle (rule 5); Bounds: clamped to min/maxReplicas (rules 1 and
6); ScaleToZeroWait: one replica kept until the idle time has passed (rule 7);
ReplicasLoading: a scale-down waits for loading replicas (rule 8).
"""


def decide(config: PolicyConfig, observation: Observation, state: PolicyState) -> Decision:
    """Compute the desired replica count for one observation.

    Rules, in the order they apply (``load = qps / target_qps_per_replica``, in replicas;
    ``current`` is ``observation.current_replicas``):

    1. **Missing metric** (``qps is None``): hold ``current``, only moved into
       ``[min_replicas, max_replicas]`` (the bounds come from the spec, not from data).
       Never fall to ``min_replicas``: no data is not zero traffic. Nothing is recorded
       as a recommendation, and a zero-traffic run is broken.
    2. **Computed count**: ``computed = ceil(load)``; the policy goes straight to it (1 -> 5
       in one decision at 9 req/s and 2 req/s per replica), never one replica at a time.
    3. **Tolerance band**, as in the HPA's replica calculator with a tolerance per
       direction: when ``load / current - 1`` is in ``[-scale_down_tolerance,
       scale_up_tolerance]`` the recommendation is ``current``, otherwise ``computed``.
       The policy stays below the computed count only while
       ``load <= current * (1 + scale_up_tolerance)``, so with Ready replicas the shortfall
       is at most that share of the capacity (6 % by default); beyond that it scales up.
       The band keeps noise around an integer boundary from adding and removing a replica.
    4. **Stabilization** (HPA semantics): a recommendation above ``current`` is replaced by
       the *lowest* recommendation of the last ``scale_up_stabilization_seconds``; one below
       ``current`` by the *highest* of the last ``scale_down_stabilization_seconds`` (the
       down floor). Windows include this decision, so a window of 0 acts at once. Unlike
       the HPA, a window only delays a move and never reverses it: the up window never
       yields fewer than ``current`` and the down window never more.
    5. **Settling** (our addition): after a burst the down floor falls a little at each
       decision as the burst's recommendations leave the window, so the HPA removes
       replicas in several small steps one interval apart, each one cutting off in-flight
       generations. While the floor is lower than at the previous decision, a scale-down
       waits, at most ``scale_down_settle_seconds``, then goes to the floor in one step.
       It never goes below the floor, so the HPA's guarantee still holds; the cost is
       replicas that go anyway, kept up to that many seconds longer.
    6. **Clamp** to ``[min_replicas, max_replicas]``; a count outside the bounds (a manual
       ``kubectl scale``) is corrected at once.
    7. **Scale to zero** (``min_replicas == 0``): the last replica goes only after traffic
       has been exactly 0 req/s in every observation for ``scale_to_zero_idle_seconds``
       *and* the down floor is 0; until then the floor is 1. From zero, any traffic scales
       straight to ``computed`` (at least 1), skipping the up window: at zero there is no
       capacity at all, so waiting helps nobody.
    8. **Replicas still loading** are not capacity (capacity is ``ready * target``) but
       they are already requested: recommendations are compared with ``current`` (the
       spec, which includes them), never with ``ready``, so loading replicas never make
       the policy add more. While some are loading and the Ready ones are fully used
       (``qps >= ready * target``), the observed rate shows what the Ready replicas serve,
       not the demand, so a scale-down waits until they are Ready; below that, the Ready
       replicas have spare capacity, the rate is the demand, and the scale-down goes on.
       Which replicas go is the workload controller's choice: the ReplicaSet controller
       deletes unscheduled, then Pending, then not-Ready pods before Ready ones
       (kubernetes pkg/controller/controller_utils.go, ``ActivePodsWithRanks``), so a
       scale-down of a Deployment removes loading replicas first. A StatefulSet removes
       the highest ordinal instead, whether Ready or not.

    Args:
        config: bounds, target and windows (validated on construction).
        observation: what the loop saw at ``observation.now``.
        state: what the previous call returned (``PolicyState()`` the first time).

    Returns:
        The decision, with a reason for every outcome, "hold" included.
    """
    now = observation.now
    current = observation.current_replicas
    longest = max(config.scale_up_stabilization_seconds, config.scale_down_stabilization_seconds)
    history = tuple(rec for rec in state.recommendations if rec[0] > now - longest)

    if observation.qps is None:
        desired = _clamp(current, config)
        if desired == current:
            reason = f"hold {current}: metric missing, keeping the current count"
        else:
            reason = (
                f"{_move(current, desired)}: metric missing, current count moved into "
                f"[{config.min_replicas}, {config.max_replicas}]"
            )
        return _decision(state, observation, desired, None, reason, PolicyState(history),
                         "MetricMissing" if desired == current else "Bounds")

    qps = observation.qps
    target = config.target_qps_per_replica
    # Capped at Kubernetes' largest replica count (int32): a tiny target can make the
    # ratio overflow to infinity, which no replica count can hold (clamped below anyway).
    load = min(qps / target, _MAX_REPLICAS)
    # Any traffic at all needs a replica, however far below one replica's worth it is.
    computed = max(1 if qps > 0 else 0, math.ceil(load - _INTEGER_SLACK))
    zero_since = None
    if qps == 0:
        zero_since = now if state.zero_traffic_since is None else state.zero_traffic_since

    notes: list[str] = []
    cause = "Computed"
    recommendation = computed
    if current > 0 and computed != current:
        tolerance = (
            config.scale_up_tolerance if computed > current else config.scale_down_tolerance
        )
        if abs(load / current - 1) <= tolerance:
            recommendation = current
            notes.append(f"within tolerance {_num(tolerance * 100)}% of {current}")
            cause = "Tolerance"
    history = (*history, (now, recommendation))

    proposed, floor, settling_since = _stabilize(
        config, state, history, now, current, computed, recommendation, notes
    )
    if proposed != recommendation:
        cause = ("Settling" if settling_since is not None else
                 "UpStabilization" if recommendation > current else "DownStabilization")
    desired = _clamp(proposed, config)
    if desired != proposed:
        bound = "maxReplicas" if desired < proposed else "minReplicas"
        notes.append(f"clamped to {bound} {desired}")
        cause = "Bounds"
    if desired == 0 and current > 0:
        desired = _gate_scale_to_zero(config, now, zero_since, notes)
        cause = cause if desired == 0 else "ScaleToZeroWait"
    if desired < current:
        held = _wait_for_loading(config, observation, qps, desired, notes)
        cause = cause if held == desired else "ReplicasLoading"
        desired = held

    head = f"hold {current}" if desired == current else _move(current, desired)
    arithmetic = (
        f"{_num(qps)} req/s / {_num(target)} req/s per replica = {_num(load)}, ceil {computed}"
    )
    reason = f"{head}: {arithmetic}" + "".join(f"; {note}" for note in notes)
    new_state = PolicyState(history, zero_since, floor, settling_since)
    return _decision(state, observation, desired, computed, reason, new_state, cause)


def _stabilize(
    config: PolicyConfig,
    state: PolicyState,
    history: tuple[tuple[float, int], ...],
    now: float,
    current: int,
    computed: int,
    recommendation: int,
    notes: list[str],
) -> tuple[int, int | None, float | None]:
    """Rules 4 and 5: ``(proposed replicas, down floor, settling since)``."""
    if current == 0 and computed > 0:
        notes.append("traffic at zero replicas, stabilization skipped")
        return computed, None, None
    if recommendation > current:
        window = config.scale_up_stabilization_seconds
        lowest = min(_window(history, now, window))
        if lowest < recommendation:
            notes.append(f"lowest recommendation in the last {_num(window)} s is {lowest}")
        return max(lowest, current), None, None
    if recommendation == current:
        return current, None, None

    window = config.scale_down_stabilization_seconds
    floor = max(_window(history, now, window))
    if floor > recommendation:
        notes.append(f"highest recommendation in the last {_num(window)} s is {floor}")
    if floor >= current:
        return current, floor, None
    if state.down_floor is not None and floor < state.down_floor:
        since = now if state.settling_since is None else state.settling_since
        if now - since < config.scale_down_settle_seconds:
            notes.append(
                f"that floor is still falling ({state.down_floor} -> {floor}), waiting up to "
                f"{_num(config.scale_down_settle_seconds)} s to scale down in one step"
            )
            return current, floor, since
    return floor, floor, None


def _gate_scale_to_zero(
    config: PolicyConfig, now: float, zero_since: float | None, notes: list[str]
) -> int:
    """Rule 7: 0 once traffic has been 0 req/s for the idle period, else 1."""
    idle = 0.0 if zero_since is None else now - zero_since
    if idle < config.scale_to_zero_idle_seconds:
        notes.append(
            f"no traffic for {_num(idle)} s, scale to zero after "
            f"{_num(config.scale_to_zero_idle_seconds)} s"
        )
        return 1
    notes.append(f"no traffic for {_num(idle)} s")
    return 0


def _wait_for_loading(
    config: PolicyConfig, observation: Observation, qps: float, desired: int, notes: list[str]
) -> int:
    """Rule 8: keep ``current`` (within the bounds) while loading replicas exist and the
    Ready ones are fully used."""
    ready = observation.ready_replicas
    target = config.target_qps_per_replica
    held = _clamp(observation.current_replicas, config)
    if observation.pending_replicas == 0 or qps < ready * target or held <= desired:
        return desired
    notes.append(
        f"{observation.pending_replicas} replicas still loading and the {ready} Ready ones "
        f"are fully used ({_num(qps)} req/s >= {ready} x {_num(target)}), so the rate is "
        f"not the demand; waiting before scaling down to {desired}"
    )
    return held


def _decision(
    previous: PolicyState,
    observation: Observation,
    desired: int,
    computed: int | None,
    reason: str,
    state: PolicyState,
    cause: str,
) -> Decision:
    """Bundle a decision, stamping ``last_scale_at`` when the count changes."""
    scaled = desired != observation.current_replicas
    last_scale_at = observation.now if scaled else previous.last_scale_at
    return Decision(desired, computed, reason, scaled,
                    replace(state, last_scale_at=last_scale_at), cause)


def _window(history: tuple[tuple[float, int], ...], now: float, seconds: float) -> list[int]:
    """Recommendations newer than ``now - seconds``, always including the one made now."""
    return [replicas for time, replicas in history if time > now - seconds or time == now]


def _clamp(replicas: int, config: PolicyConfig) -> int:
    return min(max(replicas, config.min_replicas), config.max_replicas)


def _move(current: int, desired: int) -> str:
    verb = "scale up" if desired > current else "scale down"
    return f"{verb} {current} -> {desired}"


def _num(value: float) -> str:
    """Up to three decimals, at least one: 9 -> "9.0", 0.25 -> "0.25", 1/3 -> "0.333"."""
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _finite(value: object) -> TypeGuard[int | float]:
    """A real number (not a bool) that is neither infinite nor NaN."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _require_count(field: str, value: object) -> None:
    if not _is_count(value):
        raise ValueError(f"{field} must be an int >= 0, got {value!r}")
