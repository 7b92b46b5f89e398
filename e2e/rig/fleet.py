"""A fleet of model-server stand-ins: one process per pod, kept in sync with a desired set.

``StandInFleet.sync({pod: labels})`` starts a stand-in for each new pod, stops those no
longer wanted and rewrites the Prometheus file-SD targets, so Prometheus scrapes exactly
the live pods with the labels the operator's default query filters on. A test-side watcher
can call it with the Ready pods of a workload each time they change.
"""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from e2e.rig.model_server import LISTEN_HOST, READY_LINE_PREFIX, Engine
from e2e.rig.prometheus import (
    INSTANCE_LABEL,
    NAMESPACE_LABEL,
    POD_LABEL,
    PrometheusServer,
    ScrapeTarget,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Prometheus label names: https://prometheus.io/docs/concepts/data_model/ ("__" is reserved).
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
REQUIRED_LABELS = (NAMESPACE_LABEL, INSTANCE_LABEL)


class StandInError(RuntimeError):
    """A stand-in did not start, or exited while it should be running."""


@dataclass(frozen=True)
class StandIn:
    """One running stand-in process and the target labels it is registered with."""

    pod: str
    port: int
    labels: Mapping[str, str]
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def address(self) -> str:
        """``host:port`` as Prometheus scrapes it."""
        return f"{LISTEN_HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``; the OpenAI API is under ``/v1``."""
        return f"http://{self.address}"


@dataclass(frozen=True)
class SyncResult:
    """Pods whose stand-ins one ``sync`` started and stopped, sorted by name."""

    started: list[str]
    stopped: list[str]


class StandInFleet:
    """Stand-in processes keyed by pod name. Thread-safe; use as a context manager or
    call ``stop`` at the end.

    Each stand-in's stderr goes to ``workdir/<pod>.log``. A fleet owns the whole target
    file of its Prometheus: use one fleet per Prometheus at a time.
    """

    def __init__(self, workdir: Path, *, model: str, engine: Engine,
                 prometheus: PrometheusServer | None = None,
                 server_args: Sequence[str] = (), start_timeout_s: float = 15.0) -> None:
        """Serve ``model`` with ``engine``-style metrics.

        ``prometheus``, when given, gets its targets rewritten by every ``sync``.
        ``server_args`` are extra ``model_server`` options, e.g.
        ``["--latency-seconds", "0.5"]``. ``start_timeout_s`` bounds one stand-in's start.
        """
        self.workdir = workdir
        self.model = model
        self.engine = engine
        self.prometheus = prometheus
        self.server_args = list(server_args)
        self.start_timeout_s = start_timeout_s
        self._lock = threading.RLock()
        self._running: dict[str, StandIn] = {}
        self._ever_started: list[subprocess.Popen[bytes]] = []

    def sync(self, desired: Mapping[str, Mapping[str, str]]) -> SyncResult:
        """Make the running stand-ins match ``desired`` (pod name -> target labels).

        The labels must hold ``NAMESPACE_LABEL`` and ``INSTANCE_LABEL``; ``POD_LABEL`` is
        added from the key. Order: start new stand-ins, publish the targets, then stop
        the extra ones, so Prometheus never scrapes a process that is already gone.

        Raises:
            ValueError: a pod name is empty or labels are invalid (pod and label named).
            StandInError: a stand-in failed to start (those started by this call are
                stopped again) or a running one has exited.
        """
        wanted = {pod: _target_labels(pod, labels) for pod, labels in desired.items()}
        with self._lock:
            self._check_alive()
            new = sorted(set(wanted) - set(self._running))
            extra = sorted(set(self._running) - set(wanted))
            started = self._start_all(new, wanted)
            self._running.update(started)
            for pod in set(wanted) & set(self._running):
                if self._running[pod].labels != wanted[pod]:
                    self._running[pod] = replace(self._running[pod], labels=wanted[pod])
            leaving = [self._running.pop(pod) for pod in extra]
            self._publish()
            _terminate([stand_in.process for stand_in in leaving])
        return SyncResult(started=new, stopped=extra)

    def stand_ins(self) -> list[StandIn]:
        """The running stand-ins, sorted by pod name."""
        with self._lock:
            return [self._running[pod] for pod in sorted(self._running)]

    def endpoints(self) -> list[str]:
        """Base URLs of the running stand-ins, sorted by pod name (a fresh list each call)."""
        return [stand_in.base_url for stand_in in self.stand_ins()]

    def leftover_pids(self) -> list[int]:
        """PIDs of every stand-in this fleet ever started that has not exited and been reaped."""
        with self._lock:
            return [process.pid for process in self._ever_started if process.poll() is None]

    def stop(self) -> None:
        """Stop every stand-in and publish an empty target list."""
        self.sync({})

    def __enter__(self) -> StandInFleet:
        """Return self."""
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Stop every stand-in."""
        self.stop()

    def _check_alive(self) -> None:
        for stand_in in self._running.values():
            code = stand_in.process.poll()
            if code is not None:
                raise StandInError(f"stand-in of pod {stand_in.pod} exited with code {code}:\n"
                                   f"{_tail(stand_in.log_file)}")

    def _start_all(self, pods: Sequence[str],
                   labels: Mapping[str, Mapping[str, str]]) -> dict[str, StandIn]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Launch every process first, then wait: the interpreters start in parallel.
        launched = {pod: self._launch(pod) for pod in pods}
        started: dict[str, StandIn] = {}
        try:
            for pod, process in launched.items():
                port = self._await_port(pod, process)
                started[pod] = StandIn(pod, port, labels[pod], process, self._log_file(pod))
        except BaseException:
            _terminate(list(launched.values()))
            raise
        return started

    def _launch(self, pod: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "e2e.rig.model_server", "--port", "0",
                   "--model", self.model, "--pod", pod, "--engine", self.engine,
                   *self.server_args]
        with self._log_file(pod).open("ab") as log:
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=log,
                                       start_new_session=True)
        self._ever_started.append(process)
        return process

    def _await_port(self, pod: str, process: subprocess.Popen[bytes]) -> int:
        assert process.stdout is not None  # Popen was given stdout=PIPE
        # The stand-in prints its one line in a single flushed write, so once the pipe is
        # readable, readline() returns at once (the line, or b"" if the process exited).
        readable, _, _ = select.select([process.stdout], [], [], self.start_timeout_s)
        if not readable:
            raise StandInError(f"stand-in of pod {pod} did not report its port within "
                               f"{self.start_timeout_s} s:\n{_tail(self._log_file(pod))}")
        line = process.stdout.readline()
        process.stdout.close()
        if not line:
            process.wait()
            raise StandInError(f"stand-in of pod {pod} exited with code "
                               f"{process.returncode}:\n{_tail(self._log_file(pod))}")
        text = line.decode().strip()
        if not text.startswith(READY_LINE_PREFIX):
            raise StandInError(f"stand-in of pod {pod} printed {text!r}, "
                               f"expected {READY_LINE_PREFIX!r}<port>")
        return int(text.removeprefix(READY_LINE_PREFIX))

    def _publish(self) -> None:
        if self.prometheus is not None:
            self.prometheus.set_targets([ScrapeTarget(stand_in.address, stand_in.labels)
                                         for stand_in in self.stand_ins()])

    def _log_file(self, pod: str) -> Path:
        return self.workdir / f"{pod}.log"


def _target_labels(pod: str, labels: Mapping[str, str]) -> dict[str, str]:
    if not pod:
        raise ValueError("pod name must not be empty")
    missing = [name for name in REQUIRED_LABELS if name not in labels]
    if missing:
        raise ValueError(f"pod {pod}: labels miss {missing} (required: {list(REQUIRED_LABELS)})")
    for name in labels:
        if not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(f"pod {pod}: label name {name!r} is not a valid Prometheus label "
                             "name ([a-zA-Z_][a-zA-Z0-9_]*, no leading '__')")
    if labels.get(POD_LABEL, pod) != pod:
        raise ValueError(f"pod {pod}: label {POD_LABEL}={labels[POD_LABEL]!r} contradicts "
                         "the pod name")
    return {**labels, POD_LABEL: pod}


def _terminate(processes: Sequence[subprocess.Popen[bytes]], timeout_s: float = 10.0) -> None:
    """SIGTERM every process at once, then reap each (SIGKILL after ``timeout_s`` s)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])
