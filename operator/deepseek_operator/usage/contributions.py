"""Group allowed requests per UTC day, cell and user, and bound what one user adds.

A cell is a (namespace, deployment, role) key. For each day, each user's requests and
tokens are summed per cell; a user who used more than `Bounds.max_cells` cells that day
keeps only the `max_cells` with the most requests (ties: the cell that sorts first), so
one user's day touches at most `max_cells` cells. The values per (user, cell) are kept
as they are here: the mechanism clamps them to `max_requests` and `max_tokens` (OpenDP's
clamp), so one user's day moves each of the two released vectors by at most
`max_cells x max_requests` requests and `max_cells x max_tokens` tokens in L1.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .limits import MAX_CELLS, MAX_REQUESTS, MAX_TOKENS

if TYPE_CHECKING:
    from .trail import Request


@dataclass(frozen=True)
class Cell:
    """One released key: namespace, deployment and the `spec.access` role (None when the
    permission came from RBAC the operator did not render)."""

    namespace: str
    deployment: str
    role: str | None

    def sort_key(self) -> tuple[str, str, str]:
        """Order of cells in a release: namespace, deployment, role (None first)."""
        return (self.namespace, self.deployment, self.role or "")

    def label(self) -> str:
        """`namespace/deployment/role`, `-` for no role (the form `--key` takes)."""
        return f"{self.namespace}/{self.deployment}/{self.role or '-'}"


@dataclass(frozen=True)
class Bounds:
    """How much one user's day may add, before noise.

    max_cells: cells (deployment, role) one user counts in per UTC day, 1..MAX_CELLS.
    max_requests: requests one user counts per cell per day, 1..MAX_REQUESTS (more are
        clamped).
    max_tokens: tokens (prompt + completion) one user counts per cell per day,
        1..MAX_TOKENS.
    """

    max_cells: int
    max_requests: int
    max_tokens: int

    def __post_init__(self) -> None:
        """Raises ValueError when a bound is below 1 or above its limit (limits.py)."""
        for name, most in (("max_cells", MAX_CELLS), ("max_requests", MAX_REQUESTS),
                           ("max_tokens", MAX_TOKENS)):
            value = getattr(self, name)
            if not 1 <= value <= most:
                raise ValueError(f"{name} must be >= 1 and <= {most}, got {value}")


@dataclass(frozen=True)
class Usage:
    """One user's usage of one cell on one day (unclamped): requests and tokens."""

    requests: int
    tokens: int


@dataclass(frozen=True)
class DayContributions:
    """Per cell of `cells` (in that order), one `Usage` per user who counts in it that
    day. `dropped` is the number of (user, cell) pairs left out by the `max_cells` cap and
    `outside` the requests in cells not in `cells`; both are for the operator only (not
    differentially private)."""

    day: datetime.date
    cells: tuple[Cell, ...]
    per_cell: tuple[tuple[Usage, ...], ...]
    dropped: int
    outside: int


def cells_in(requests: Iterable[Request]) -> tuple[Cell, ...]:
    """Every cell the requests name, sorted. A key set taken from the data is not
    protected by the noise (docs/usage-report.md): pass fixed keys when that matters."""
    return tuple(sorted({r.cell for r in requests}, key=Cell.sort_key))


def contributions(requests: Iterable[Request], day: datetime.date, cells: Sequence[Cell],
                  max_cells: int) -> DayContributions:
    """`day`'s requests grouped per cell and user, each user in at most `max_cells` of
    `cells` (see the module's docstring). Requests of other days are ignored; those of
    this day in cells not in `cells` are left out (counted in `outside`)."""
    wanted = set(cells)
    per_user: dict[str, dict[Cell, list[int]]] = defaultdict(dict)
    outside = 0
    for request in requests:
        if request.day != day:
            continue
        if request.cell not in wanted:
            outside += 1
            continue
        totals = per_user[request.user].setdefault(request.cell, [0, 0])
        totals[0] += 1
        totals[1] += request.tokens
    kept: dict[Cell, list[Usage]] = {cell: [] for cell in cells}
    dropped = 0
    for user_cells in per_user.values():
        ranked = sorted(user_cells.items(), key=lambda item: (-item[1][0], item[0].sort_key()))
        dropped += max(0, len(ranked) - max_cells)
        for cell, (count, tokens) in ranked[:max_cells]:
            kept[cell].append(Usage(count, tokens))
    return DayContributions(day=day, cells=tuple(cells),
                            per_cell=tuple(tuple(kept[cell]) for cell in cells),
                            dropped=dropped, outside=outside)
