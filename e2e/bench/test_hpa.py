"""Checks of the benchmark's HPA model against the HPA's documented behaviour, and of the
claim that our policy with the HPA's settings is the same algorithm. No cluster needed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from deepseek_operator.autoscaler import PolicyConfig
from e2e.bench.autoscaler import PolicyAutoscaler, hpa_autoscaler
from e2e.bench.hpa import HorizontalPodAutoscalerModel
from e2e.bench.simulate import SimConfig, simulate
from e2e.bench.trace import diurnal_trace


def model() -> HorizontalPodAutoscalerModel:
    return HorizontalPodAutoscalerModel(min_replicas=1, max_replicas=32, target_per_pod=2.0)


def test_scale_up_is_limited_to_max_of_4_pods_and_100_percent_per_15_s() -> None:
    hpa = model()
    assert hpa.decide(0, 18.0, 1) == 5  # 1 + 4 pods beats 1 x 2
    assert hpa.decide(5, 18.0, 5) == 5  # the +4 of t=0 still counts within 15 s
    assert hpa.decide(15, 18.0, 5) == 9  # a new period: up to max(5 + 4, 5 x 2)


def test_tolerance_band() -> None:
    assert model().decide(0, 21.0, 10) == 10  # ratio 1.05
    assert model().decide(0, 22.2, 10) == 12  # ratio 1.11


def test_scale_down_waits_for_the_window_then_goes_in_one_step() -> None:
    hpa = model()
    assert hpa.decide(0, 10.0, 5) == 5
    assert [hpa.decide(t, 2.0, 5) for t in range(15, 300, 15)] == [5] * 19
    assert hpa.decide(300, 2.0, 5) == 1


def test_count_above_max_is_corrected() -> None:
    assert model().decide(0, 2.0, 40) == 32


def test_policy_with_the_hpa_defaults_matches_the_hpa_model() -> None:
    sim = SimConfig()
    trace = diurnal_trace(3)
    config = PolicyConfig(min_replicas=1, max_replicas=32, target_qps_per_replica=2.0)
    as_hpa = PolicyAutoscaler(replace(
        config, scale_down_settle_seconds=0, scale_up_tolerance=0.1,
        scale_up_stabilization_seconds=0))
    ours = simulate("policy", trace, as_hpa, sim)
    theirs = simulate("hpa", trace, hpa_autoscaler(sim), sim)
    assert np.array_equal(ours.replicas, theirs.replicas)
    settled = simulate("policy", trace, PolicyAutoscaler(config), sim)
    assert settled.scale_events < theirs.scale_events
