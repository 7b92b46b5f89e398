"""Download progress: figures from progress lines, status.modelCache, stall, deadline, and
the number of status writes one download costs."""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes.client import ApiClient

from deepseek_operator.api import InvalidSpecError, parse_deployment
from deepseek_operator.api.conditions import (
    REASON_DOWNLOAD_FAILED,
    REASON_DOWNLOAD_STALLED,
    REASON_DOWNLOADED,
    REASON_DOWNLOADING,
)
from deepseek_operator.api.status import ConditionType, DeepSeekDeploymentStatus
from deepseek_operator.autoscaler.loop import Autoscaler
from deepseek_operator.controller import reconciler as reconciler_module
from deepseek_operator.controller.cache import ChildCache
from deepseek_operator.controller.cluster import Cluster
from deepseek_operator.controller.handlers import DOWNLOAD_POLL_SECONDS
from deepseek_operator.controller.progress import Sample, parse_samples, progress
from deepseek_operator.controller.reconcile import (
    Outcome,
    _finish,
    previous_status,
    status_dict,
    status_urgent,
)
from deepseek_operator.controller.reconciler import (
    PROGRESS_BACKOFF,
    PROGRESS_WRITE_MAX_SECONDS,
    PROGRESS_WRITE_SECONDS,
    Reconciler,
)
from deepseek_operator.controller.status import Observed, compute_status
from deepseek_operator.render import RenderSettings
from deepseek_operator.render.download import (
    DEADLINE_STARTUP_SECONDS,
    PROGRESS_PREFIX,
    deadline_seconds,
    download_job_manifest,
)

GIB, MIB = 2**30, 2**20
CLAIM = {"metadata": {"name": "r1-model-cache"}, "status": {"phase": "Bound"}}
RUNNING_JOB = {"metadata": {"name": "r1-download-0"}, "spec": {"activeDeadlineSeconds": 9000},
               "status": {"active": 1}}


def _line(present: int, changed: float, at: float, expected: int = 0) -> str:
    return f"{PROGRESS_PREFIX} " + json.dumps(
        {"bytes": present, "expectedBytes": expected, "changedAt": changed, "time": at})


def _dsd(**spec: Any) -> Any:
    return parse_deployment({
        "apiVersion": "deepseek-operator.io/v1alpha1", "kind": "DeepSeekDeployment",
        "metadata": {"name": "r1", "namespace": "ai"},
        "spec": {"model": {"name": "deepseek-r1"}, **spec}})


def _observed(log: str | None, job: dict[str, Any] | None = None,
              stall_seconds: float = 900.0) -> Observed:
    return Observed(claim=CLAIM, job=job or RUNNING_JOB, workload=None,
                    download_bytes=float(100 * GIB), download_log=log,
                    stall_seconds=stall_seconds, deadline_seconds=9000)


def _compute(obs: Observed,
             previous: DeepSeekDeploymentStatus | None = None) -> DeepSeekDeploymentStatus:
    return compute_status(generation=1, mode="none", observed=obs, previous=previous,
                          now="2026-01-01T00:00:00Z", selector="", endpoint="",
                          base=previous or DeepSeekDeploymentStatus())


def _cached(status: DeepSeekDeploymentStatus) -> tuple[str, str]:
    cond = next(c for c in status.conditions if c.type == ConditionType.MODEL_CACHED)
    return cond.reason, cond.message


def test_progress_lines_are_found_among_other_output() -> None:
    log = "\n".join(["some aws warning", _line(10, 0, 0), "deepseek-operator-progress {bad",
                     _line(20, 10, 10, expected=40)])
    assert parse_samples(log) == [Sample(10, 0, 0, 0), Sample(20, 40, 10, 10)]


def test_a_line_counts_only_when_it_starts_with_the_prefix() -> None:
    log = "\n".join(["echo: " + _line(10, 0, 0), " " + _line(20, 0, 0),
                     PROGRESS_PREFIX + _line(30, 0, 0), _line(40, 0, 0)])
    assert parse_samples(log) == [Sample(40, 0, 0, 0)]


GOOD = '"expectedBytes": 0, "changedAt": 5, "time": 5'
HOSTILE_PAYLOADS = [
    '{"bytes": 1e400, ' + GOOD + '}',  # inf: OverflowError in int()
    '{"bytes": -5, ' + GOOD + '}',  # negative: ValidationError in ModelCacheStatus
    '{"bytes": 1e30, ' + GOOD + '}',  # beyond int64: 422 from the API server
    '{"bytes": 9007199254740993, ' + GOOD + '}',  # 2^53 + 1
    '{"bytes": 12.5, ' + GOOD + '}',
    '{"bytes": NaN, ' + GOOD + '}',
    '{"bytes": Infinity, ' + GOOD + '}',
    '{"bytes": true, ' + GOOD + '}',
    '{"bytes": "12", ' + GOOD + '}',
    '{"bytes": null, ' + GOOD + '}',
    '{"bytes": 1' + "0" * 5000 + ', ' + GOOD + '}',  # more digits than int() reads
    '{"bytes": 1, "expectedBytes": -1, "changedAt": 5, "time": 5}',
    '{"bytes": 1, "expectedBytes": 1e300, "changedAt": 5, "time": 5}',
    '{"bytes": 1, "changedAt": 1e400, "time": 5}',
    '{"bytes": 1, "changedAt": NaN, "time": 5}',
    '{"bytes": 1, "changedAt": -1, "time": 5}',
    '{"bytes": 1, "changedAt": 5, "time": 1e20}',  # beyond year 9999: rfc3339 raises
    '{"bytes": 1, "changedAt": 5, "time": -Infinity}',
    '{"bytes": 1, "changedAt": 5, "time": [5]}',
    '{"bytes": 1, "changedAt": 5}',
    '[1, 2]',
    '"text"',
    '[' * 100_000 + ']' * 100_000,  # RecursionError in json.loads
]


@pytest.mark.parametrize("payload", HOSTILE_PAYLOADS)
def test_a_hostile_progress_line_is_skipped_and_the_status_still_computes(
        payload: str) -> None:
    log = "\n".join([_line(GIB, 0, 0), f"{PROGRESS_PREFIX} {payload}"])
    assert parse_samples(log) == [Sample(GIB, 0, 0, 0)]
    status = _compute(_observed(log))
    assert status_dict(status)["modelCache"]["bytesPresent"] == GIB


def test_the_largest_figures_still_make_a_valid_status() -> None:
    # 1 byte over 9999 years: the rate is tiny, the time left beyond any estimate (no eta).
    log = "\n".join([_line(0, 0, 0, expected=2**53), _line(1, 253402300799, 253402300799,
                                                            expected=2**53)])
    status = _compute(_observed(log))
    cache = status_dict(status)["modelCache"]
    assert (cache["bytesPresent"], cache["bytesExpected"]) == (1, 2**53)
    assert "etaSeconds" not in cache
    assert cache["sampleTime"] == "9999-12-31T23:59:59Z"


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["bytes", "expectedBytes", "changedAt", "time"]), inner),
    max_leaves=8))
def test_no_progress_payload_makes_the_status_computation_raise(payload: Any) -> None:
    text = json.dumps(payload)  # NaN and Infinity included, as Python's json writes them
    log = "\n".join([_line(GIB, 0, 0), f"{PROGRESS_PREFIX} {text}"])
    status = _compute(_observed(log))
    cache = status_dict(status)["modelCache"]
    for key in ("bytesPresent", "bytesExpected", "etaSeconds", "deadlineSeconds"):
        assert 0 <= cache.get(key, 0) <= 2**63 - 1


def test_rate_is_over_the_last_minute_and_eta_follows() -> None:
    samples = [Sample(0, 0, 0, 0), Sample(100 * MIB, 0, 10, 10),  # older than the window
               Sample(400 * MIB, 0, 20, 20), Sample(1000 * MIB, 0, 80, 80)]
    figures = progress(samples, expected_fallback=float(2000 * MIB))
    assert figures is not None
    assert figures.bytes_per_second == pytest.approx(10 * MIB)  # (1000 - 400) MiB / 60 s
    assert figures.bytes_expected == 2000 * MIB  # the catalog's, the source gave none
    assert figures.percent == 50.0
    assert figures.eta_seconds == 100
    assert figures.summary() == ("1.0 GiB of 2.0 GiB (50.0 %), 10.0 MiB/s over the last "
                                 "minute, about 1m40s left")


def test_the_sources_total_wins_and_percent_stops_at_100() -> None:
    figures = progress([Sample(120, 100, 5, 5)], expected_fallback=1e9)
    assert figures is not None
    assert (figures.bytes_expected, figures.percent, figures.bytes_per_second) == (100, 100.0,
                                                                                  None)


def test_running_download_reports_its_figures_in_the_condition_and_status() -> None:
    log = "\n".join([_line(10 * GIB, 0, 0), _line(10 * GIB + 600 * MIB, 60, 60)])
    status = _compute(_observed(log))
    reason, message = _cached(status)
    assert reason == REASON_DOWNLOADING
    assert message == ("Job r1-download-0 is downloading the weights: 10.6 GiB of 100.0 GiB "
                       "(10.6 %), 10.0 MiB/s over the last minute, about 2h32m left")
    assert status_dict(status)["modelCache"] == {
        "bytesPresent": 10 * GIB + 600 * MIB, "bytesExpected": 100 * GIB, "percent": 10.6,
        "bytesPerSecond": 10 * MIB, "etaSeconds": 9156,
        "lastProgressTime": "1970-01-01T00:01:00Z", "sampleTime": "1970-01-01T00:01:00Z",
        "deadlineSeconds": 9000}
    assert status.phase == "Downloading"


def test_without_a_readable_log_the_expected_size_is_still_shown() -> None:
    obs = Observed(claim=CLAIM, job=RUNNING_JOB, workload=None, download_bytes=float(GIB),
                   download_log=None, download_log_error="pods/log of p: 502 Bad Gateway",
                   deadline_seconds=9000)
    status = _compute(obs)
    assert _cached(status) == (REASON_DOWNLOADING, "Job r1-download-0 is downloading the "
                               "weights (no progress figures yet (pods/log of p: 502 Bad "
                               "Gateway))")
    assert status_dict(status)["modelCache"] == {"bytesExpected": GIB, "deadlineSeconds": 9000}


def test_no_progress_for_stall_seconds_is_download_stalled_and_a_warning() -> None:
    moving = _compute(_observed(_line(5 * GIB, 100, 100)))
    log = "\n".join([_line(5 * GIB, 100, 100), _line(5 * GIB, 100, 1000)])
    stalled = _compute(_observed(log, stall_seconds=900), previous=moving)
    reason, message = _cached(stalled)
    assert reason == REASON_DOWNLOAD_STALLED
    assert message.startswith("Job r1-download-0 made no progress for 15m00s "
                              "(spec.download.stallSeconds 900): 5.0 GiB of 100.0 GiB (5.0 %)")
    assert "kubectl delete pod -l batch.kubernetes.io/job-name=r1-download-0" in message
    assert stalled.phase == "Downloading"
    outcome = _finish(moving, stalled, [])
    assert outcome.urgent, "a stall is written at once, not coalesced"
    assert [(e.type, e.reason) for e in outcome.status_events] == [
        ("Warning", REASON_DOWNLOAD_STALLED)]


def test_new_figures_alone_are_coalesced() -> None:
    before = _compute(_observed(_line(GIB, 0, 0)))
    after = _compute(_observed(_line(2 * GIB, 10, 10)), previous=before)
    assert status_dict(before) != status_dict(after)
    assert not status_urgent(before, after, [])


def test_deadline_failure_says_so_with_the_last_figures() -> None:
    running = _compute(_observed(_line(30 * GIB, 0, 0)))
    job = {"metadata": {"name": "r1-download-0"}, "spec": {"activeDeadlineSeconds": 9000},
           "status": {"conditions": [{"type": "Failed", "status": "True",
                                      "reason": "DeadlineExceeded",
                                      "message": "Job was active longer than specified "
                                                 "deadline"}]}}
    failed = _compute(_observed(None, job=job), previous=running)
    reason, message = _cached(failed)
    assert reason == REASON_DOWNLOAD_FAILED
    assert message.startswith("Job r1-download-0 failed: DeadlineExceeded: the download ran "
                              "longer than its deadline, activeDeadlineSeconds 9000 (2h30m")
    assert "last figures: 30.0 GiB of 100.0 GiB" in message
    assert "For a slower link lower minMiBPerSecond or raise activeDeadlineSeconds, then " \
        "delete the Job" in message
    assert failed.model_cache == running.model_cache, "the last figures are kept"
    assert failed.phase == "Failed"
    # After the advised edit, the message says the next step, not the same advice again.
    edited = dataclasses.replace(_observed(None, job=job), spec_deadline_seconds=36000)
    _, message = _cached(_compute(edited, previous=failed))
    assert "activeDeadlineSeconds 9000 (2h30m" in message, "what it failed on stays"
    assert "The spec now gives 36000 s (10h00m): delete the Job, the operator creates it " \
        "again with that deadline and the download resumes" in message, message


def test_cached_weights_drop_the_figures() -> None:
    running = _compute(_observed(_line(30 * GIB, 0, 0)))
    done = {"metadata": {"name": "r1-download-0"},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    status = _compute(_observed(None, job=done), previous=running)
    assert _cached(status)[0] == REASON_DOWNLOADED
    assert status.model_cache is None
    assert "modelCache" in (_finish(running, status, []).status or {}), "removed (null)"


def test_deadline_from_checkpoint_size_and_minimum_rate() -> None:
    r1 = _dsd()
    # deepseek-r1: 689 GB on disk at 10 MiB/s, plus an hour.
    assert deadline_seconds(r1) == pytest.approx(689e9 / (10 * MIB) + DEADLINE_STARTUP_SECONDS,
                                                 abs=1)
    assert deadline_seconds(_dsd(download={"minMiBPerSecond": 100})) < deadline_seconds(r1)
    assert deadline_seconds(_dsd(download={"activeDeadlineSeconds": 600})) == 600
    job = download_job_manifest(_dsd(download={"activeDeadlineSeconds": 600}), RenderSettings())
    assert job["spec"]["activeDeadlineSeconds"] == 600
    # A rate too low to mean anything is refused naming the field, not overflowed into
    # the Job (the CRD allows any rate above 0).
    for rate in (1e-300, 0.01):
        with pytest.raises(InvalidSpecError, match=r"spec\.download\.minMiBPerSecond"):
            deadline_seconds(_dsd(download={"minMiBPerSecond": rate}))
    assert deadline_seconds(_dsd(download={"minMiBPerSecond": 0.3})) <= 2592000


def test_status_writes_per_download_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1-hour download polled every DOWNLOAD_POLL_SECONDS, with a burst of child events
    (pod status changes) every 5 s in its first 5 minutes: every reconcile sees new figures,
    but status is written at 10 and 40 s and then once per PROGRESS_WRITE_MAX_SECONDS
    (reconciler.py: the coalescing interval grows after each progress write)."""
    clock = [0.0]
    monkeypatch.setattr(reconciler_module, "time",
                        types.SimpleNamespace(monotonic=lambda: clock[0]))
    body: dict[str, Any] = {
        "apiVersion": "deepseek-operator.io/v1alpha1", "kind": "DeepSeekDeployment",
        "metadata": {"name": "r1", "namespace": "ai", "generation": 1},
        "spec": {"model": {"name": "deepseek-r1"}}}
    writes: list[dict[str, Any]] = []
    deferred: list[float] = []

    def write_status(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        writes.append(patch)
        status = {**body.get("status", {}), **patch}
        body["status"] = {k: v for k, v in status.items() if v is not None}
        return body

    def reconcile(current: dict[str, Any], cluster: Any, settings: Any, now: str) -> Outcome:
        at = clock[0]  # 50 MiB/s from 0
        log = "\n".join(_line(int(50 * MIB * t), t, t) for t in (max(0.0, at - 60), at))
        previous = previous_status(current)
        return _finish(previous, _compute(_observed(log), previous), [])

    worker = Reconciler(cluster=Cluster(ApiClient(), ChildCache()),
                        autoscaler=Autoscaler(ApiClient()), post_event=lambda *a: None,
                        settings=RenderSettings())
    monkeypatch.setattr(worker.cluster, "write_status", write_status)
    monkeypatch.setattr(worker, "read", lambda namespace, name: body)
    monkeypatch.setattr(reconciler_module, "reconcile", reconcile)
    monkeypatch.setattr(worker._deferred, "request",
                        lambda namespace, name, delay: deferred.append(delay))
    duration = 3600
    triggers = sorted({*range(0, duration, int(DOWNLOAD_POLL_SECONDS)), *range(0, 300, 5)})
    for at in triggers:
        clock[0] = float(at)
        worker.trigger("ai", "r1")
    polls = duration / DOWNLOAD_POLL_SECONDS
    assert len(triggers) == 170
    # 1 first (urgent) status, then progress at 10 and 40 s (each interval PROGRESS_BACKOFF
    # times the one before) and every PROGRESS_WRITE_MAX_SECONDS after.
    schedule = [PROGRESS_WRITE_SECONDS * PROGRESS_BACKOFF ** k for k in range(2)]
    assert schedule[-1] * PROGRESS_BACKOFF > PROGRESS_WRITE_MAX_SECONDS
    bound = 1 + len(schedule) + (duration - sum(schedule)) / PROGRESS_WRITE_MAX_SECONDS
    assert len(writes) <= bound < polls
    assert len(writes) == 61  # measured: 1 + 2 + 58 (one per 60 s, on the 30 s polls)
    assert all("modelCache" in w for w in writes[1:])


def test_a_pod_that_stopped_printing_stalls_by_the_operators_clock() -> None:
    """The last line says the bytes grew at t=100 and was printed at t=200; the pod then
    hung and printed nothing more. Read at t=1200 (the operator's clock), that is 1100 s
    without growth: DownloadStalled, although the pod's own last line said 100 s."""
    obs = dataclasses.replace(_observed(_line(5 * GIB, 100, 200), stall_seconds=900),
                              download_log_read_at=1200.0)
    reason, message = _cached(_compute(obs))
    assert reason == REASON_DOWNLOAD_STALLED
    assert message.startswith("Job r1-download-0 made no progress for 18m20s")
    fresh = dataclasses.replace(obs, download_log_read_at=250.0)
    assert _cached(_compute(fresh))[0] == REASON_DOWNLOADING
    # An operator clock behind the pod's never shortens what the pod itself reports.
    behind = dataclasses.replace(_observed(_line(5 * GIB, 100, 1100), stall_seconds=900),
                                 download_log_read_at=50.0)
    assert _cached(_compute(behind))[0] == REASON_DOWNLOAD_STALLED
