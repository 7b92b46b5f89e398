"""Replay a QPS trace through an autoscaler and account for what it costs and misses.

The model, the same for every autoscaler compared:

- every ``interval_seconds`` the autoscaler sees the mean offered rate of the last
  ``metric_window_seconds`` (what a Prometheus ``rate(...[1m])`` reports) and the current,
  Ready and still-loading replica counts, and returns the replica count to set;
- pods are created at once and hold their GPUs from that moment, but a new replica is
  capacity only ``startup_seconds`` later (scheduling, image and model load);
- a scale-down removes loading replicas first, newest first, as the ReplicaSet controller
  does, then Ready ones;
- GPU-hours = pods x GPUs per pod x time, loading pods included; a second is
  under-provisioned when Ready replicas x throughput < the offered rate in that second.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# (now s, observed req/s, current, ready, loading) -> replicas to set
Autoscaler = Callable[[float, float, int, int, int], int]


@dataclass(frozen=True)
class SimConfig:
    """Fixed facts of the simulated deployment (times in seconds, rates in requests/s).

    Attributes:
        throughput_qps: requests/s one Ready replica serves, also the autoscalers' target.
        gpus_per_replica: GPUs each replica (pod) holds, loading or not.
        startup_seconds: time from pod creation to Ready (model load).
        interval_seconds: decision interval (the HPA's sync period, our loop's interval).
        metric_window_seconds: averaging window of the observed rate.
        min_replicas: lower bound given to both autoscalers.
        max_replicas: upper bound given to both autoscalers.
    """

    throughput_qps: float = 2.0
    gpus_per_replica: int = 2
    startup_seconds: int = 180
    interval_seconds: int = 15
    metric_window_seconds: int = 60
    min_replicas: int = 1
    max_replicas: int = 32


@dataclass(frozen=True)
class SimResult:
    """One autoscaler's run over the trace.

    Attributes:
        name: label for tables and plots.
        replicas: pods per second (the workload's spec.replicas), shape ``(seconds,)``.
        gpu_hours: sum of pods x GPUs per pod over time, hours.
        underprovisioned_seconds: seconds with Ready capacity below the offered rate.
        scale_ups: number of changes of the replica count upwards.
        scale_downs: number of changes downwards.
    """

    name: str
    replicas: npt.NDArray[np.int64]
    gpu_hours: float
    underprovisioned_seconds: int
    scale_ups: int
    scale_downs: int

    @property
    def scale_events(self) -> int:
        """All changes of the replica count."""
        return self.scale_ups + self.scale_downs


def simulate(
    name: str, trace: npt.NDArray[np.float64], autoscaler: Autoscaler, config: SimConfig
) -> SimResult:
    """Run ``autoscaler`` over ``trace`` (offered requests/s per second), starting from the
    ideal count for the first second, all Ready."""
    seconds = len(trace)
    cumulative = np.concatenate([[0.0], np.cumsum(trace)])
    replicas = np.empty(seconds, dtype=np.int64)
    ready = _ideal_count(float(trace[0]), config)
    loading: list[int] = []  # ready-at times, oldest first
    ups = downs = under = 0
    for t in range(seconds):
        while loading and loading[0] <= t:
            loading.pop(0)
            ready += 1
        if t > 0 and t % config.interval_seconds == 0:
            start = max(0, t - config.metric_window_seconds)
            observed = float(cumulative[t] - cumulative[start]) / (t - start)
            current = ready + len(loading)
            desired = autoscaler(float(t), observed, current, ready, len(loading))
            if desired > current:
                ups += 1
                loading.extend([t + config.startup_seconds] * (desired - current))
            elif desired < current:
                downs += 1
                drop = current - desired
                while drop and loading:
                    loading.pop()
                    drop -= 1
                ready -= drop
        replicas[t] = ready + len(loading)
        if ready * config.throughput_qps < trace[t]:
            under += 1
    gpu_hours = float(replicas.sum()) * config.gpus_per_replica / 3600.0
    return SimResult(name, replicas, gpu_hours, under, ups, downs)


def ideal(trace: npt.NDArray[np.float64], config: SimConfig) -> SimResult:
    """The ideal curve: ``clamp(ceil(rate / throughput))`` every second, Ready at once."""
    counts = np.array([_ideal_count(float(qps), config) for qps in trace], dtype=np.int64)
    steps = np.diff(counts)
    under = int(np.count_nonzero(counts * config.throughput_qps < trace))
    gpu_hours = float(counts.sum()) * config.gpus_per_replica / 3600.0
    return SimResult(
        "ideal", counts, gpu_hours, under, int(np.count_nonzero(steps > 0)),
        int(np.count_nonzero(steps < 0)),
    )


def _ideal_count(qps: float, config: SimConfig) -> int:
    needed = math.ceil(qps / config.throughput_qps)
    return min(max(needed, config.min_replicas), config.max_replicas)
