"""Download progress from the download container's log (pure: text in, figures out).

The channel: the download script (render/templates/scripts/progress.sh.j2) prints one line
every ``render.download.PROGRESS_SECONDS`` (10 s)::

    deepseek-operator-progress {"bytes": 123, "expectedBytes": 456, "changedAt": T0, "time": T1}

``bytes``: bytes in the model directory (``du -sb``, partial files included);
``expectedBytes``: the source's own total (s3:// listing) or 0 when it gave none;
``changedAt``: when ``bytes`` last grew; ``time``: when measured (seconds since 1970, the
pod's clock). The operator reads the last ``TAIL_LINES`` lines through ``pods/log``
(``Cluster.download_log``) when it reconciles a running download (at most every
``handlers.DOWNLOAD_POLL_SECONDS``).

Why the log (docs/api.md, "Download progress"): it needs nothing in the download pod (no
port, no ServiceAccount token, no Prometheus scraping a short-lived pod), it works with any
image that has ``sh``, ``du`` and ``date``, and its last line is there for ``kubectl logs``
too. A termination message only carries the final figures; a metrics endpoint needs a
scraper that finds the pod in time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from deepseek_operator.api.conditions import rfc3339
from deepseek_operator.api.status import ModelCacheStatus
from deepseek_operator.render.download import PROGRESS_PREFIX, PROGRESS_SECONDS

RATE_WINDOW_SECONDS: Final = 60
"""The rate is measured over the samples of the last minute."""
TAIL_LINES: Final = RATE_WINDOW_SECONDS // PROGRESS_SECONDS + 4
"""Log lines read: a minute of samples and a few lines of other output."""
GIB: Final = 2**30
MIB: Final = 2**20


@dataclass(frozen=True)
class Sample:
    """One progress line: ``bytes`` present, ``expected`` total (0: unknown), ``changed_at``
    and ``time`` (seconds since 1970, the pod's clock)."""

    bytes: int
    expected: int
    changed_at: float
    time: float


MAX_BYTES: Final = 2**53
"""The largest byte count a progress line may carry (9 PiB): exact as a JSON/float number,
far within int64 (the status fields' format), far above any checkpoint."""
MAX_TIME: Final = 253402300799.0
"""The largest ``time``/``changedAt`` a progress line may carry: 9999-12-31T23:59:59Z, the
last second RFC 3339 (and ``status.modelCache``) can express."""


def parse_samples(log: str) -> list[Sample]:
    """The progress lines of ``log`` (the container's output), oldest first; other lines
    and malformed progress lines are skipped.

    A progress line starts with ``PROGRESS_PREFIX`` and a space (the operator reads the log
    without timestamps); a line that only contains it elsewhere is other output. Malformed:
    not a JSON object, ``bytes``/``expectedBytes`` not a whole number in [0, MAX_BYTES],
    ``changedAt``/``time`` not a finite number in [0, MAX_TIME]. The log is the download
    image's output, not trusted: no line of it can make this (or the status computed from
    it) raise.
    """
    samples = []
    for line in log.splitlines():
        if not line.startswith(PROGRESS_PREFIX + " "):
            continue
        sample = _sample(line.removeprefix(PROGRESS_PREFIX + " "))
        if sample is not None:
            samples.append(sample)
    return samples


def _sample(payload: str) -> Sample | None:
    """The sample of one progress line's JSON ``payload``; None when it is malformed."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # bad JSON, too many digits, nested too deeply
        return None
    if not isinstance(data, dict):
        return None
    present = _count(data.get("bytes"))
    expected = _count(data.get("expectedBytes") or 0)
    changed_at = _moment(data.get("changedAt"))
    at = _moment(data.get("time"))
    if present is None or expected is None or changed_at is None or at is None:
        return None
    return Sample(present, expected, changed_at, at)


def _count(value: object) -> int | None:
    """``value`` as a byte count: a whole number (``12`` or ``12.0``) in [0, MAX_BYTES]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if 0 <= value <= MAX_BYTES else None


def _moment(value: object) -> float | None:
    """``value`` as seconds since 1970: a finite number in [0, MAX_TIME]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    moment = float(value) if abs(value) < 2 * MAX_TIME else math.inf  # huge ints too
    return moment if 0 <= moment <= MAX_TIME else None


@dataclass(frozen=True)
class Progress:
    """Figures of a running download.

    ``bytes_present`` and ``bytes_expected`` in bytes (expected 0: unknown);
    ``bytes_per_second`` over the last minute (None with fewer than two samples in it);
    ``stalled_seconds``: seconds since the bytes last grew, at the last sample;
    ``sample_time`` and ``changed_at``: seconds since 1970 (the pod's clock).
    """

    bytes_present: int
    bytes_expected: int
    bytes_per_second: float | None
    stalled_seconds: float
    sample_time: float
    changed_at: float

    @property
    def percent(self) -> float | None:
        """bytes_present / bytes_expected x 100, at most 100, to 0.1; None when unknown."""
        if self.bytes_expected <= 0:
            return None
        return min(100.0, round(100.0 * self.bytes_present / self.bytes_expected, 1))

    @property
    def eta_seconds(self) -> int | None:
        """Seconds left at the last minute's rate; None when the rate is 0 or unknown, or
        when it is so low that the time left is beyond MAX_TIME (no estimate, and no int64)."""
        if not self.bytes_per_second or self.bytes_expected <= 0:
            return None
        left = max(0, self.bytes_expected - self.bytes_present) / self.bytes_per_second
        return math.ceil(left) if left <= MAX_TIME else None

    def summary(self) -> str:
        """One line for a condition message, e.g. ``12.0 GiB of 641.7 GiB (1.9 %), 95.0
        MiB/s over the last minute, about 1h53m left``."""
        text = f"{self.bytes_present / GIB:.1f} GiB"
        if self.bytes_expected > 0:
            text += f" of {self.bytes_expected / GIB:.1f} GiB ({self.percent:.1f} %)"
        if self.bytes_per_second is not None:
            text += f", {self.bytes_per_second / MIB:.1f} MiB/s over the last minute"
        eta = self.eta_seconds
        if eta is not None:
            text += f", about {duration(eta)} left"
        return text

    def to_status(self, deadline_seconds: int | None) -> ModelCacheStatus:
        """The figures as ``status.modelCache``; rates rounded to 1 KiB/s so that noise
        alone does not change the status."""
        rate = None if self.bytes_per_second is None else float(
            round(self.bytes_per_second / 1024) * 1024)
        return ModelCacheStatus.model_validate({
            "bytesPresent": self.bytes_present,
            "bytesExpected": self.bytes_expected or None,
            "percent": self.percent,
            "bytesPerSecond": rate,
            "etaSeconds": self.eta_seconds,
            "lastProgressTime": rfc3339(self.changed_at),
            "sampleTime": rfc3339(self.sample_time),
            "deadlineSeconds": deadline_seconds,
        })


def progress(samples: Sequence[Sample], expected_fallback: float | None,
             now: float | None = None) -> Progress | None:
    """Figures from ``samples`` (oldest first); None without any.

    ``expected_fallback``: bytes of the checkpoint by the catalog, used when the source gave
    no total. The rate is (last bytes - first bytes) / (last time - first time) over the
    samples no older than RATE_WINDOW_SECONDS before the last one. ``now``: when the log
    was read (seconds since 1970, the operator's clock): a download pod that hung and
    stopped printing stalls from its last growth to now, not to its last line.
    """
    if not samples:
        return None
    last = samples[-1]
    window = [s for s in samples if last.time - s.time <= RATE_WINDOW_SECONDS]
    first = window[0]
    rate = None
    if last.time > first.time:
        rate = max(0.0, (last.bytes - first.bytes) / (last.time - first.time))
    expected = last.expected or int(expected_fallback or 0)
    return Progress(bytes_present=last.bytes, bytes_expected=expected, bytes_per_second=rate,
                    stalled_seconds=max(0.0, max(last.time, now or 0.0) - last.changed_at),
                    sample_time=last.time, changed_at=last.changed_at)


def duration(seconds: float) -> str:
    """``seconds`` as ``2h05m``, ``4m10s`` or ``35s``."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
