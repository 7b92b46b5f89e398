"""e2e tests of the autoscaler rig with a real Prometheus (no cluster needed).

They prove the pieces the autoscaler e2e tests stand on: a stand-in answers the OpenAI API
and exports engine metrics, Prometheus scrapes the live stand-ins through file SD with the
labels the default query filters on, a set load is measured as that rate, and everything
started is stopped again.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from e2e.rig.fixtures import RIG_MODEL, LoadFactory, start_prometheus

# pytest finds fixtures by name in the module; "as" re-exports them explicitly.
from e2e.rig.fixtures import rig_fleet as rig_fleet
from e2e.rig.fixtures import rig_load as rig_load
from e2e.rig.fixtures import rig_prometheus as rig_prometheus
from e2e.rig.fleet import StandInFleet, SyncResult
from e2e.rig.load import LoadGenerator
from e2e.rig.model_server import Engine
from e2e.rig.prometheus import (
    INSTANCE_LABEL,
    NAMESPACE_LABEL,
    POD_LABEL,
    PrometheusNotInstalledError,
    PrometheusServer,
)

pytestmark = pytest.mark.e2e

SCRAPE_INTERVAL_S = 1.0
RATE_WINDOW_S = 10
OFFERED_QPS = 4.0
# rate() over a 10 s window at a 1 s scrape interval sees ~9 s between a series' first and
# last sample; arrivals are discrete, so each series' increase is off by up to 1 request:
# 1/9 = 0.11 req/s per series, 0.22 for two. A scrape delayed by CPU contention (2 cores
# shared with a Go build) can shift one more request per series: another 0.22. 0.6 req/s
# (15 %) covers both with a little room and still rejects a rate off by one stand-in (2).
RATE_TOLERANCE_QPS = 0.6


def _labels(instance: str) -> dict[str, str]:
    return {NAMESPACE_LABEL: "ai", INSTANCE_LABEL: instance}


def _metric(text: str, sample_name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(
                    sample.labels.get(key) == value for key, value in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {sample_name}{labels} in:\n{text}")


def _chat(base_url: str, content: str, **extra: object) -> requests.Response:
    body = {"model": RIG_MODEL, "messages": [{"role": "user", "content": content}], **extra}
    return requests.post(f"{base_url}/v1/chat/completions", json=body, timeout=10)


def _wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.1)


def _processes_matching(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-a", "-f", "--", pattern], capture_output=True,
                           text=True, check=False)
    return found.stdout.splitlines()


def test_stand_in_serves_the_openai_api(tmp_path: Path) -> None:
    with StandInFleet(tmp_path, model=RIG_MODEL, engine="vllm") as fleet:
        fleet.sync({"r1-api": _labels("api-test")})
        (stand_in,) = fleet.stand_ins()
        url = stand_in.base_url

        assert requests.get(f"{url}/health", timeout=5).status_code == 200
        models = requests.get(f"{url}/v1/models", timeout=5).json()
        assert [model["id"] for model in models["data"]] == [RIG_MODEL]

        chat = _chat(url, "three word prompt")
        assert chat.status_code == 200
        reply = chat.json()
        assert reply["choices"][0]["finish_reason"] == "stop"
        assert "r1-api" in reply["choices"][0]["message"]["content"]
        words = len(reply["choices"][0]["message"]["content"].split())
        assert reply["usage"] == {"prompt_tokens": 3, "completion_tokens": words,
                                  "total_tokens": 3 + words}
        assert _chat(url, "three word prompt").json()["choices"] == reply["choices"]

        completion = requests.post(f"{url}/v1/completions", timeout=5,
                                   json={"model": RIG_MODEL, "prompt": "a b", "max_tokens": 2})
        assert completion.json()["choices"][0] == {"index": 0, "text": "Hello from",
                                                   "finish_reason": "length"}
        assert completion.json()["usage"]["completion_tokens"] == 2

        no_messages = requests.post(f"{url}/v1/chat/completions", json={"model": RIG_MODEL},
                                    timeout=5)
        assert no_messages.status_code == 400
        assert no_messages.json()["error"]["param"] == "messages"
        wrong_model = requests.post(f"{url}/v1/chat/completions", timeout=5, json={
            "model": "other", "messages": [{"role": "user", "content": "x"}]})
        assert wrong_model.status_code == 404
        assert wrong_model.json()["error"]["param"] == "model"
    assert stand_in.process.returncode == 0, "SIGTERM should end the stand-in cleanly"


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_stand_in_counts_finished_requests_under_engine_names(tmp_path: Path,
                                                               engine: Engine) -> None:
    with StandInFleet(tmp_path, model=RIG_MODEL, engine=engine) as fleet:
        fleet.sync({"r1-metrics": _labels("metrics-test")})
        url = fleet.endpoints()[0]
        for _ in range(2):
            _chat(url, "hi").raise_for_status()
        _chat(url, "hi", max_tokens=3).raise_for_status()
        text = requests.get(f"{url}/metrics", timeout=5).text

    if engine == "vllm":
        ours = {"model_name": RIG_MODEL, "engine": "0"}
        success = "vllm:request_success_total"
        assert _metric(text, success, finished_reason="stop", **ours) == 2
        assert _metric(text, success, finished_reason="length", **ours) == 1
        assert _metric(text, success, finished_reason="abort", **ours) == 0
        for gauge in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc"):
            assert _metric(text, f"vllm:{gauge}", **ours) == 0
        assert "sglang:" not in text
    else:
        ours = {"model_name": RIG_MODEL}
        assert _metric(text, "sglang:num_requests_total", **ours) == 3
        for gauge in ("num_running_reqs", "num_queue_reqs", "token_usage"):
            assert _metric(text, f"sglang:{gauge}", **ours) == 0
        # 2 full replies of 12 words and one cut to 3, averaged over the 5 s window.
        assert _metric(text, "sglang:gen_throughput", **ours) == pytest.approx(27 / 5)
        assert "vllm:" not in text


def test_gauges_follow_running_and_waiting_requests(tmp_path: Path) -> None:
    one_slot = ["--max-num-seqs", "1", "--latency-seconds", "2"]
    with StandInFleet(tmp_path, model=RIG_MODEL, engine="vllm", server_args=one_slot) as fleet:
        fleet.sync({"r1-busy": _labels("gauge-test")})
        url = fleet.endpoints()[0]

        def gauges() -> tuple[float, float, float]:
            text = requests.get(f"{url}/metrics", timeout=5).text
            return (_metric(text, "vllm:num_requests_running"),
                    _metric(text, "vllm:num_requests_waiting"),
                    _metric(text, "vllm:kv_cache_usage_perc"))

        clients = [threading.Thread(target=_chat, args=(url, "hi")) for _ in range(2)]
        for client in clients:
            client.start()
        # The state holds for 2 s, until the first request ends; a miss fails the wait.
        _wait_until(lambda: gauges() == (1, 1, 1.0), 5, "one request running, one waiting")
        for client in clients:
            client.join()
        assert gauges() == (0, 0, 0.0)


def test_fleet_rejects_labels_the_query_cannot_use(tmp_path: Path) -> None:
    fleet = StandInFleet(tmp_path, model=RIG_MODEL, engine="vllm")
    with pytest.raises(ValueError, match=f"pod r1-x: labels miss \\['{INSTANCE_LABEL}'\\]"):
        fleet.sync({"r1-x": {NAMESPACE_LABEL: "ai"}})
    with pytest.raises(ValueError, match="label name 'bad-name'"):
        fleet.sync({"r1-x": {**_labels("x"), "bad-name": "v"}})
    with pytest.raises(ValueError, match=f"label {POD_LABEL}='r1-y' contradicts"):
        fleet.sync({"r1-x": {**_labels("x"), POD_LABEL: "r1-y"}})
    assert fleet.stand_ins() == [] and fleet.leftover_pids() == []


def test_load_run_is_bounded_and_follows_set_qps(tmp_path: Path) -> None:
    with StandInFleet(tmp_path, model=RIG_MODEL, engine="vllm") as fleet:
        fleet.sync({"r1-load": _labels("load-test")})

        paused = LoadGenerator(fleet.endpoints, model=RIG_MODEL, qps=0, max_requests=5,
                               max_duration_s=10)
        paused.start()
        time.sleep(0.5)
        assert paused.stats().sent == 0
        paused.set_qps(50)
        by_count = paused.join(timeout_s=5)
        assert (by_count.sent, by_count.succeeded, by_count.failed) == (5, 5, 0)

        timed = LoadGenerator(fleet.endpoints, model=RIG_MODEL, qps=4, max_requests=1000,
                              max_duration_s=1.0)
        timed.start()
        by_time = timed.join(timeout_s=5)
        # Due at 0, 0.25, 0.5 and 0.75 s; the one at 1.0 s may or may not make the cut.
        assert 4 <= by_time.sent <= 5 and by_time.failed == 0

    nowhere = LoadGenerator(list, model=RIG_MODEL, qps=50, max_requests=3, max_duration_s=5)
    nowhere.start()
    assert nowhere.join(timeout_s=5).unrouted == 3


def test_load_run_refuses_non_loopback_targets() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): nothing answers there, and nothing is sent.
    run = LoadGenerator(lambda: ["http://192.0.2.10:8000"], model=RIG_MODEL, qps=50,
                        max_requests=3, max_duration_s=5)
    run.start()
    with pytest.raises(ValueError, match=r"192\.0\.2\.10.*loopback"):
        run.join(timeout_s=5)
    assert run.stats().sent == 0


def test_prometheus_measures_the_offered_rate(rig_prometheus: PrometheusServer,
                                              rig_fleet: StandInFleet,
                                              rig_load: LoadFactory) -> None:
    instance = "rate-test"
    rig_fleet.sync({"r1-rate-a": _labels(instance), "r1-rate-b": _labels(instance)})
    targets = rig_prometheus.wait_for_up_targets(2)
    assert sorted((t["labels"][POD_LABEL], t["labels"][NAMESPACE_LABEL],
                   t["labels"][INSTANCE_LABEL]) for t in targets) == [
        ("r1-rate-a", "ai", instance), ("r1-rate-b", "ai", instance)]

    run = rig_load(OFFERED_QPS, max_duration_s=30)
    # A full window of steady load plus two scrapes, so the window holds no start-up edge.
    time.sleep(RATE_WINDOW_S + 2 * SCRAPE_INTERVAL_S)
    query = (f'sum(rate(vllm:request_success_total{{{INSTANCE_LABEL}="{instance}"}}'
             f"[{RATE_WINDOW_S}s]))")
    readings = []
    for _ in range(3):
        (result,) = rig_prometheus.client().custom_query(query=query)
        readings.append(float(result["value"][1]))
        time.sleep(SCRAPE_INTERVAL_S)
    stats = run.stop()

    print(f"\noffered {OFFERED_QPS} req/s; Prometheus measured {readings}; load {stats}")
    assert stats.failed == 0 and stats.unrouted == 0
    assert abs(stats.per_endpoint[rig_fleet.endpoints()[0]]
               - stats.per_endpoint[rig_fleet.endpoints()[1]]) <= 1, "round-robin split"
    assert all(abs(reading - OFFERED_QPS) <= RATE_TOLERANCE_QPS for reading in readings)


def test_fleet_changes_reach_prometheus_targets(rig_prometheus: PrometheusServer,
                                                rig_fleet: StandInFleet) -> None:
    labels = _labels("removal-test")
    rig_fleet.sync({"r1-keep": labels, "r1-drop": labels})
    rig_prometheus.wait_for_up_targets(2)
    dropped = next(s for s in rig_fleet.stand_ins() if s.pod == "r1-drop")

    assert rig_fleet.sync({"r1-keep": labels}) == SyncResult(started=[], stopped=["r1-drop"])
    assert dropped.process.returncode == 0
    began = time.monotonic()
    (target,) = rig_prometheus.wait_for_up_targets(1)
    print(f"\ntarget removal seen by Prometheus after {time.monotonic() - began:.2f} s")
    assert target["labels"][POD_LABEL] == "r1-keep"
    (kept,) = rig_fleet.stand_ins()
    assert rig_fleet.endpoints() == [kept.base_url]

    relabelled = _labels("relabel-test")
    assert rig_fleet.sync({"r1-keep": relabelled}) == SyncResult(started=[], stopped=[])
    assert rig_fleet.stand_ins()[0].process.pid == kept.process.pid, "relabel, not restart"
    _wait_until(lambda: [t["labels"][INSTANCE_LABEL] for t in rig_prometheus.active_targets()]
                == ["relabel-test"], 10, "relabelled target")


def test_rig_leaves_no_process_behind(tmp_path: Path) -> None:
    pod = f"r1-leftover-{uuid.uuid4().hex[:8]}"
    prometheus = start_prometheus(tmp_path / "prometheus")
    try:
        with StandInFleet(tmp_path / "fleet", model=RIG_MODEL, engine="sglang",
                          prometheus=prometheus) as fleet:
            fleet.sync({pod: _labels("leftover-test")})
            prometheus.wait_for_up_targets(1)
            (series,) = prometheus.client().custom_query(
                query=f'sglang:num_requests_total{{{POD_LABEL}="{pod}"}}')
            assert series["metric"][INSTANCE_LABEL] == "leftover-test"
            assert _processes_matching(f"--pod {pod}")
            assert _processes_matching(str(prometheus.config_file))
    finally:
        prometheus.stop()

    assert fleet.leftover_pids() == []
    assert not prometheus.is_running()
    assert not prometheus.data_dir.exists()
    assert _processes_matching(f"--pod {pod}") == []
    assert _processes_matching(str(prometheus.config_file)) == []


def test_missing_prometheus_says_how_to_install(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path, binary=tmp_path / "no-such-prometheus")
    with pytest.raises(PrometheusNotInstalledError, match="make system-deps"):
        server.start()
