"""Tests of the pure autoscaling policy: table-driven cases, then hypothesis properties."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_operator.autoscaler import Decision, Observation, PolicyConfig, PolicyState, decide
from deepseek_operator.autoscaler.policy import CAUSES

BASE = PolicyConfig(min_replicas=1, max_replicas=8, target_qps_per_replica=2.0)
# The stabilization and settling rules off, to look at one rule at a time.
INSTANT = replace(
    BASE,
    scale_up_stabilization_seconds=0,
    scale_down_stabilization_seconds=0,
    scale_down_settle_seconds=0,
)


@dataclass(frozen=True)
class Step:
    """One observation and what the policy must answer to it."""

    now: float
    qps: float | None
    current: int
    desired: int
    reason: str  # a substring the reason must contain
    ready: int | None = None  # default: all current replicas Ready
    pending: int = 0
    cause: str | None = None  # Decision.cause, when the case checks it


@dataclass(frozen=True)
class Case:
    name: str
    config: PolicyConfig
    steps: tuple[Step, ...]
    state: PolicyState = field(default_factory=PolicyState)


def every(seconds: float, start: float, stop: float) -> list[float]:
    """Decision times ``start, start + seconds, ...`` below ``stop``."""
    count = math.ceil((stop - start) / seconds)
    return [start + i * seconds for i in range(count)]


def holds(times: list[float], qps: float, current: int, reason: str) -> tuple[Step, ...]:
    return tuple(Step(t, qps, current, current, reason) for t in times)


CASES = [
    Case("do nothing", BASE, (Step(0, 4.0, 2, 2, "hold 2: 4.0 req/s / 2.0 req/s per replica",
                                  cause="Computed"),)),
    Case(
        "scale up in one jump",
        BASE,
        (Step(0, 9.0, 1, 5, "scale up 1 -> 5: 9.0 req/s / 2.0 req/s per replica = 4.5, ceil 5",
              cause="Computed"),),
    ),
    Case(
        "tolerance band holds a small shortfall",
        replace(INSTANT, max_replicas=40),
        (Step(0, 21.0, 10, 10, "hold 10: 21.0 req/s / 2.0 req/s per replica = 10.5, ceil 11; "
                               "within tolerance 6.0% of 10", cause="Tolerance"),),
    ),
    Case(
        "beyond the up band the policy scales up, where the HPA's 10 % band would hold",
        replace(INSTANT, max_replicas=40),
        (Step(0, 21.4, 10, 11, "scale up 10 -> 11: 21.4 req/s / 2.0 req/s per replica = 10.7, "
                               "ceil 11"),),
    ),
    Case(
        "a scale-up tolerance of 0.1 holds the same shortfall, as the HPA does",
        replace(INSTANT, max_replicas=40, scale_up_tolerance=0.1),
        (Step(0, 21.4, 10, 10, "within tolerance 10.0% of 10"),),
    ),
    Case(
        "tolerance band holds a small excess",
        replace(INSTANT, max_replicas=40),
        (Step(0, 37.0, 20, 20, "within tolerance 10.0% of 20"),),
    ),
    Case(
        "float rounding does not add a replica",
        replace(BASE, target_qps_per_replica=0.1),
        (Step(0, 0.1 * 3, 3, 3, "ceil 3"),),
    ),
    Case(
        "up stabilization takes the lowest recommendation of the window",
        replace(BASE, scale_up_stabilization_seconds=60),
        (
            Step(0, 4.0, 2, 2, "hold 2"),
            Step(15, 10.0, 2, 2, "hold 2: 10.0 req/s / 2.0 req/s per replica = 5.0, ceil 5; "
                                 "lowest recommendation in the last 60.0 s is 2"),
            Step(45, 10.0, 2, 2, "lowest recommendation in the last 60.0 s is 2",
                 cause="UpStabilization"),
            Step(60, 10.0, 2, 5, "scale up 2 -> 5", cause="Computed"),
        ),
    ),
    Case(
        "down stabilization takes the highest recommendation, then goes in one step",
        replace(BASE, scale_down_settle_seconds=0),
        (
            Step(0, 10.0, 5, 5, "hold 5"),
            *holds(every(15, 15, 300), 2.0, 5, "highest recommendation in the last 300.0 s is 5"),
            Step(300, 2.0, 5, 1, "scale down 5 -> 1", cause="Computed"),
        ),
    ),
    Case(
        "a falling floor is waited out, then one scale-down",
        replace(BASE, scale_down_stabilization_seconds=60, scale_down_settle_seconds=45),
        (
            Step(0, 16.0, 8, 8, "hold 8"),
            Step(15, 12.0, 8, 8, "highest recommendation in the last 60.0 s is 8"),
            Step(30, 8.0, 8, 8, "hold 8"),
            Step(45, 4.0, 8, 8, "hold 8"),
            Step(60, 4.0, 8, 8, "that floor is still falling (8 -> 6), waiting up to 45.0 s",
                 cause="Settling"),
            Step(75, 4.0, 8, 8, "still falling (6 -> 4)"),
            Step(90, 4.0, 8, 8, "still falling (4 -> 2)"),
            Step(105, 4.0, 8, 2, "scale down 8 -> 2"),
        ),
    ),
    Case(
        "without settling the same fall takes three scale-downs",
        replace(BASE, scale_down_stabilization_seconds=60, scale_down_settle_seconds=0),
        (
            Step(0, 16.0, 8, 8, "hold 8"),
            Step(15, 12.0, 8, 8, "hold 8"),
            Step(30, 8.0, 8, 8, "hold 8"),
            Step(45, 4.0, 8, 8, "hold 8"),
            Step(60, 4.0, 8, 6, "scale down 8 -> 6"),
            Step(75, 4.0, 6, 4, "scale down 6 -> 4"),
            Step(90, 4.0, 4, 2, "scale down 4 -> 2"),
            Step(105, 4.0, 2, 2, "hold 2"),
        ),
    ),
    Case(
        "settling is bounded: a floor that keeps falling still gets scaled down",
        replace(BASE, max_replicas=20, scale_down_tolerance=0.0,
                scale_down_stabilization_seconds=30, scale_down_settle_seconds=30),
        (
            Step(0, 40.0, 20, 20, "hold 20"),
            Step(15, 36.0, 20, 20, "highest recommendation in the last 30.0 s is 20"),
            Step(30, 32.0, 20, 20, "still falling (20 -> 18)"),
            Step(45, 28.0, 20, 20, "still falling (18 -> 16)"),
            Step(60, 24.0, 20, 14, "scale down 20 -> 14"),
            Step(75, 20.0, 14, 14, "still falling (14 -> 12)"),
        ),
    ),
    Case(
        "clamp to maxReplicas",
        BASE,
        (Step(0, 100.0, 2, 8, "ceil 50; clamped to maxReplicas 8"),),
    ),
    Case(
        "clamp to minReplicas",
        replace(INSTANT, min_replicas=2),
        (Step(0, 0.0, 3, 2, "scale down 3 -> 2: 0.0 req/s / 2.0 req/s per replica = 0.0, ceil 0; "
                            "clamped to minReplicas 2", cause="Bounds"),),
    ),
    Case(
        "a manual scale above maxReplicas is corrected at once",
        BASE,
        (Step(0, 24.0, 12, 8, "scale down 12 -> 8"),),
        PolicyState(recommendations=((-15.0, 12),)),
    ),
    Case("a count below minReplicas is corrected", BASE, (Step(0, 0.0, 0, 1, "scale up 0 -> 1"),)),
    Case(
        "missing metric holds and never drops to minReplicas",
        INSTANT,
        (Step(0, None, 6, 6, "hold 6: metric missing, keeping the current count"),),
    ),
    Case(
        "missing metric still respects the bounds",
        BASE,
        (Step(0, None, 11, 8, "scale down 11 -> 8: metric missing, current count moved into "
                              "[1, 8]", cause="Bounds"),),
    ),
    Case(
        "loading replicas already requested are not added again",
        BASE,
        (Step(0, 9.0, 5, 5, "hold 5", ready=1, pending=4),),
    ),
    Case(
        "scale-up adds only what is missing beyond the loading replicas",
        BASE,
        (Step(0, 14.0, 5, 7, "scale up 5 -> 7", ready=1, pending=4),),
    ),
    Case(
        "no scale-down while loading and the Ready replicas are full",
        INSTANT,
        (Step(0, 8.0, 8, 8, "4 replicas still loading and the 4 Ready ones are fully used",
              ready=4, pending=4, cause="ReplicasLoading"),),
    ),
    Case(
        "scale-down while loading when the Ready replicas have spare capacity",
        INSTANT,
        (Step(0, 6.0, 8, 3, "scale down 8 -> 3", ready=5, pending=3),),
    ),
    Case(
        "scale to zero after the idle period, and back in one step",
        replace(BASE, min_replicas=0, scale_up_stabilization_seconds=60,
                scale_to_zero_idle_seconds=600),
        (
            *holds(every(15, 0, 585), 0.0, 1, "scale to zero after 600.0 s"),
            Step(585, 0.0, 1, 1, "scale to zero after 600.0 s", cause="ScaleToZeroWait"),
            Step(600, 0.0, 1, 0, "scale down 1 -> 0: 0.0 req/s / 2.0 req/s per replica = 0.0, "
                                 "ceil 0; no traffic for 600.0 s"),
            Step(615, 0.0, 0, 0, "hold 0"),
            Step(630, 5.0, 0, 3, "scale up 0 -> 3: 5.0 req/s / 2.0 req/s per replica = 2.5, "
                                 "ceil 3; traffic at zero replicas, stabilization skipped"),
        ),
    ),
    Case(
        "traffic restarts the idle clock",
        replace(BASE, min_replicas=0, scale_down_stabilization_seconds=0,
                scale_to_zero_idle_seconds=60),
        (
            Step(0, 0.0, 1, 1, "no traffic for 0.0 s"),
            Step(45, 0.0, 1, 1, "no traffic for 45.0 s"),
            Step(50, 0.5, 1, 1, "hold 1"),
            Step(60, 0.0, 1, 1, "no traffic for 0.0 s"),
            Step(120, 0.0, 1, 0, "scale down 1 -> 0"),
        ),
    ),
    Case(
        "a missing metric restarts the idle clock",
        replace(BASE, min_replicas=0, scale_down_stabilization_seconds=0,
                scale_to_zero_idle_seconds=60),
        (
            Step(0, 0.0, 1, 1, "no traffic for 0.0 s"),
            Step(45, None, 1, 1, "metric missing"),
            Step(60, 0.0, 1, 1, "no traffic for 0.0 s"),
        ),
    ),
    Case(
        "the idle clock does not override the down window",
        replace(BASE, min_replicas=0, scale_to_zero_idle_seconds=0,
                scale_down_settle_seconds=0),
        (
            Step(0, 2.0, 1, 1, "hold 1"),
            Step(15, 0.0, 1, 1, "highest recommendation in the last 300.0 s is 1"),
            Step(300, 0.0, 1, 0, "scale down 1 -> 0"),
        ),
    ),
]


def run(config: PolicyConfig, steps: tuple[Step, ...], state: PolicyState) -> list[Decision]:
    """Feed the steps in order, threading the state through."""
    decisions = []
    for step in steps:
        ready = step.current - step.pending if step.ready is None else step.ready
        observation = Observation(step.now, step.qps, step.current, ready, step.pending)
        decision = decide(config, observation, state)
        decisions.append(decision)
        state = decision.state
    return decisions


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decide(case: Case) -> None:
    decisions = run(case.config, case.steps, case.state)
    for step, decision in zip(case.steps, decisions, strict=True):
        assert (decision.desired_replicas, decision.scaled) == (
            step.desired,
            step.desired != step.current,
        ), f"at t={step.now}: {decision.reason}"
        assert step.reason in decision.reason, f"at t={step.now}"
        if step.cause is not None:
            assert decision.cause == step.cause, f"at t={step.now}: {decision.reason}"


def test_computed_replicas_is_the_raw_ceiling() -> None:
    decision = decide(BASE, Observation(0, 100.0, 2, 2, 0), PolicyState())
    assert (decision.computed_replicas, decision.desired_replicas) == (50, 8)
    missing = decide(BASE, Observation(0, None, 2, 2, 0), PolicyState())
    assert missing.computed_replicas is None
    assert (decision.cause, missing.cause) == ("Bounds", "MetricMissing")


def test_a_load_too_large_for_any_count_is_clamped_not_an_error() -> None:
    # A tiny target (the CRD allows 1e-300 in mode operator) and a huge rate overflow the
    # ratio to infinity: the decision is maxReplicas, not an OverflowError every tick.
    tiny = replace(BASE, target_qps_per_replica=1e-300)
    decision = decide(tiny, Observation(0, 1e308, 2, 2, 0), PolicyState())
    assert decision.desired_replicas == BASE.max_replicas
    assert decision.computed_replicas == 2**31 - 1


def test_missing_metric_records_no_recommendation() -> None:
    state = PolicyState(recommendations=((0.0, 3),), zero_traffic_since=0.0)
    decision = decide(BASE, Observation(15, None, 3, 3, 0), state)
    assert decision.state.recommendations == ((0.0, 3),)
    assert decision.state.zero_traffic_since is None


def test_last_scale_at_moves_only_on_a_scale() -> None:
    first = decide(BASE, Observation(10, 9.0, 1, 1, 0), PolicyState())
    held = decide(BASE, Observation(25, 9.0, 5, 1, 4), first.state)
    assert (first.state.last_scale_at, held.state.last_scale_at) == (10, 10)


def test_history_is_pruned_to_the_longest_window() -> None:
    state, times = PolicyState(), every(15, 0, 1000)
    for now in times:
        state = decide(BASE, Observation(now, 4.0, 2, 2, 0), state).state
    assert len(state.recommendations) == 300 // 15
    assert all(time > times[-1] - 300 for time, _ in state.recommendations)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"min_replicas": -1}, "min_replicas"),
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas"),
        ({"min_replicas": 0, "max_replicas": 0}, "max_replicas"),
        ({"max_replicas": 2.5}, "max_replicas"),
        ({"target_qps_per_replica": 0.0}, "target_qps_per_replica"),
        ({"target_qps_per_replica": float("inf")}, "target_qps_per_replica"),
        ({"scale_up_tolerance": 1.0}, "scale_up_tolerance"),
        ({"scale_down_tolerance": -0.1}, "scale_down_tolerance"),
        ({"scale_up_stabilization_seconds": -1}, "scale_up_stabilization_seconds"),
        ({"scale_down_stabilization_seconds": float("nan")}, "scale_down_stabilization_seconds"),
        ({"scale_down_settle_seconds": -5}, "scale_down_settle_seconds"),
        ({"scale_to_zero_idle_seconds": -1}, "scale_to_zero_idle_seconds"),
    ],
)
def test_config_validation_names_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        replace(BASE, **changes)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ((0, float("nan"), 1, 1, 0), "qps"),
        ((0, -1.0, 1, 1, 0), "qps"),
        ((float("inf"), 1.0, 1, 1, 0), "now"),
        ((0, 1.0, -1, 1, 0), "current_replicas"),
        ((0, 1.0, 1, True, 0), "ready_replicas"),
        ((0, 1.0, 1, 1, -2), "pending_replicas"),
    ],
)
def test_observation_validation_names_the_field(values: tuple[object, ...], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Observation(*values)


# --- properties -------------------------------------------------------------------------

configs = st.builds(
    lambda low, span, target, up_band, down_band, up, down, settle, idle: PolicyConfig(
        min_replicas=low,
        max_replicas=max(1, low + span),
        target_qps_per_replica=target,
        scale_up_tolerance=up_band,
        scale_down_tolerance=down_band,
        scale_up_stabilization_seconds=up,
        scale_down_stabilization_seconds=down,
        scale_down_settle_seconds=settle,
        scale_to_zero_idle_seconds=idle,
    ),
    st.integers(0, 5),
    st.integers(0, 30),
    st.floats(0.05, 20),
    st.sampled_from([0.0, 0.06, 0.1, 0.3]),
    st.sampled_from([0.0, 0.05, 0.1, 0.3]),
    st.sampled_from([0.0, 30.0, 60.0]),
    st.sampled_from([0.0, 60.0, 300.0]),
    st.sampled_from([0.0, 45.0]),
    st.sampled_from([0.0, 120.0]),
)
rates = st.one_of(st.none(), st.floats(0, 500), st.just(0.0))


@dataclass(frozen=True)
class Trial:
    now: float
    qps: float | None
    current: int
    decision: Decision


def replay(
    config: PolicyConfig, start: int, qps_series: list[float | None], pending: int = 0
) -> list[Trial]:
    """Run decisions every 15 s, the workload following each decision at once."""
    state, current, trials = PolicyState(), start, []
    for i, qps in enumerate(qps_series):
        loading = min(pending, current)
        observation = Observation(15.0 * i, qps, current, current - loading, loading)
        decision = decide(config, observation, state)
        trials.append(Trial(15.0 * i, qps, current, decision))
        state, current = decision.state, decision.desired_replicas
    return trials


@settings(max_examples=300, deadline=None)
@given(configs, st.integers(0, 60), st.lists(rates, min_size=1, max_size=40), st.integers(0, 5))
def test_desired_always_within_bounds_with_a_reason(
    config: PolicyConfig, start: int, qps_series: list[float | None], pending: int
) -> None:
    for trial in replay(config, start, qps_series, pending):
        decision = trial.decision
        assert config.min_replicas <= decision.desired_replicas <= config.max_replicas
        expected = (
            "hold" if decision.desired_replicas == trial.current
            else "scale up" if decision.desired_replicas > trial.current else "scale down"
        )
        assert decision.reason.startswith(f"{expected} "), decision.reason
        assert decision.cause in CAUSES
        assert decision.scaled == (decision.desired_replicas != trial.current)


@settings(max_examples=300, deadline=None)
@given(configs, st.integers(0, 60), st.lists(rates, max_size=20), st.floats(0, 500))
def test_never_under_provisioned_beyond_the_band_once_the_up_window_passed(
    config: PolicyConfig, start: int, prefix: list[float | None], qps: float
) -> None:
    """After a steady rate for longer than the up window, the shortfall is within the band,
    and with no band the count is at least clamp(ceil(QPS / target))."""
    steady = math.ceil(config.scale_up_stabilization_seconds / 15) + 2
    final = replay(config, start, [*prefix, *[qps] * steady])[-1].decision
    load = qps / config.target_qps_per_replica
    band = config.scale_up_tolerance
    # 1e-9: the policy's own slack for float rounding (policy._INTEGER_SLACK).
    assert final.desired_replicas >= min(config.max_replicas, load / (1 + band) - 1e-9)
    if band == 0:
        expected = min(max(math.ceil(load - 1e-9), config.min_replicas), config.max_replicas)
        assert final.desired_replicas >= expected


@settings(max_examples=300, deadline=None)
@given(configs, st.integers(1, 60), st.lists(st.floats(0, 500), min_size=1, max_size=40))
def test_scale_down_never_below_the_highest_recommendation_of_the_window(
    config: PolicyConfig, start: int, qps_series: list[float]
) -> None:
    """The HPA's guarantee: no scale-down below the highest count computed in the last
    ``scale_down_stabilization_seconds`` (clamped), settling or not."""
    config = replace(config, scale_up_tolerance=0.0, scale_down_tolerance=0.0)
    trials = replay(config, start, list(qps_series))
    for trial in trials:
        if trial.decision.desired_replicas >= trial.current:
            continue
        window = config.scale_down_stabilization_seconds
        recent = [
            t.decision.computed_replicas
            for t in trials
            if trial.now - window < t.now <= trial.now or t.now == trial.now
            if t.decision.computed_replicas is not None
        ]
        floor = min(max(max(recent), config.min_replicas), config.max_replicas)
        assert trial.decision.desired_replicas >= min(floor, trial.current)


@settings(max_examples=200, deadline=None)
@given(configs, st.integers(0, 60), st.lists(rates, min_size=1, max_size=30))
def test_missing_metric_holds_the_current_count(
    config: PolicyConfig, start: int, qps_series: list[float | None]
) -> None:
    for trial in replay(config, start, [*qps_series, None]):
        if trial.qps is None:
            clamped = min(max(trial.current, config.min_replicas), config.max_replicas)
            assert trial.decision.desired_replicas == clamped
