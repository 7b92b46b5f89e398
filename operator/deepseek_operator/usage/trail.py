"""Read the gateway's audit trail (gateway/audit.py) into the allowed requests it records.

A trail is one or more audit files, each with its rotations: `FILE.<n>` ... `FILE.1`,
`FILE` (oldest first). Only lines shaped as the gateway writes them count; anything else
(not JSON, a field missing or of the wrong type) is skipped and counted as malformed,
never fatal. Only allowed requests (`allowed: true`) are usage; denied ones are counted
and skipped.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeGuard

from .contributions import Cell

# RFC 3339 in UTC as `audit.rfc3339` writes it: 2026-11-30T20:41:07.123Z
_TIME: Final = re.compile(r"^(\d{4}-\d{2}-\d{2})T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_ROTATED: Final = re.compile(r"^\.(\d+)$")
WARNINGS_KEPT: Final = 5


class MalformedLineError(ValueError):
    """A line that is not an audit line of the gateway; the message says why."""


@dataclass(frozen=True)
class Request:
    """One allowed request: its UTC day (of `time`, the arrival), the user's name, its
    cell, and its tokens (prompt + completion; an unknown count is 0)."""

    day: datetime.date
    user: str
    cell: Cell
    tokens: int


@dataclass
class Trail:
    """What reading a trail found. `requests` are the allowed ones; the counts are for
    the operator's eyes only (stderr), they are not differentially private."""

    requests: list[Request] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    lines: int = 0
    denied: int = 0
    malformed: int = 0
    warnings: list[str] = field(default_factory=list)  # the first WARNINGS_KEPT reasons


def audit_files(path: Path) -> list[Path]:
    """`path`'s rotations, oldest first (`FILE.3`, `FILE.2`, `FILE.1`), then `path` itself
    if it exists. Files named `FILE.<anything else>` (the ledger, say) are not audit files.
    """
    rotated: list[tuple[int, Path]] = []
    if path.parent.is_dir():
        prefix = path.name
        for candidate in path.parent.iterdir():
            if candidate.name.startswith(prefix):
                match = _ROTATED.match(candidate.name[len(prefix):])
                if match and candidate.is_file():
                    rotated.append((int(match.group(1)), candidate))
    files = [p for _, p in sorted(rotated, reverse=True)]
    if path.is_file():
        files.append(path)
    return files


def parse_line(text: str) -> Request | None:
    """The allowed request `text` records, or None for a denied one.

    Raises:
        MalformedLineError: `text` is not an audit line as the gateway writes it.
    """
    try:
        document = json.loads(text)
    except ValueError:
        raise MalformedLineError("not JSON") from None
    if not isinstance(document, dict):
        raise MalformedLineError("not a JSON object")
    time = document.get("time")
    match = _TIME.match(time) if isinstance(time, str) else None
    if match is None:
        raise MalformedLineError("no RFC 3339 UTC `time`")
    try:
        day = datetime.date.fromisoformat(match.group(1))
    except ValueError:
        raise MalformedLineError(f"`time` is not a date: {time!r}") from None
    allowed = document.get("allowed")
    if not isinstance(allowed, bool):
        raise MalformedLineError("`allowed` is not true or false")
    user = document.get("user")
    if not isinstance(user, dict):
        raise MalformedLineError("`user` is not an object")
    if not allowed:
        return None
    name = user.get("name")
    namespace = document.get("namespace")
    deployment = document.get("deployment")
    role = document.get("role")
    if not (_text(name) and _text(namespace) and _text(deployment)):
        raise MalformedLineError("an allowed line without user.name, namespace or deployment")
    if not (role is None or _text(role)):
        raise MalformedLineError("`role` is neither a name nor null")
    tokens = _count(document, "prompt_tokens") + _count(document, "completion_tokens")
    return Request(day=day, user=name, cell=Cell(namespace, deployment, role), tokens=tokens)


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value != ""


def _count(document: dict[str, Any], key: str) -> int:
    if key not in document:
        raise MalformedLineError(f"no `{key}`")
    value = document[key]
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedLineError(f"`{key}` is not a count of tokens")
    return value


def read_trail(paths: Sequence[Path]) -> Trail:
    """Every line of every audit file of `paths` (each with its rotations, see
    `audit_files`); a file that cannot be read or decoded counts as a warning.

    Raises:
        FileNotFoundError: some path has neither a file nor rotations.
    """
    trail = Trail()
    for path in paths:
        files = audit_files(path)
        if not files:
            raise FileNotFoundError(f"no audit file {path} (nor {path}.1 ...)")
        trail.files += files
        for file in files:
            try:
                with file.open(encoding="utf-8", errors="replace") as stream:
                    _read_lines(trail, file, stream)
            except OSError as error:
                _warn(trail, f"{file}: cannot read: {error}")
    return trail


def _read_lines(trail: Trail, file: Path, lines: Iterable[str]) -> None:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        trail.lines += 1
        try:
            request = parse_line(line)
        except MalformedLineError as error:
            trail.malformed += 1
            _warn(trail, f"{file}:{number}: skipped, {error}")
            continue
        if request is None:
            trail.denied += 1
        else:
            trail.requests.append(request)


def _warn(trail: Trail, message: str) -> None:
    if len(trail.warnings) < WARNINGS_KEPT:
        trail.warnings.append(message)
