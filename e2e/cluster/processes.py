"""Start, track and stop the control plane's processes by PID file.

Each process runs in its own session (so a Ctrl-C in the terminal that ran `up` does not
kill it), logs to ``<state>/logs/<name>.log`` and records its PID in
``<state>/pids/<name>.pid``. ``stop_all`` stops them in the reverse order of start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from e2e.cluster import paths


def _pid_dir() -> Path:
    return paths.state_dir() / "pids"


def _log_dir() -> Path:
    return paths.state_dir() / "logs"


def log_path(name: str) -> Path:
    """Log file of the named process."""
    return _log_dir() / f"{name}.log"


def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in the background as process ``name``; returns its PID."""
    _pid_dir().mkdir(parents=True, exist_ok=True)
    _log_dir().mkdir(parents=True, exist_ok=True)
    with log_path(name).open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **(env or {})})
    record(name, proc.pid)
    return proc.pid


def record(name: str, pid: int) -> None:
    """Record process ``name`` (a session leader, as ``start`` makes it) so that
    ``stop_all`` stops it too; for a process started elsewhere."""
    _pid_dir().mkdir(parents=True, exist_ok=True)
    # The start order is the file's mtime order; stop_all reverses it.
    (_pid_dir() / f"{name}.pid").write_text(str(pid))


def alive(pid: int) -> bool:
    """True when a process with this PID exists and is not a zombie whose threads have all
    exited.

    A killed multi-threaded process (every Go binary) can show its leader as a zombie
    while its other threads are still exiting, and those threads still hold its open
    files and listening sockets; it counts as alive until /proc lists no other thread.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return True
        return any(task.name != str(pid) for task in Path(f"/proc/{pid}/task").iterdir())
    return True


def recorded() -> dict[str, int]:
    """Processes recorded by PID file, in start order: {name: pid}."""
    if not _pid_dir().is_dir():
        return {}
    files = sorted(_pid_dir().glob("*.pid"), key=lambda p: p.stat().st_mtime_ns)
    return {f.stem: int(f.read_text()) for f in files}


def stop(name: str, pid: int, grace_seconds: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL after ``grace_seconds``; remove the PID file."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + (grace_seconds if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline and alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if not alive(pid):
            break
    (_pid_dir() / f"{name}.pid").unlink(missing_ok=True)


def command_line(pid: int) -> list[str]:
    """The argv a running process was started with (from /proc), to start it again."""
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [arg.decode() for arg in raw.split(b"\0")[:-1]]


def stop_all() -> list[str]:
    """Stop every recorded process, newest first; returns the names stopped."""
    names = list(recorded().items())
    for name, pid in reversed(names):
        stop(name, pid)
    return [n for n, _ in names]
