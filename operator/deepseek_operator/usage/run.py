"""One usage report: parse the trail, bound contributions, calibrate the noise, charge
the budget, add noise.

The order matters for the budget: everything that can be checked without drawing noise
(the options, the trail, OpenDP's measurements and their scales) is done before the
ledger is charged, so a refused or impossible release charges nothing; the ledger is
charged (under its lock) before any noisy value exists, so a value is never shown without
its ε on the ledger. A failure after the charge keeps the charge (noise may have been
drawn) and says so (ReleaseFailedError).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from . import ledger
from .contributions import Bounds, Cell, cells_in, contributions
from .limits import MIN_METRIC_EPSILON
from .mechanism import calibrated, check_epsilon
from .report import Release
from .trail import Trail, read_trail


class UsageError(ValueError):
    """Invalid options or input, or noise that cannot be calibrated: the message says
    which. Nothing was charged."""


class ReleaseFailedError(RuntimeError):
    """The release failed after its ε was charged; the charge stays (noise may have been
    drawn, so taking it back could leak). The message says so and why."""


@dataclass(frozen=True)
class UsageOptions:
    """What to release.

    audit_files: the gateway's audit files (each read with its rotations).
    days: UTC days to release (each charged `epsilon`).
    keys: the cells to release; None: every cell found in the trail (not protected).
    bounds: per-user clamping (contributions.Bounds).
    epsilon: ε of this release per day, limits.MIN_EPSILON <= ε <= limits.MAX_EPSILON.
    requests_share: the part of ε for request counts (0 < share < 1); the rest is tokens.
    daily_budget: ε a day may spend over all releases (> 0).
    ledger: the budget ledger's path.
    """

    audit_files: tuple[Path, ...]
    days: tuple[datetime.date, ...]
    keys: tuple[Cell, ...] | None
    bounds: Bounds
    epsilon: float
    requests_share: float
    daily_budget: float
    ledger: Path


@dataclass(frozen=True)
class Diagnostics:
    """About the raw input, for the operator's stderr only (not differentially private):
    what reading the trail found, (user, cell) pairs left out by the cell cap, and
    requests in cells outside the keys."""

    trail: Trail
    dropped: int
    outside: int

    def lines(self) -> list[str]:
        """Human-readable lines, warnings first-few only."""
        trail = self.trail
        lines = [f"read {trail.lines} audit line(s) from {len(trail.files)} file(s): "
                 f"{len(trail.requests)} allowed, {trail.denied} denied, {trail.malformed} "
                 "malformed (skipped)"]
        lines += [f"warning: {w}" for w in trail.warnings]
        if trail.malformed > len(trail.warnings):
            lines.append(f"warning: {trail.malformed} malformed line(s) in all")
        if self.dropped:
            lines.append(f"note: {self.dropped} (user, cell) pair(s) over --max-cells-per-user "
                         "left out")
        if self.outside:
            lines.append(f"note: {self.outside} request(s) in cells not among --key left out")
        return lines


def usage_report(options: UsageOptions,
                 now: datetime.datetime) -> tuple[Release, Diagnostics]:
    """Release `options.days` and record the spend at `now` (UTC); returns the release
    and diagnostics about the raw input (for the operator's stderr).

    Raises:
        UsageError: ε out of range, no day, a bad share or budget, no audit file, no
            cell to release, a metric's ε below MIN_METRIC_EPSILON, noise OpenDP cannot
            calibrate (ledger unchanged).
        ledger.BudgetExceededError: a day would pass its budget (ledger unchanged).
        ledger.LedgerError: the ledger cannot be read or written.
        ReleaseFailedError: anything failed after the charge (the charge stays).
    """
    try:
        check_epsilon(options.epsilon)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not options.days or len(set(options.days)) != len(options.days):
        raise UsageError("give each day to release once")
    if not 0 < options.requests_share < 1:
        raise UsageError(f"requests_share must be between 0 and 1, got "
                         f"{options.requests_share}")
    split = {"requests": options.epsilon * options.requests_share,
             "tokens": options.epsilon * (1 - options.requests_share)}
    for metric, part in split.items():
        if part < MIN_METRIC_EPSILON:
            raise UsageError(f"--requests-share {options.requests_share:g} of --epsilon "
                             f"{options.epsilon:g} leaves {metric} ε {part:g}, below "
                             f"{MIN_METRIC_EPSILON:g}: the noise would drown every count")
    if not options.daily_budget > 0:
        raise UsageError(f"the daily budget must be > 0, got {options.daily_budget}")
    try:
        trail = read_trail(options.audit_files)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    keys_from_data = options.keys is None
    cells = cells_in(trail.requests) if options.keys is None else tuple(
        sorted(set(options.keys), key=Cell.sort_key))
    if not cells:
        raise UsageError("nothing to release: no --key given and the trail has no allowed "
                         "request")
    days = tuple(sorted(options.days))
    per_day = [contributions(trail.requests, day, cells, options.bounds.max_cells)
               for day in days]
    bounds = options.bounds
    epsilon_requests = options.epsilon * options.requests_share
    try:
        request_noise = calibrated(bounds.max_requests, bounds.max_cells, epsilon_requests)
        token_noise = calibrated(bounds.max_tokens, bounds.max_cells,
                                 options.epsilon - epsilon_requests)
    except (ValueError, AssertionError) as error:
        raise UsageError(f"cannot calibrate the noise, nothing charged: {error}") from None
    released_at = rfc3339(now)
    spent = ledger.charge(options.ledger, days, options.epsilon, options.daily_budget,
                          released_at)
    try:
        requests = request_noise.release(
            [[u.requests for u in users] for d in per_day for users in d.per_cell])
        tokens = token_noise.release(
            [[u.tokens for u in users] for d in per_day for users in d.per_cell])
    except Exception as error:  # any failure once ε is spent is reported, not raised raw
        charged = ", ".join(day.isoformat() for day in days)
        raise ReleaseFailedError(
            f"the release failed after its budget was spent: ε {options.epsilon:g} stays "
            f"charged to {charged} in {options.ledger} (noise may have been drawn): "
            f"{type(error).__name__}: {error}") from error
    return Release(days=days, cells=cells, keys_from_data=keys_from_data, bounds=bounds,
                   epsilon=options.epsilon, requests=requests, tokens=tokens, spent=spent,
                   daily_budget=options.daily_budget, released_at=released_at), Diagnostics(
        trail=trail, dropped=sum(d.dropped for d in per_day),
        outside=sum(d.outside for d in per_day))


def rfc3339(moment: datetime.datetime) -> str:
    """`moment` in UTC as RFC 3339 with milliseconds, as the audit trail writes times."""
    utc = moment.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
