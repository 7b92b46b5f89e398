"""The audit trail: one JSON line per request, allowed or denied.

`audit_line` shapes a record (pure); `AuditSink` writes it to stdout and, optionally, to a
file with size-based rotation (`FILE`, `FILE.1` ... `FILE.<backups>`). The file is opened in
append mode, so lines written before a restart stay and the sizes carry on.

What a line never holds: the bearer token, the prompt or the completion, or any text a
detector matched (data protection records detector names and counts only). The request
body is recorded only as an HMAC-SHA256 under the gateway's digest key (`request_hmac`):
equal bodies give equal values under one key, and without the key a guessed prompt (or the
SSN inside a known template) cannot be confirmed from the trail.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


@dataclass
class AuditRecord:
    """What the gateway learned about one request; `audit_line` turns it into JSON.

    Times are seconds (floats); `latency_seconds` from the request's arrival to its last
    byte, `ttfb_seconds` to the first byte of the engine's answer (None when the engine
    was never asked).
    """

    started: float  # wall clock, seconds since the epoch
    client: str | None
    method: str
    path: str
    user: str | None = None
    uid: str | None = None
    groups: list[str] = field(default_factory=list)
    namespace: str | None = None
    deployment: str | None = None
    model: str | None = None
    permission: str | None = None
    role: str | None = None
    allowed: bool = False
    request_hmac: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    status: int = 0
    error: str | None = None
    latency_seconds: float | None = None
    ttfb_seconds: float | None = None
    stream: bool = False
    data_protection: str | None = None  # the policy's mode, when the prompt was inspected
    prompt_detectors: dict[str, int] | None = None  # matches per detector name
    completion_detectors: dict[str, int] | None = None
    prompt_sensitivity: float | None = None  # detect.score, [0, 1]
    completion_sensitivity: float | None = None


def rfc3339(epoch_seconds: float) -> str:
    """`epoch_seconds` as RFC 3339 in UTC with milliseconds, e.g.
    `2026-11-30T20:41:07.123Z`."""
    moment = datetime.datetime.fromtimestamp(epoch_seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def audit_line(record: AuditRecord) -> str:
    """The JSON line (no trailing newline) for `record`. Fields, always present (null when
    unknown): time, user {name, uid, groups}, client, method, path, namespace, deployment,
    model, permission, role, allowed, status, error, request_hmac, prompt_tokens,
    completion_tokens, stream, latency_seconds, ttfb_seconds, sensitivity, detectors,
    data_protection.

    Data protection (null where nothing was inspected: a request refused before routing,
    a completion that never came): `sensitivity` {prompt, completion} scores in [0, 1];
    `detectors` {prompt, completion} matches per detector name (only names that fired);
    `data_protection` the deployment's mode (audit, redact, block)."""
    inspected = record.data_protection is not None
    document: dict[str, Any] = {
        "time": rfc3339(record.started),
        "user": {"name": record.user, "uid": record.uid, "groups": list(record.groups)},
        "client": record.client,
        "method": record.method,
        "path": record.path,
        "namespace": record.namespace,
        "deployment": record.deployment,
        "model": record.model,
        "permission": record.permission,
        "role": record.role,
        "allowed": record.allowed,
        "status": record.status,
        "error": record.error,
        "request_hmac": record.request_hmac,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "stream": record.stream,
        "latency_seconds": _round(record.latency_seconds),
        "ttfb_seconds": _round(record.ttfb_seconds),
        "sensitivity": {"prompt": record.prompt_sensitivity,
                        "completion": record.completion_sensitivity} if inspected else None,
        "detectors": {"prompt": record.prompt_detectors,
                      "completion": record.completion_detectors} if inspected else None,
        "data_protection": record.data_protection,
    }
    return json.dumps(document, ensure_ascii=True, separators=(",", ":"))


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)


class AuditWriteError(OSError):
    """An audit line could not be written (the request it describes fails unless the
    gateway runs with --audit-fail-open)."""


class AuditSink:
    """Writes audit lines to `stream` (stdout by default) and to `path` when given.

    The file rotates when a line would take it past `max_bytes` (>= 1): FILE becomes
    FILE.1, FILE.1 becomes FILE.2 ... up to `backups` (0: the file is truncated instead).
    Every line is flushed before `write` returns. Thread-safe.
    """

    def __init__(self, path: Path | None, *, max_bytes: int, backups: int,
                 stream: TextIO | None = None) -> None:
        """Open (append) or create `path`; its directory must exist.

        Raises:
            ValueError: max_bytes < 1 or backups < 0.
            AuditWriteError: the file cannot be opened.
        """
        if max_bytes < 1 or backups < 0:
            raise ValueError(f"max_bytes must be >= 1 and backups >= 0, got {max_bytes}, "
                             f"{backups}")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._size = 0
        if path is not None:
            self._open()

    def write(self, line: str) -> None:
        """Write `line` plus a newline to the stream and the file.

        Raises:
            AuditWriteError: either write failed (the line may be in one of them).
        """
        data = line + "\n"
        with self._lock:
            try:
                self._stream.write(data)
                self._stream.flush()
                if self._file is not None:
                    size = len(data.encode())
                    if self._size and self._size + size > self.max_bytes:
                        self._rotate()
                    self._file.write(data)
                    self._file.flush()
                    self._size += size
            except (OSError, ValueError) as error:  # ValueError: write to a closed file
                raise AuditWriteError(f"cannot write the audit line: {error}") from error

    def close(self) -> None:
        """Close the file (the stream stays open)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open(self) -> None:
        assert self.path is not None
        try:
            self._file = self.path.open("a", encoding="utf-8")
            self._size = self._file.tell()
        except OSError as error:
            raise AuditWriteError(f"cannot open the audit file {self.path}: {error}") from error

    def _rotate(self) -> None:
        assert self.path is not None and self._file is not None
        self._file.close()
        self._file = None
        if self.backups == 0:
            self.path.write_text("", encoding="utf-8")
        else:
            for index in range(self.backups - 1, 0, -1):
                older = Path(f"{self.path}.{index}")
                if older.exists():
                    os.replace(older, f"{self.path}.{index + 1}")
            os.replace(self.path, f"{self.path}.1")
        self._open()
