"""The rendered s3:// download script run as a real process against a local S3 server
(moto) through a throttling proxy (e2e/rig/s3.py). The progress lines the script prints are
fed to the operator's status code as its pods/log tail would be."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.rig.s3 import (
    BUCKET,
    PREFIX,
    TOTAL,
    WAIT_S,
    Download,
    ThrottleProxy,
    s3_server,
    tools,
)

from deepseek_operator.api.conditions import REASON_DOWNLOAD_STALLED, REASON_DOWNLOADING
from deepseek_operator.api.status import Condition, ConditionType, DeepSeekDeploymentStatus
from deepseek_operator.controller.progress import parse_samples, progress
from deepseek_operator.controller.reconcile import condition_events
from deepseek_operator.controller.status import Observed, compute_status
from deepseek_operator.render.download import download_script
from deepseek_operator.render.source import MARKER_FILE


@pytest.fixture(scope="module")
def s3() -> Iterator[int]:
    """A moto S3 server holding s3://weights-bucket/r1/; its port."""
    with s3_server(tools()) as port:
        yield port


def _status(log: str,
            stall_seconds: float = 600.0) -> tuple[Condition, DeepSeekDeploymentStatus]:
    """(ModelCached, status) as the operator computes them for a running download Job
    whose pod log is ``log``."""
    claim = {"metadata": {"name": "r1-model-cache"}, "status": {"phase": "Bound"}}
    job = {"metadata": {"name": "r1-download-0"}, "spec": {"activeDeadlineSeconds": 7200},
           "status": {"active": 1}}
    observed = Observed(claim=claim, job=job, workload=None, download_bytes=float(TOTAL),
                        download_log=log, stall_seconds=stall_seconds, deadline_seconds=7200)
    status = compute_status(generation=1, mode="none", observed=observed, previous=None,
                            now="2026-01-01T00:00:00Z", selector="", endpoint="",
                            base=DeepSeekDeploymentStatus())
    cached = next(c for c in status.conditions if c.type == ConditionType.MODEL_CACHED)
    return cached, status


def test_progress_moves_and_reaches_100_percent(s3: int, tmp_path: Path) -> None:
    proxy = ThrottleProxy(s3, rate=300 * 1024)
    download = Download(tools(), tmp_path, proxy.port)
    try:
        assert download.process.wait(WAIT_S) == 0, download.log
    finally:
        download.stop()
        proxy.close()
    samples = parse_samples(download.log)
    assert len(samples) >= 3, download.log
    assert all(s.expected == TOTAL for s in samples), "the bucket's listing gives the total"
    sizes = [s.bytes for s in samples]
    assert sizes == sorted(sizes), "bytes present never go back"
    figures = [progress(samples[: i + 1], None) for i in range(len(samples))]
    percents = [f.percent for f in figures if f is not None]
    assert any(0 < (p or 0) < 100 for p in percents), f"no figure on the way: {percents}"
    assert percents[-1] == 100.0
    assert (tmp_path / "models" / "s3" / BUCKET / PREFIX / MARKER_FILE).read_text() == \
        f"s3://{BUCKET}/{PREFIX}"
    # The operator's view of a figure on the way (as its pods/log tail would show it).
    midway = next(i for i, p in enumerate(percents) if 0 < (p or 0) < 100)
    cached, status = _status("\n".join(download.lines[: _line_of(download, midway) + 1]))
    assert cached.reason == REASON_DOWNLOADING
    assert "GiB of" in cached.message and "%" in cached.message
    cache = status.model_cache
    assert cache is not None and cache.bytes_expected == TOTAL
    assert 0 < (cache.percent or 0) < 100
    assert cache.deadline_seconds == 7200


def _line_of(download: Download, sample_index: int) -> int:
    """Index in download.lines of the ``sample_index``-th progress line."""
    progress_lines = [i for i, line in enumerate(download.lines) if parse_samples(line)]
    return progress_lines[sample_index]


def test_a_stalled_source_gives_download_stalled(s3: int, tmp_path: Path) -> None:
    proxy = ThrottleProxy(s3, rate=400 * 1024, stall_after=300 * 1024)
    download = Download(tools(), tmp_path, proxy.port)
    stall_seconds = 3.0
    try:
        def stalled() -> bool:
            figures = progress(parse_samples(download.log), None)
            return figures is not None and figures.bytes_present > 0 \
                and figures.stalled_seconds >= stall_seconds
        download.wait_until(stalled)
        assert download.process.poll() is None, "the script waits on the stalled source"
    finally:
        download.stop()
        proxy.close()
    before, running = _status(download.lines[0], stall_seconds=stall_seconds)
    cached, status = _status(download.log, stall_seconds=stall_seconds)
    assert before.reason == REASON_DOWNLOADING
    assert cached.reason == REASON_DOWNLOAD_STALLED
    message = cached.message
    assert "made no progress" in message and "kubectl delete pod" in message
    assert status.model_cache is not None and (status.model_cache.bytes_present or 0) > 0
    events = condition_events(running, status)
    assert [(e.type, e.reason) for e in events] == [("Warning", REASON_DOWNLOAD_STALLED)]



def test_hf_script_reports_progress_and_the_repositorys_total(tmp_path: Path) -> None:
    """The hf:// script with stand-ins for the Hub (no network here): ``hf`` writes three
    100 KiB chunks a second apart, ``python3`` answers the file list (path, size). The real
    client against a local Hub: tests/test_script_runs_hf.py."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "hf").write_text(
        "#!/bin/sh\n# hf download REPO --revision R --local-dir DIR\n"
        'dir="$6"; for i in 1 2 3; do head -c 102400 /dev/zero >> "$dir/model.safetensors"; '
        "sleep 1; done\n")
    (stubs / "python3").write_text("#!/bin/sh\nprintf 'model.safetensors\\t307200\\n'\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    model_dir = tmp_path / "models" / "hf" / "org" / "repo"
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path), "MODEL_DIR": str(model_dir),
           "MARKER_FILE": MARKER_FILE, "MODEL_SOURCE_ID": "hf://org/repo@main",
           "HF_REPO": "org/repo", "HF_REVISION": "main", "PROGRESS_SECONDS": "1"}
    result = subprocess.run(["sh", "-c", download_script("hf")], env=env, capture_output=True,
                            text=True, timeout=WAIT_S, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    samples = parse_samples(result.stdout)
    assert {s.expected for s in samples} == {307200}
    assert samples[-1].bytes >= 307200
    assert any(0 < s.bytes < 307200 for s in samples), "a figure on the way"
    figures = progress(samples, None)
    assert figures is not None and figures.percent == 100.0
    assert (model_dir / MARKER_FILE).read_text() == "hf://org/repo@main"
