"""Test tooling for the download scripts: a local S3 server (moto), a throttling proxy, and
the rendered s3:// script run as a real process.

moto's S3 server and the AWS CLI run from their own virtualenv, .venv-s3 (``make
s3-tools``: botocore pins python-dateutil < 3, the kubernetes client needs >= 3, so they
cannot share .venv). The script's container paths (/models/...) are mapped to a temporary
directory. ``ThrottleProxy`` sits between the script and moto: it limits the bytes per second
toward the script, or stops sending after a given count (a stalled source).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from deepseek_operator.render.download import download_script
from deepseek_operator.render.source import MARKER_FILE
from e2e.rig.container import OutputProcess

ROOT = Path(__file__).resolve().parent.parent.parent
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


def tools() -> Path:
    """The bin directory of the S3 test tools (aws, moto_server), built once by make."""
    if not (TOOLS / "moto_server").exists():
        subprocess.run(["make", "s3-tools"], cwd=ROOT, check=True, capture_output=True)
    return TOOLS


@contextlib.contextmanager
def s3_server(tools: Path) -> Iterator[int]:
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
    connections together) it sends nothing more, keeping the connections open, until
    ``resume``."""

    def __init__(self, upstream: int, rate: int, stall_after: int | None = None) -> None:
        self.upstream, self.rate, self.stall_after = upstream, rate, stall_after
        self.sent = 0
        self.stopped = threading.Event()
        self.resumed = threading.Event()
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
                        self.resumed.wait()  # the source stalls: hold everything
                        if self.stopped.is_set():
                            return
                    self.sent += len(data)
                    time.sleep(len(data) / self.rate)
                target.sendall(data)
        except OSError:
            return

    def resume(self) -> None:
        """End the stall: forward everything from now on (still at ``rate``)."""
        self.stall_after = None
        self.resumed.set()

    def close(self) -> None:
        """Stop forwarding and close every socket."""
        self.stopped.set()
        self.resumed.set()
        for sock in self.sockets:
            sock.close()


class Download(OutputProcess):
    """The rendered s3:// script running as a process: its output lines collected in
    ``lines`` and passed to ``on_line`` as they come."""

    def __init__(self, tools: Path, tmp: Path, endpoint_port: int,
                 bucket: str = BUCKET, prefix: str = PREFIX,
                 on_line: Callable[[str], None] | None = None) -> None:
        self.model_dir = tmp / "models" / "s3" / bucket / prefix  # /models/s3/BUCKET/PREFIX
        env = {
            "PATH": f"{tools}:{os.environ['PATH']}", "HOME": str(tmp),
            "MODEL_DIR": str(self.model_dir), "MARKER_FILE": MARKER_FILE,
            "MODEL_SOURCE_ID": f"s3://{bucket}/{prefix}", "S3_URI": f"s3://{bucket}/{prefix}",
            "PROGRESS_SECONDS": "1", "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{endpoint_port}",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        super().__init__(["sh", "-c", download_script("s3")], env, on_line)

    def wait_until(self, done: Callable[[], bool], timeout: float = WAIT_S) -> None:
        """Until ``done()`` is true; TimeoutError after ``timeout`` (default WAIT_S)."""
        super().wait_until(done, timeout)

    def stop(self) -> None:
        """End the script and its children (its own session)."""
        self.kill()


