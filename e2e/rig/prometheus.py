"""A real Prometheus server (the Debian ``prometheus`` package) for e2e tests.

It listens on a free 127.0.0.1 port, scrapes and evaluates every second, keeps its TSDB in
a directory it deletes on stop, and finds its targets through file-based service
discovery (``file_sd_configs``): ``set_targets`` rewrites one JSON file atomically and
Prometheus picks the change up on its own, so targets come and go while it runs.

Target label names live in ``NAMESPACE_LABEL``, ``POD_LABEL`` and ``INSTANCE_LABEL``, the
one place to change them when the operator's default query filters on other names.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml
from prometheus_api_client import PrometheusConnect

# Labels every stand-in target carries; the operator's default query filters on them.
NAMESPACE_LABEL = "namespace"
POD_LABEL = "pod"
# Not "instance": Prometheus sets that one to the target's host:port.
INSTANCE_LABEL = "instance_name"

DEFAULT_BINARY = Path("/usr/bin/prometheus")
SCRAPE_JOB = "model-servers"
SCRAPE_INTERVAL = "1s"
INSTALL_HINT = "run `make system-deps` (installs the Debian package `prometheus`)"


class PrometheusNotInstalledError(RuntimeError):
    """The Prometheus binary is missing; the message says how to install it."""


class PrometheusStartError(RuntimeError):
    """Prometheus exited or did not become ready; the message carries its log tail."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One ``host:port`` to scrape, with the labels Prometheus attaches to its series."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrometheusServer:
    """One Prometheus process; use as a context manager or call ``start``/``stop``.

    Files under ``workdir``: ``prometheus.yml`` (configuration), ``targets.json`` (file
    SD), ``prometheus.log`` (its output, kept for debugging) and ``data/`` (TSDB, deleted
    on stop).
    """

    def __init__(self, workdir: Path, binary: Path = DEFAULT_BINARY) -> None:
        """Prepare a server that will keep its files under ``workdir`` (created if missing)."""
        self.workdir = workdir
        self.binary = binary
        self.config_file = workdir / "prometheus.yml"
        self.targets_file = workdir / "targets.json"
        self.log_file = workdir / "prometheus.log"
        self.data_dir = workdir / "data"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._client: PrometheusConnect | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API, e.g. ``http://127.0.0.1:41234``.

        Raises:
            RuntimeError: the server was not started.
        """
        if not self.port:
            raise RuntimeError("Prometheus is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the Prometheus process, or None before ``start``."""
        return self._process.pid if self._process else None

    def start(self, ready_timeout_s: float = 30.0) -> None:
        """Write the configuration, start Prometheus and wait until ``/-/ready`` answers 200.

        Raises:
            PrometheusNotInstalledError: ``binary`` does not exist.
            PrometheusStartError: it exited or was not ready within ``ready_timeout_s``
                seconds (it is stopped in that case).
        """
        if not self.binary.is_file():
            raise PrometheusNotInstalledError(f"{self.binary} not found: {INSTALL_HINT}")
        if self._process is not None:
            raise RuntimeError("Prometheus is already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.set_targets([])
        self.config_file.write_text(yaml.safe_dump(self._config(), sort_keys=False))
        self.port = free_loopback_port()
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self.binary),
                    f"--config.file={self.config_file}",
                    f"--storage.tsdb.path={self.data_dir}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C meant for pytest does not reach it; stop() does.
                start_new_session=True,
            )
        try:
            self._wait_ready(ready_timeout_s)
        except PrometheusStartError:
            self.stop()
            raise

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the process by PID (SIGTERM, then SIGKILL after ``timeout_s`` seconds),
        reap it and delete the TSDB directory. Safe to call twice."""
        if self._client is not None:
            self._client.close()
            self._client = None
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def is_running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def set_targets(self, targets: Sequence[ScrapeTarget]) -> None:
        """Replace the scrape targets: write ``targets.json`` to a temporary file and rename.

        The rename is atomic, so Prometheus never reads a half-written file; it notices the
        change through its file watch (or the 1 s refresh) without a reload.
        """
        document = [{"targets": [target.address], "labels": dict(target.labels)}
                    for target in targets]
        temporary = self.targets_file.with_name(f".{self.targets_file.name}.tmp")
        temporary.write_text(json.dumps(document, indent=2, sort_keys=True))
        os.replace(temporary, self.targets_file)

    def client(self) -> PrometheusConnect:
        """The prometheus-api-client connection to this server (one, reused; closed on stop).

        Raises:
            RuntimeError: the server was not started.
        """
        if self._client is None:
            self._client = PrometheusConnect(url=self.url, disable_ssl=True)
        return self._client

    def active_targets(self) -> list[dict[str, Any]]:
        """Active targets of the stand-in job as ``/api/v1/targets`` lists them
        (keys include ``labels``, ``health`` (``up``/``down``/``unknown``), ``scrapeUrl``)."""
        data = self.client().get_targets(state="active", scrape_pool=SCRAPE_JOB)
        return list(data["activeTargets"])

    def wait_for_up_targets(self, count: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Wait until exactly ``count`` targets are active and all of them are up.

        Exactness means this also waits out removed targets. Returns the active targets.

        Raises:
            TimeoutError: not reached within ``timeout_s`` seconds; the message lists what
                Prometheus saw last.
        """
        deadline = time.monotonic() + timeout_s
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = self.active_targets()
            if len(seen) == count and all(target["health"] == "up" for target in seen):
                return seen
            time.sleep(0.2)
        summary = [(target["scrapeUrl"], target["health"], target.get("lastError", ""))
                   for target in seen]
        raise TimeoutError(f"Prometheus did not see {count} up targets in {timeout_s} s; "
                           f"last seen: {summary}")

    def __enter__(self) -> PrometheusServer:
        """Start and return self."""
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Stop."""
        self.stop()

    def _config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": SCRAPE_INTERVAL,
                       "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [{
                "job_name": SCRAPE_JOB,
                "file_sd_configs": [{"files": [str(self.targets_file)],
                                     "refresh_interval": SCRAPE_INTERVAL}],
            }],
        }

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_running():
                raise PrometheusStartError(f"Prometheus exited early:\n{self._log_tail()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise PrometheusStartError(
            f"Prometheus not ready in {timeout_s} s:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
