"""Test tooling: an engine pod's termination, played by local processes in a network
namespace of their own (a pod's), for the rendered preStop drain.

Run as ``unshare --net [--map-root-user] python -m e2e.rig.drain_scenario`` with a JSON
``Scenario`` on stdin; it prints one JSON ``Report`` on stdout. Inside the namespace:

1. loopback is brought up and the engine stand-in (e2e/rig/model_server.py) listens on the
   rendered container port on 127.0.0.1, as the engine does in its pod (its own network
   namespace, so the port is free whatever else runs on the machine);
2. ``streams`` SSE chat streams start, each ``tokens`` tokens, one every
   ``token_interval_s``; once each has received its first token,
3. the preStop command runs (the kubelet runs it when the pod is deleted), and requests
   that arrive during the drain start at ``late_offsets_s`` after it;
4. the kubelet's part: it waits for the hook at most ``grace_s`` (then kills it), then
   sends the engine SIGTERM; the streams end then at the latest.

Times in the report are seconds since the preStop started (negative: before).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import requests

from e2e.rig.model_server import READY_LINE_PREFIX

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1  # <linux/sockios.h>, <net/if.h>
MODEL = "drain-test"


@dataclass
class Scenario:
    """What to play (see the module docstring); ``prestop`` is the hook's argv, ``env`` its
    environment, ``port`` the engine's container port, ``engine`` vllm or sglang."""

    prestop: list[str]
    env: dict[str, str]
    port: int
    engine: str
    streams: int
    tokens: int
    token_interval_s: float
    grace_s: float
    late_offsets_s: list[float] = field(default_factory=list)
    late_tokens: int = 10
    busy_metrics_latency_s: float = 0.0


@dataclass
class StreamResult:
    """One stream: when it started and ended, the content chunks received, whether the
    final ``data: [DONE]`` came (the stream was not cut), the HTTP status, an error."""

    started: float
    ended: float = 0.0
    chunks: int = 0
    done: bool = False
    status: int = 0
    error: str = ""


@dataclass
class Report:
    """The scenario's timeline: the hook's end (``prestop_killed`` when the kubelet's grace
    ran out), its exit code and output, the engine's SIGTERM, the streams."""

    prestop_ended: float
    prestop_killed: bool
    prestop_exit: int
    prestop_output: str
    sigterm: float
    streams: list[StreamResult]
    late: list[StreamResult]


def loopback_up() -> None:
    """Bring ``lo`` up (a new network namespace starts with it down), by ioctl."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _stream(url: str, tokens: int, origin: float, result: StreamResult) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": tokens, "stream": True}
    try:
        with requests.post(url, json=body, stream=True, timeout=(5, 60)) as response:
            result.status = response.status_code
            for line in response.iter_lines():
                if line == b"data: [DONE]":
                    result.done = True
                elif line.startswith(b"data: ") and b'"content"' in line:
                    result.chunks += 1
    except (requests.RequestException, OSError) as error:
        result.error = type(error).__name__
    result.ended = time.monotonic() - origin


def play(scenario: Scenario) -> Report:
    """Play ``scenario`` (module docstring) and report its timeline."""
    loopback_up()
    engine = subprocess.Popen(
        [sys.executable, "-m", "e2e.rig.model_server", "--port", str(scenario.port),
         "--model", MODEL, "--pod", "engine-0", "--engine", scenario.engine,
         "--token-interval-seconds", str(scenario.token_interval_s),
         "--busy-metrics-latency-seconds", str(scenario.busy_metrics_latency_s)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert engine.stdout is not None
        ready = engine.stdout.readline()
        if not ready.startswith(READY_LINE_PREFIX):
            raise RuntimeError(f"the stand-in did not start: {ready!r}")
        url = f"http://127.0.0.1:{scenario.port}/v1/chat/completions"
        origin = time.monotonic()
        streams = [StreamResult(0.0) for _ in range(scenario.streams)]
        threads = [threading.Thread(target=_stream, args=(url, scenario.tokens, origin, s))
                   for s in streams]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while not all(s.chunks or s.ended for s in streams):  # every stream under way
            if time.monotonic() > deadline:
                raise RuntimeError("the streams did not all start")
            time.sleep(0.05)
        hook = subprocess.Popen(scenario.prestop, env=scenario.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        started = time.monotonic()
        shift = started - origin
        for s in streams:
            s.started = -shift
        late = [StreamResult(offset) for offset in scenario.late_offsets_s]
        for result in late:
            timer = threading.Timer(result.started, _stream,
                                    args=(url, scenario.late_tokens, started, result))
            timer.start()
            threads.append(timer)
        killed = False
        try:
            hook.wait(scenario.grace_s)
        except subprocess.TimeoutExpired:
            hook.kill()  # the kubelet gives up on the hook at the end of the grace period
            hook.wait()
            killed = True
        ended = time.monotonic() - started
        output = hook.stdout.read() if hook.stdout else ""
        engine.send_signal(signal.SIGTERM)  # the kubelet's SIGTERM after the hook
        sigterm = time.monotonic() - started
        engine.wait(30)
        for thread in threads:
            thread.join(60)
        for s in streams:
            s.ended -= shift
        return Report(ended, killed, hook.returncode, output, sigterm, streams, late)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait(10)


def main() -> int:
    """Read a Scenario (JSON) from stdin, print its Report (JSON) to stdout."""
    scenario = Scenario(**json.load(sys.stdin))
    print(json.dumps(asdict(play(scenario))))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
