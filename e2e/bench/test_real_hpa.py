"""The pure parts of the real-HPA replay (e2e/bench/real_hpa.py): segment choice, the
compressed HPA, the model's replay and the comparison. No cluster needed; the replay
itself runs in `make bench-autoscaler`."""

from __future__ import annotations

import numpy as np

from e2e.bench.real_hpa import (
    Replay,
    _observed,
    busiest_segment,
    compare,
    hpa_manifest,
    model_replay,
    same_inputs,
    step_values,
)
from e2e.bench.simulate import SimConfig


def test_the_busiest_segment_has_the_most_changes() -> None:
    counts = np.array([1] * 100 + [1, 2, 3, 2, 1, 2] + [2] * 100, dtype=np.int64)
    start = busiest_segment(counts, 10)
    assert start <= 101 and start + 10 >= 106


def test_the_hpa_is_the_default_behavior_compressed() -> None:
    spec = hpa_manifest(SimConfig(), 3.0)["spec"]
    up, down = spec["behavior"]["scaleUp"], spec["behavior"]["scaleDown"]
    assert up["policies"] == [{"type": "Pods", "value": 4, "periodSeconds": 5},
                              {"type": "Percent", "value": 100, "periodSeconds": 5}]
    assert up["selectPolicy"] == "Max" and up["stabilizationWindowSeconds"] == 0
    assert down["stabilizationWindowSeconds"] == 100
    assert down["policies"] == [{"type": "Percent", "value": 100, "periodSeconds": 5}]
    assert spec["metrics"][0]["pods"]["target"] == {"type": "AverageValue",
                                                    "averageValue": "2000m"}


def test_the_metric_is_the_simulations_windowed_mean() -> None:
    trace = np.array([0.0] * 60 + [6.0] * 60)
    cumulative = np.concatenate([[0.0], np.cumsum(trace)])
    assert _observed(cumulative, 60, 60) == 0.0
    assert _observed(cumulative, 90, 60) == 3.0
    assert _observed(cumulative, 120, 60) == 6.0


def test_the_model_replays_in_closed_loop() -> None:
    trace = np.array([2.0] * 120 + [10.0] * 600)
    changes = model_replay(trace, SimConfig(), 120, 300, initial=1)
    assert changes[0] == (0.0, 1)
    assert changes[-1][1] == 5  # ceil(10 / 2) once the window holds only the step


def test_matching_changes_within_one_sync_period() -> None:
    result = Replay(start=0, seconds=100, factor=3.0,
                    real=[(0.0, 1), (20.0, 3), (60.0, 2)],
                    model=[(0.0, 1), (30.0, 3), (90.0, 2)])
    numbers = compare(result, 15)
    assert numbers["real_changes_matched"] == 1  # 20 vs 30; 60 vs 90 is too far
    assert numbers["model_changes_matched"] == 1
    assert numbers["max_offset_s"] == 10.0
    real = step_values(result.real, 100)
    assert list(real[18:22]) == [1, 1, 3, 3]
    assert 0 < numbers["agree_share"] < numbers["agree_within_sync_share"] < 1
    assert numbers["max_difference_within_sync"] == 1  # 60..75: 2 vs 3 (model's 2 at 90)


def test_same_inputs_fills_in_silent_syncs_and_checks_each_decision() -> None:
    # The controller saw 9 req/s at 1 pod and went to 5 (1 + 4 pods), then held 5 (ratio
    # 0.9 is inside the 10 % tolerance) without writing its status again until 60 s.
    result = Replay(start=0, seconds=90, factor=3.0, real=[(0.0, 1), (0.5, 5)],
                    model=[(0.0, 1)], syncs=[(0.0, 1, 5, 9.0), (60.0, 5, 5, 9.1)])
    assert same_inputs(result, SimConfig(), 3.0) == (5, 5)  # 0, 15, 30, 45 (filled), 60
    wrong = Replay(start=0, seconds=90, factor=3.0, real=[(0.0, 1)], model=[(0.0, 1)],
                   syncs=[(0.0, 1, 9, 18.0)])  # 1 -> 9 breaks the max(4 pods, 100 %) limit
    assert same_inputs(wrong, SimConfig(), 3.0) == (0, 1)
