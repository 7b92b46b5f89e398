"""The noise: OpenDP clamps each user's value, sums per cell and adds discrete Laplace
noise calibrated to the L1 sensitivity of one user's day over the whole release.

For one metric (requests, or tokens) with per-user bound U and at most k cells per user:

1. per cell, OpenDP's `make_clamp(bounds=(0, U)) >> make_sum` over the users' values
   (one row per user, symmetric distance); its stability map gives the sensitivity of one
   cell to one user, d = U;
2. one user's day is in at most k cells (contributions.py), so it moves the vector of
   all cells' sums (all days of the release: a user-day is in one day only) by at most
   Δ = k x d in L1;
3. OpenDP's `make_laplace` over that vector (integers: discrete Laplace, [GRS12]) with
   the smallest scale b whose privacy map gives ε_metric for d_in = Δ
   (`binary_search_param`); b = Δ / ε_metric, the Laplace mechanism of Dwork & Roth,
   "The Algorithmic Foundations of Differential Privacy" (2014), Theorem 3.6.

Requests and tokens are two such releases on the same data, so a release spends
ε = ε_requests + ε_tokens (sequential composition, Dwork & Roth Theorem 3.16). OpenDP's
samplers draw from the operating system's CSPRNG: there is no seed.

Sources: OpenDP 0.16 documentation, `make_laplace`, `make_clamp`, `make_sum`,
`binary_search_param` (docs.opendp.org).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import opendp.prelude as dp
from opendp.accuracy import discrete_laplacian_scale_to_accuracy

from .limits import MAX_EPSILON, MIN_EPSILON

dp.enable_features("contrib")

INTEGER: Final = "i64"
ALPHA: Final = 0.05  # the reported accuracy: |noise| <= accuracy with probability 1 - ALPHA


@dataclass(frozen=True)
class NoisyVector:
    """One metric released: `values[i]` = the clamped sum of cell i plus discrete Laplace
    noise of scale `scale` (same unit as the values). `sensitivity` (Δ) is the L1
    distance one user's day can move the true vector; `epsilon` = OpenDP's privacy map at
    Δ (<= the ε asked for); `accuracy` bounds |noise| with probability 1 - ALPHA."""

    values: tuple[int, ...]
    scale: float
    sensitivity: int
    epsilon: float
    accuracy: float


def check_epsilon(epsilon: float) -> None:
    """Raises ValueError unless MIN_EPSILON <= `epsilon` <= MAX_EPSILON."""
    if not (MIN_EPSILON <= epsilon <= MAX_EPSILON):
        raise ValueError(f"epsilon must be at least {MIN_EPSILON:g} and at most "
                         f"{MAX_EPSILON} per release, got {epsilon}")


def cell_sum(upper: int) -> dp.Transformation:
    """OpenDP: a cell's users' values (one integer per user) clamped to [0, `upper`] and
    summed. Its stability map at 1 (one user more or less) is `upper`."""
    clamp = dp.t.make_clamp(dp.vector_domain(dp.atom_domain(T=INTEGER)),
                            dp.symmetric_distance(), bounds=(0, upper))
    chained: dp.Transformation = clamp >> dp.t.then_sum()  # type: ignore[no-untyped-call]
    return chained


def laplace(scale: float) -> dp.Measurement:
    """OpenDP: discrete Laplace noise of `scale` on each entry of an integer vector, pure
    ε-DP under the L1 distance (MaxDivergence)."""
    return dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=INTEGER)),
                             dp.l1_distance(T=INTEGER), scale)


def calibrate(sensitivity: int, epsilon: float) -> float:
    """The smallest scale OpenDP finds for which `laplace(scale)` is (`sensitivity`,
    `epsilon`)-close; about sensitivity / epsilon (same unit as the values). The search
    runs between 0 and twice that, so a large quotient is found as well as a small one.

    Raises:
        ValueError: OpenDP's search finds no such scale or fails (the message says why).
    """
    upper = 2.0 * sensitivity / epsilon if epsilon > 0 else math.inf
    if not math.isfinite(upper):
        raise ValueError(f"no finite noise scale for sensitivity {sensitivity} at ε "
                         f"{epsilon:g}")
    try:
        scale = dp.binary_search_param(laplace, d_in=sensitivity, d_out=epsilon, T=float,
                                       bounds=(0.0, upper))
    except dp.OpenDPException as error:
        raise ValueError(f"OpenDP found no noise scale for sensitivity {sensitivity} at ε "
                         f"{epsilon:g}: {str(error).strip()}") from None
    return float(scale)


@dataclass(frozen=True)
class Calibrated:
    """One metric's OpenDP pipeline, built and checked, no noise drawn yet: `summed`
    clamps and sums a cell, `measurement` adds noise of `scale` calibrated to
    `sensitivity`, and OpenDP's privacy map there is `epsilon`."""

    upper: int
    summed: dp.Transformation
    measurement: dp.Measurement
    scale: float
    sensitivity: int
    epsilon: float

    def release(self, per_cell: Sequence[Sequence[int]]) -> NoisyVector:
        """Draw the noise: the clamped per-cell sums of `per_cell` (each cell: one value
        per user, unclamped) plus discrete Laplace noise. Spends the ε: charge first."""
        sums = [int(self.summed(list(values))) for values in per_cell]
        noisy = [int(v) for v in self.measurement(sums)] if sums else []
        return NoisyVector(
            values=tuple(noisy), scale=self.scale, sensitivity=self.sensitivity,
            epsilon=self.epsilon,
            accuracy=float(discrete_laplacian_scale_to_accuracy(self.scale, ALPHA)))


def calibrated(upper: int, max_cells: int, epsilon: float) -> Calibrated:
    """Build and check the OpenDP pipeline for per-user bound `upper`, each user in at
    most `max_cells` cells, at `epsilon`; draws no noise (safe before the charge).

    Raises:
        ValueError: epsilon <= 0 or not finite, upper < 1 or max_cells < 1, or OpenDP
            cannot build or calibrate the pipeline (the message says why).
        AssertionError: OpenDP's map at the sensitivity exceeds epsilon (never expected).
    """
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if upper < 1 or max_cells < 1:
        raise ValueError(f"upper and max_cells must be >= 1, got {upper}, {max_cells}")
    try:
        summed = cell_sum(upper)
        sensitivity = max_cells * int(summed.map(1))  # type: ignore[no-untyped-call]
        scale = calibrate(sensitivity, epsilon)
        measurement = laplace(scale)
        spent = float(measurement.map(sensitivity))  # type: ignore[no-untyped-call]
    except (dp.OpenDPException, OverflowError, TypeError) as error:
        raise ValueError(f"OpenDP cannot build the release for bound {upper} x "
                         f"{max_cells} cell(s) at ε {epsilon:g}: "
                         f"{str(error).strip()}") from None
    if spent > epsilon:  # binary_search_param returns a passing value; keep it honest
        raise AssertionError(f"OpenDP calibrated {scale} to {spent} > {epsilon}")
    return Calibrated(upper=upper, summed=summed, measurement=measurement, scale=scale,
                      sensitivity=sensitivity, epsilon=spent)


def release(per_cell: Sequence[Sequence[int]], upper: int, max_cells: int,
            epsilon: float) -> NoisyVector:
    """Release the clamped per-cell sums of `per_cell` (each cell: one value per user,
    unclamped) with noise for `epsilon`, each user in at most `max_cells` cells
    (`calibrated` then `Calibrated.release`).

    Raises:
        ValueError: as `calibrated`.
        AssertionError: as `calibrated`.
    """
    return calibrated(upper, max_cells, epsilon).release(per_cell)
