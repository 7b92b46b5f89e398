"""The rendered s3:// download script run as a real process against a local S3 server.

Test tooling: moto's S3 server and the AWS CLI run from their own virtualenv
(``make s3-tools``: botocore pins python-dateutil < 3, the kubernetes client >= 3, so they
cannot share .venv); the script's container paths (/models/...) are mapped to a temporary
directory; a small TCP proxy between the script and moto limits the bytes per second
toward the script, or stops sending after a given count (a stalled source). The progress
lines the script prints are fed to the operator's status code as its pods/log tail would be.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from deepseek_operator.api.conditions import REASON_DOWNLOAD_STALLED, REASON_DOWNLOADING
from deepseek_operator.api.status import Condition, ConditionType, DeepSeekDeploymentStatus
from deepseek_operator.controller.progress import parse_samples, progress
from deepseek_operator.controller.reconcile import condition_events
from deepseek_operator.controller.status import Observed, compute_status
from deepseek_operator.render.download import download_script
from deepseek_operator.render.source import MARKER_FILE

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".venv-s3" / "bin"
BUCKET = "weights-bucket"
PREFIX = "r1"
FILES = {"model-00001.safetensors": 600 * 1024, "model-00002.safetensors": 500 * 1024,
         "config.json": 2 * 1024}
TOTAL = sum(FILES.values())
WAIT_S = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer")


@pytest.fixture(scope="module")
def tools() -> Path:
    """The bin directory of the S3 test tools (aws, moto_server), built once by make."""
    if not (TOOLS / "moto_server").exists():
        subprocess.run(["make", "s3-tools"], cwd=ROOT, check=True, capture_output=True)
    return TOOLS


@pytest.fixture(scope="module")
def s3(tools: Path) -> Iterator[int]:
    """A moto S3 server holding s3://weights-bucket/r1/ (FILES, random bytes); its port."""
    port = _free_port()
    server = subprocess.Popen([str(tools / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url)
        requests.put(f"{url}/{BUCKET}", timeout=10).raise_for_status()
        for name, size in FILES.items():
            requests.put(f"{url}/{BUCKET}/{PREFIX}/{name}", data=os.urandom(size),
                         timeout=10).raise_for_status()
        yield port
    finally:
        server.terminate()
        server.wait(10)


class ThrottleProxy:
    """TCP proxy from 127.0.0.1:``port`` to 127.0.0.1:``upstream``: bytes toward the client
    at most ``rate`` bytes/s; after ``stall_after`` bytes toward the clients (all
    connections together) it sends nothing more and keeps the connections open."""

    def __init__(self, upstream: int, rate: int, stall_after: int | None = None) -> None:
        self.upstream, self.rate, self.stall_after = upstream, rate, stall_after
        self.sent = 0
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True),
                             daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, throttled: bool) -> None:
        chunk = max(1, self.rate // 20) if throttled else 65536
        try:
            while not self.stopped.is_set():
                data = source.recv(chunk)
                if not data:
                    target.shutdown(socket.SHUT_WR)
                    return
                if throttled:
                    if self.stall_after is not None and self.sent + len(data) > self.stall_after:
                        self.stopped.wait()  # the source stalls: hold everything
                        return
                    self.sent += len(data)
                    time.sleep(len(data) / self.rate)
                target.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        """Stop forwarding and close every socket."""
        self.stopped.set()
        for sock in self.sockets:
            sock.close()


class Download:
    """The rendered s3:// script running as a process (its stdout lines collected)."""

    def __init__(self, tools: Path, tmp: Path, endpoint_port: int) -> None:
        self.model_dir = tmp / "models" / "s3" / BUCKET / PREFIX  # /models/s3/BUCKET/PREFIX
        env = {
            "PATH": f"{tools}:{os.environ['PATH']}", "HOME": str(tmp),
            "MODEL_DIR": str(self.model_dir), "MARKER_FILE": MARKER_FILE,
            "MODEL_SOURCE_ID": f"s3://{BUCKET}/{PREFIX}", "S3_URI": f"s3://{BUCKET}/{PREFIX}",
            "PROGRESS_SECONDS": "1", "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{endpoint_port}",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self.lines: list[str] = []
        self.process = subprocess.Popen(["sh", "-c", download_script("s3")], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_until(self, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
        """Until ``done()`` is true (polled every 0.2 s); TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not reached; output so far:\n{self.log}")
            time.sleep(0.2)

    def stop(self) -> None:
        """End the script and its children (its own session)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
        self.process.wait(10)
        self.reader.join(10)


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


def test_progress_moves_and_reaches_100_percent(tools: Path, s3: int, tmp_path: Path) -> None:
    proxy = ThrottleProxy(s3, rate=300 * 1024)
    download = Download(tools, tmp_path, proxy.port)
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


def test_a_stalled_source_gives_download_stalled(tools: Path, s3: int, tmp_path: Path) -> None:
    proxy = ThrottleProxy(s3, rate=400 * 1024, stall_after=300 * 1024)
    download = Download(tools, tmp_path, proxy.port)
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

