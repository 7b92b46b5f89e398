"""The privacy budget ledger: the ε each release spent, per UTC day of data.

A JSON file:

    {"version": 1, "days": {"2026-11-29": [
        {"epsilon": 0.5, "released_at": "2026-11-30T08:00:01.234Z"}]}}

A release covering days D1..Dn spends its ε on each of them (the unit of privacy is a
user's day, so days compose in parallel; releases of the same day add up, sequential
composition). `charge` refuses a release that would take any of its days past the daily
budget and then leaves the file as it was. The file is replaced atomically (a temporary
file in the same directory, fsync, rename) under an exclusive lock on `LEDGER.lock`
(fcntl.flock), so two releases at once are serialised and neither overspends.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

VERSION: Final = 1
TOLERANCE: Final = 1e-9  # float sums of ε: 0.1 + 0.2 must fit a budget of 0.3


class LedgerError(RuntimeError):
    """The ledger cannot be read or written, or is not a ledger."""


class BudgetExceededError(RuntimeError):
    """The release would take a day past its budget; the ledger is unchanged.

    `day`, `spent` (ε already spent that day), `epsilon` (asked), `budget`.
    """

    def __init__(self, day: datetime.date, spent: float, epsilon: float, budget: float) -> None:
        """Record the refused charge; the message names the day and the figures."""
        self.day, self.spent, self.epsilon, self.budget = day, spent, epsilon, budget
        super().__init__(
            f"refused: {day} has spent ε {spent:g} of its daily budget {budget:g}; this "
            f"release (ε {epsilon:g}) would bring it to {spent + epsilon:g}")


def read(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The ledger's days ({"YYYY-MM-DD": [entry, ...]}); empty when the file is absent.

    Raises:
        LedgerError: the file cannot be read or is not a ledger.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise LedgerError(f"cannot read the ledger {path}: {error}") from error
    try:
        document = json.loads(text)
        days = document["days"]
        if document.get("version") != VERSION or not isinstance(days, dict):
            raise ValueError("not a version 1 ledger")
        for day, entries in days.items():
            datetime.date.fromisoformat(day)
            if not all(isinstance(e, dict) and _epsilon(e) >= 0 for e in entries):
                raise ValueError(f"bad entries for {day}")
    except (ValueError, KeyError, TypeError) as error:
        raise LedgerError(f"{path} is not a usage-report ledger ({error}); not touching "
                          "it") from None
    return days


def _epsilon(entry: dict[str, Any]) -> float:
    value = entry["epsilon"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("epsilon is not a number")
    return float(value)


def spent(days: dict[str, list[dict[str, Any]]], day: datetime.date) -> float:
    """ε spent on `day` so far."""
    return sum(_epsilon(e) for e in days.get(day.isoformat(), []))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`.lock while the block runs (blocks until free).

    Raises:
        LedgerError: the lock file cannot be opened.
    """
    try:
        handle = open(f"{path}.lock", "a")  # noqa: SIM115 - held for the block
    except OSError as error:
        raise LedgerError(f"cannot open the ledger's lock {path}.lock: {error}") from error
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def charge(path: Path, days: Sequence[datetime.date], epsilon: float, budget: float,
           released_at: str) -> dict[datetime.date, float]:
    """Record a release of ε `epsilon` on each of `days`, at `released_at` (RFC 3339),
    if every day stays within `budget`; returns each day's ε spent after it.

    Raises:
        BudgetExceededError: some day would pass `budget` (nothing written).
        LedgerError: the ledger cannot be read or written (nothing charged).
    """
    with locked(path):
        ledger = read(path)
        for day in days:
            before = spent(ledger, day)
            if before + epsilon > budget + TOLERANCE:
                raise BudgetExceededError(day, before, epsilon, budget)
        for day in days:
            ledger.setdefault(day.isoformat(), []).append(
                {"epsilon": epsilon, "released_at": released_at, "budget": budget})
        write(path, ledger)
        return {day: spent(ledger, day) for day in days}


def write(path: Path, days: dict[str, list[dict[str, Any]]]) -> None:
    """Replace the ledger with `days` atomically (temporary file, fsync, rename).

    Raises:
        LedgerError: it cannot be written (the old file is left in place).
    """
    text = json.dumps({"version": VERSION, "days": dict(sorted(days.items()))}, indent=1)
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise LedgerError(f"cannot write the ledger {path}: {error}") from error
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise LedgerError(f"cannot write the ledger {path}: {error}") from error
