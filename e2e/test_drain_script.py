"""The rendered preStop drain of the engine container, run as a real process against the
engine stand-in with SSE streams in flight, in a network namespace of their own (a pod's;
e2e/rig/drain_scenario.py), the kubelet's part played by the scenario: it runs the hook,
waits for it at most terminationGracePeriodSeconds, then sends the engine SIGTERM.

No kube-apiserver is needed; the tests are here because they take ~10-25 s each (the drain
keeps serving for drain_delay_seconds before it waits).

What the drain promises (render/pod.py, templates/scripts/drain.py.j2): it returns neither
before the delay nor while the engine counts a running or queued request (vLLM's
vllm:num_requests_running/waiting, SGLang's sglang:num_running_reqs/num_queue_reqs, which
the stand-in exports as the engines do), so SIGTERM cuts no stream before the grace
period; it returns within one poll of the last stream's end. Requests that still reach the
pod during the drain are served and waited for: neither engine refuses requests before its
SIGTERM, and in a cluster new connections stop because the terminating pod leaves the
Service's endpoints.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.rig.container import LocalContainer, container, find, pod_spec, render

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = {"vllm": ("distill-llama-8b-l4.yaml", "distill-llama-8b"),
           "sglang": ("distill-qwen-7b-a100-40gb.yaml", "distill-qwen-7b")}
TOKEN_INTERVAL_S = 0.2
SLACK_S = 2.0  # scheduling on a loaded 2-core machine


def rendered(engine: str, workdir: Path) -> tuple[dict[str, Any], int]:
    """The engine container of the sample that runs ``engine``, and its pod's
    terminationGracePeriodSeconds, as ``deepseek-operator render`` prints them."""
    sample, name = SAMPLES[engine]
    objects = render([yaml.safe_load((ROOT / "manifests" / "samples" / sample).read_text())],
                     workdir)
    deployment = find(objects, "Deployment", name)
    return container(deployment, "engine"), int(pod_spec(deployment)[
        "terminationGracePeriodSeconds"])


def constants(hook: list[str]) -> tuple[int, int]:
    """(DELAY_SECONDS, POLL_SECONDS) of the rendered drain script."""
    script = hook[-1]
    delay = re.search(r"^DELAY_SECONDS = (\d+)$", script, re.M)
    poll = re.search(r"^POLL_SECONDS = (\d+)$", script, re.M)
    assert delay and poll, script
    return int(delay.group(1)), int(poll.group(1))


def play(engine: dict[str, Any], root: Path, *, port: int | None = None,
         extra_env: dict[str, str] | None = None, **scenario: Any) -> dict[str, Any]:
    """Run the drain scenario for ``engine`` (a rendered container; the engine stand-in on
    its port, or ``port``) in a new network namespace; its report
    (e2e/rig/drain_scenario.py). ``extra_env``: what the kubelet adds to the hook's
    environment beyond the container's."""
    hook = engine["lifecycle"]["preStop"]["exec"]["command"]
    # The hook runs in the engine container: its environment, python3 from the image.
    local = LocalContainer({"command": hook, "env": engine["env"],
                            "volumeMounts": engine["volumeMounts"]}, root,
                           tools=[Path(sys.executable).parent], extra_env=extra_env)
    body = {"prestop": local.argv, "env": local.env,
            "port": port or engine["ports"][0]["containerPort"],
            "engine": "sglang" if "sglang" in " ".join(engine["command"]) else "vllm",
            "token_interval_s": TOKEN_INTERVAL_S} | scenario
    unshare = ["unshare", "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    result = subprocess.run([*unshare, sys.executable, "-m", "e2e.rig.drain_scenario"],
                            input=json.dumps(body), capture_output=True, text=True,
                            cwd=ROOT, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.mark.parametrize("engine_type", ["vllm", "sglang"])
def test_the_drain_waits_for_every_stream_then_ends_within_one_poll(
        tmp_path: Path, engine_type: str) -> None:
    engine, grace = rendered(engine_type, tmp_path)
    delay, poll = constants(engine["lifecycle"]["preStop"]["exec"]["command"])
    tokens = int((delay + 4) / TOKEN_INTERVAL_S)  # streams outlast the delay by ~4 s
    late_offsets = [2.0, delay + 1.0]  # one during the delay, one while it waits
    report = play(engine, tmp_path, streams=4, tokens=tokens, grace_s=grace,
                  late_offsets_s=late_offsets, late_tokens=15)
    streams, late = report["streams"], report["late"]
    for stream in streams:
        assert stream == stream | {"status": 200, "done": True, "chunks": tokens,
                                   "error": ""}, "no stream is cut"
    for request in late:
        assert request == request | {"status": 200, "done": True, "chunks": 15, "error": ""}, \
            "a request that reaches the pod during the drain is served in full"
    last_end = max(s["ended"] for s in [*streams, *late])
    ended = report["prestop_ended"]
    assert report["prestop_exit"] == 0 and not report["prestop_killed"], report
    assert ended >= delay, "it keeps serving for the delay first"
    assert ended >= last_end, "it never returns with a request in flight"
    assert ended <= last_end + poll + SLACK_S, "it ends within one poll of the last stream"
    assert ended < grace, "well before the grace period"
    assert report["sigterm"] >= last_end


def test_the_drain_of_an_idle_engine_ends_after_the_delay(tmp_path: Path) -> None:
    engine, grace = rendered("vllm", tmp_path)
    delay, _ = constants(engine["lifecycle"]["preStop"]["exec"]["command"])
    report = play(engine, tmp_path, streams=0, tokens=1, grace_s=grace)
    assert report["prestop_exit"] == 0 and not report["prestop_killed"]
    assert delay <= report["prestop_ended"] <= delay + SLACK_S


def test_a_stream_longer_than_the_grace_period_is_cut_only_at_its_end(tmp_path: Path) -> None:
    """The kubelet's limit, played with a grace period shorter than the rendered one (the
    drain script does not know the grace: the kubelet enforces it)."""
    engine, _ = rendered("vllm", tmp_path)
    delay, _ = constants(engine["lifecycle"]["preStop"]["exec"]["command"])
    grace = delay + 2.0
    report = play(engine, tmp_path, streams=2, tokens=int((grace + 10) / TOKEN_INTERVAL_S),
                  grace_s=grace)
    assert report["prestop_killed"], "the hook still waited when the grace ran out"
    assert report["prestop_ended"] >= grace
    for stream in report["streams"]:
        assert not stream["done"], "the engine's SIGTERM ends the stream"
        assert stream["ended"] >= grace, "but not before the grace period"


def test_an_engine_slow_to_answer_under_load_is_not_taken_for_an_idle_one(
        tmp_path: Path) -> None:
    """/metrics answers later than the drain's 5 s timeout while streams run (a loaded
    engine): the drain must keep waiting, not end and let SIGTERM cut the streams."""
    engine, grace = rendered("vllm", tmp_path)
    delay, poll = constants(engine["lifecycle"]["preStop"]["exec"]["command"])
    tokens = int((delay + 8) / TOKEN_INTERVAL_S)
    report = play(engine, tmp_path, streams=2, tokens=tokens, grace_s=grace,
                  busy_metrics_latency_s=7.0)
    for stream in report["streams"]:
        assert stream == stream | {"done": True, "chunks": tokens, "error": ""}, report
    last_end = max(s["ended"] for s in report["streams"])
    assert last_end <= report["prestop_ended"] <= last_end + poll + 7.0 + SLACK_S


def test_a_worker_of_a_multi_node_replica_drains_with_its_leader(tmp_path: Path) -> None:
    """The worker pod serves no HTTP: its hook watches the leader's engine, at the address
    the LeaderWorkerSet controller injects (LWS_LEADER_ADDRESS; the leader here shares the
    scenario's network namespace)."""
    objects = render([yaml.safe_load((ROOT / "manifests" / "samples" / "r1-2x8-h100.yaml")
                                     .read_text())], tmp_path)
    templates = find(objects, "LeaderWorkerSet", "r1-2x8-h100")["spec"]["leaderWorkerTemplate"]
    leader, worker = ({c["name"]: c for c in templates[role]["spec"]["containers"]}["engine"]
                      for role in ("leaderTemplate", "workerTemplate"))
    assert "ports" not in worker
    delay, poll = constants(worker["lifecycle"]["preStop"]["exec"]["command"])
    tokens = int((delay + 3) / TOKEN_INTERVAL_S)
    report = play(worker, tmp_path, port=leader["ports"][0]["containerPort"],
                  extra_env={"LWS_LEADER_ADDRESS": "127.0.0.1"}, streams=2, tokens=tokens,
                  grace_s=float(templates["workerTemplate"]["spec"][
                      "terminationGracePeriodSeconds"]))
    assert all(s["done"] for s in report["streams"]), report
    last_end = max(s["ended"] for s in report["streams"])
    assert last_end <= report["prestop_ended"] <= last_end + poll + SLACK_S
