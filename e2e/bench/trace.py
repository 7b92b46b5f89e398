"""A deterministic 24-hour QPS trace for the autoscaler benchmark: diurnal curve, bursts, noise.

The trace is the offered request *rate* (requests/s) at 1-second resolution, the quantity
capacity has to meet. Everything is drawn from one seeded ``numpy.random.Generator``, so a
seed gives the same trace on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DAY_SECONDS = 86_400


@dataclass(frozen=True)
class TraceShape:
    """Parameters of the synthetic trace (all rates in requests/s, times in seconds).

    Attributes:
        trough_qps: rate at the quietest hour (04:00).
        peak_qps: rate of the daytime peak (16:00), before bursts and noise.
        evening_qps: extra rate of an evening bump centred on 20:30.
        bursts_per_day: mean number of bursts (Poisson).
        burst_median_seconds: median burst length (log-normal, sigma 0.8, 30 s to 1 h).
        burst_gain: range of the multiplicative burst height, e.g. (1.3, 2.0).
        noise_sigma: standard deviation of the log-normal noise (0.06 = about 6 %).
        noise_correlation_seconds: time constant of the noise (AR(1) process).
    """

    trough_qps: float = 2.0
    peak_qps: float = 24.0
    evening_qps: float = 5.0
    bursts_per_day: float = 24.0
    burst_median_seconds: float = 240.0
    burst_gain: tuple[float, float] = (1.3, 2.0)
    noise_sigma: float = 0.06
    noise_correlation_seconds: float = 30.0


def diurnal_trace(
    seed: int, shape: TraceShape = TraceShape(), seconds: int = DAY_SECONDS
) -> npt.NDArray[np.float64]:
    """The offered rate for each second ``0 .. seconds-1`` of a day starting at 00:00.

    Returns:
        A float64 array of shape ``(seconds,)``, requests/s, all > 0.
    """
    rng = np.random.default_rng(seed)
    hours = np.arange(seconds, dtype=np.float64) / 3600.0
    daily = 0.5 - 0.5 * np.cos(2 * math.pi * (hours - 4.0) / 24.0)
    evening = np.exp(-(((hours - 20.5) / 1.5) ** 2))
    base = shape.trough_qps + (shape.peak_qps - shape.trough_qps) * daily
    base += shape.evening_qps * evening
    return base * _bursts(rng, shape, seconds) * _noise(rng, shape, seconds)


def _bursts(rng: np.random.Generator, shape: TraceShape, seconds: int) -> npt.NDArray[np.float64]:
    """Multiplicative burst factor: each burst rises in 20 s, holds, and decays in 60 s."""
    factor = np.ones(seconds)
    t = np.arange(seconds, dtype=np.float64)
    count = rng.poisson(shape.bursts_per_day * seconds / DAY_SECONDS)
    for _ in range(count):
        start = rng.uniform(0, seconds)
        length = float(np.clip(shape.burst_median_seconds * rng.lognormal(0, 0.8), 30, 3600))
        gain = rng.uniform(*shape.burst_gain) - 1.0
        rise = np.clip((t - start) / 20.0, 0.0, 1.0)
        fall = np.clip(1.0 - (t - start - length) / 60.0, 0.0, 1.0)
        factor += gain * np.minimum(rise, fall)
    return factor


def _noise(rng: np.random.Generator, shape: TraceShape, seconds: int) -> npt.NDArray[np.float64]:
    """Log-normal AR(1) noise with mean 1, standard deviation ``noise_sigma`` in log space."""
    keep = math.exp(-1.0 / shape.noise_correlation_seconds)
    shocks = rng.standard_normal(seconds) * shape.noise_sigma * math.sqrt(1 - keep * keep)
    log = np.empty(seconds)
    level = rng.standard_normal() * shape.noise_sigma
    for i in range(seconds):
        level = keep * level + shocks[i]
        log[i] = level
    return np.exp(log - shape.noise_sigma**2 / 2)
