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


def parse_samples(log: str) -> list[Sample]:
    """The progress lines of ``log`` (the container's output), oldest first; other lines
    and malformed progress lines are skipped."""
    samples = []
    for line in log.splitlines():
        # kubectl/pods-log may prefix a timestamp; the prefix is searched, not anchored.
        _, found, payload = line.partition(PROGRESS_PREFIX + " ")
        if not found:
            continue
        try:
            data = json.loads(payload)
            samples.append(Sample(int(data["bytes"]), int(data.get("expectedBytes") or 0),
                                  float(data["changedAt"]), float(data["time"])))
        except (ValueError, KeyError, TypeError):
            continue
    return samples


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
        """Seconds left at the last minute's rate; None when the rate is 0 or unknown."""
        if not self.bytes_per_second or self.bytes_expected <= 0:
            return None
        return math.ceil(max(0, self.bytes_expected - self.bytes_present)
                         / self.bytes_per_second)

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
