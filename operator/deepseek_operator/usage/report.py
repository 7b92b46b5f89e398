"""A release as JSON and as a table (pure formatting).

Everything here is differentially private or public: the noisy values, the parameters
(ε, bounds, sensitivity, noise scale) and the budget spent. Counts about the raw trail
(lines, malformed, clamped) are not, and stay out of the release (run.py prints them to
stderr for the operator).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .contributions import Bounds, Cell
from .mechanism import ALPHA, NoisyVector

UNIT: Final = "one user's requests in one UTC day (all deployments and roles)"
NOISE: Final = "discrete Laplace (OpenDP make_laplace)"


@dataclass(frozen=True)
class Release:
    """One published release. `requests.values` and `tokens.values` hold one entry per
    (day, cell), days in `days` order, cells in `cells` order within each day. `spent`:
    ε spent per day after this release, of `daily_budget`."""

    days: tuple[datetime.date, ...]
    cells: tuple[Cell, ...]
    keys_from_data: bool
    bounds: Bounds
    epsilon: float
    requests: NoisyVector
    tokens: NoisyVector
    spent: dict[datetime.date, float]
    daily_budget: float
    released_at: str

    def rows(self) -> list[tuple[datetime.date, Cell, int, int]]:
        """(day, cell, noisy requests, noisy tokens), in release order."""
        keys = [(day, cell) for day in self.days for cell in self.cells]
        return [(day, cell, r, t) for (day, cell), r, t
                in zip(keys, self.requests.values, self.tokens.values, strict=True)]


def _metric(vector: NoisyVector, bound: int, unit: str) -> dict[str, Any]:
    return {"epsilon": vector.epsilon, "noise": NOISE, "scale": vector.scale,
            "sensitivity": vector.sensitivity, "per_user_cell_bound": bound, "unit": unit,
            "accuracy": {"alpha": ALPHA, "within": vector.accuracy}}


def document(release: Release) -> dict[str, Any]:
    """The release as a JSON-able dict: parameters, the noise per metric and the rows."""
    return {
        "released_at": release.released_at,
        "unit_of_privacy": UNIT,
        "epsilon": release.epsilon,
        "daily_budget": release.daily_budget,
        "spent": {day.isoformat(): round(eps, 12) for day, eps in release.spent.items()},
        "bounds": {"max_cells_per_user": release.bounds.max_cells,
                   "max_requests_per_user_cell": release.bounds.max_requests,
                   "max_tokens_per_user_cell": release.bounds.max_tokens},
        "keys_from_data": release.keys_from_data,
        "requests": _metric(release.requests, release.bounds.max_requests, "requests"),
        "tokens": _metric(release.tokens, release.bounds.max_tokens, "tokens"),
        "rows": [{"day": day.isoformat(), "namespace": cell.namespace,
                  "deployment": cell.deployment, "role": cell.role,
                  "requests": requests, "tokens": tokens}
                 for day, cell, requests, tokens in release.rows()],
    }


def to_json(release: Release) -> str:
    """`document` as indented JSON."""
    return json.dumps(document(release), indent=2, ensure_ascii=False)


def to_table(release: Release) -> str:
    """The rows as a table, then the parameters and noise scales in a few lines."""
    rows = [[day.isoformat(), cell.namespace, cell.deployment, cell.role or "-",
             str(requests), str(tokens)]
            for day, cell, requests, tokens in release.rows()]
    headers = ["DAY", "NAMESPACE", "DEPLOYMENT", "ROLE", "REQUESTS", "TOKENS"]
    request, token = release.requests, release.tokens
    spent = ", ".join(f"{day} {eps:g}" for day, eps in sorted(release.spent.items()))
    notes = [
        f"differential privacy: unit = {UNIT}; ε {release.epsilon:g} per day released "
        f"(requests {request.epsilon:g} + tokens {token.epsilon:g})",
        f"budget: ε spent per day of {release.daily_budget:g}: {spent}",
        f"noise: {NOISE}; requests scale {request.scale:g} (sensitivity "
        f"{request.sensitivity}), tokens scale {token.scale:g} (sensitivity "
        f"{token.sensitivity}); |noise| <= {request.accuracy:.0f} requests, "
        f"{token.accuracy:.0f} tokens with probability {1 - ALPHA:g}",
        f"bounds per user and day: {release.bounds.max_cells} cell(s), "
        f"{release.bounds.max_requests} requests and {release.bounds.max_tokens} tokens per "
        "cell (more is clamped: totals are biased low)",
    ]
    if release.keys_from_data:
        notes.append("keys: taken from the audit trail, not protected (pass --key to fix "
                     "them)")
    return format_table(headers, rows) + "\n\n" + "\n".join(notes)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces (as cli.format_table)."""
    lines = [list(headers), *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines)
