"""The operator's QPS autoscaler (mode ``operator``) against the real control plane and a
real Prometheus.

Each test creates one DeepSeekDeployment whose ``spec.autoscaling.prometheus.url`` is the
rig's Prometheus. kwok makes its pods Ready; a test-side ``PodSync`` keeps one stand-in
model server per Ready pod, registered with Prometheus under the real pod's namespace and
name; a load generator sends a set QPS over the live stand-ins. So the whole loop is real:
load -> stand-in counters -> Prometheus scrape and PromQL -> operator decision -> scale
subresource -> ReplicaSet -> kwok pods -> stand-ins.

Replica counts are polled every 0.2 s and every change is kept with its time, so "no
intermediate count" is checked, not assumed: an intermediate count would be the workload's
spec for at least one ``intervalSeconds`` (only the autoscaler's decisions change it).

The tests step the load just after a decision, seen on the operator's decisions counter.
That counter is operator-wide, so the suite expects to be the only user of the session's
operator that has DeepSeekDeployments in mode ``operator``, and no second operator on the
cluster (which would also scale these objects).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from kubernetes import client
from kubernetes.client import ApiException
from prometheus_client.parser import text_string_to_metric_families

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess
from e2e.rig.fixtures import LoadFactory
from e2e.rig.fleet import StandInFleet
from e2e.rig.load import LoadGenerator
from e2e.rig.podsync import PodSync
from e2e.rig.prometheus import PrometheusServer, free_loopback_port
from e2e.test_controller import (
    condition,
    create,
    get,
    run_kubectl,
    small_model,
)

TARGET_QPS_PER_REPLICA = 2.0
INTERVAL_S = 10
# The rate window: the rig scrapes every 1 s, so [8s] holds ~8 samples per series and
# rate() counts requests over ~7 s between the first and last one. Arrivals are discrete,
# so a series is off by at most one request: 1/7 = 0.14 req/s, well inside the 2 req/s a
# replica is worth, where the 1 m default would lag a load step by a minute. The window is
# shorter than INTERVAL_S by 2 s, so the decision after a load step made within ~1 s of
# the previous decision sees only the new rate (a pre-step second would still read > 8
# req/s at 9 offered, ceil 5).
RATE_WINDOW_S = 8
QPS_QUERY = ('sum(rate(vllm:request_success_total{namespace="{namespace}",'
             'pod=~"{pod_regex}"}' f"[{RATE_WINDOW_S}s]))")
DECISIONS_METRIC = "deepseek_operator_autoscaler_decisions"
# Slack for "seen by a poll" vs "happened": metric and replica polls are 0.2 s apart and
# one evaluation (query, status write, two patches) takes well under a second.
OBSERVE_SLACK_S = 1.5
# Bounds of every load run; the tests stop them earlier.
LOAD_MAX_REQUESTS = 20_000
LOAD_MAX_DURATION_S = 300.0


def autoscaled_model(name: str, prometheus_url: str, **autoscaling: Any) -> dict[str, Any]:
    """A one-GPU DeepSeekDeployment (distill-qwen-1.5b on A100-40GB, cache ReadWriteMany so
    replicas can share it) in mode ``operator`` reading ``QPS_QUERY`` at ``prometheus_url``;
    ``autoscaling`` overrides fields of spec.autoscaling."""
    return small_model(name, storage={"accessMode": "ReadWriteMany"}, autoscaling={
        "mode": "operator", "minReplicas": 1, "maxReplicas": 6,
        "targetQPSPerReplica": TARGET_QPS_PER_REPLICA, "intervalSeconds": INTERVAL_S,
        "scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": 300,
        "prometheus": {"url": prometheus_url, "query": QPS_QUERY}, **autoscaling})


def decisions(operator: OperatorProcess, metrics: str) -> float:
    """The operator's count of autoscaler evaluations with ``metrics`` "ok" or "missing"."""
    for family in text_string_to_metric_families(operator.metrics()):
        if family.name == DECISIONS_METRIC:
            return sum(sample.value for sample in family.samples
                       if sample.name.endswith("_total") and sample.labels["metrics"] == metrics)
    return 0.0


def wait_decisions(operator: OperatorProcess, metrics: str, count: int = 1,
                   timeout: float = INTERVAL_S + 10) -> float:
    """Wait until ``count`` more evaluations with ``metrics`` happened than when called;
    return ``time.monotonic()`` when that was seen."""
    goal = decisions(operator, metrics) + count
    wait_for(f"{count} autoscaler decision(s) with metrics={metrics}",
             lambda: decisions(operator, metrics) >= goal, timeout, interval=0.2)
    return time.monotonic()


class ReplicaRecorder:
    """Polls ``spec.replicas`` of a Deployment every ``period_s`` s in a thread and keeps
    every change as ``(time.monotonic(), replicas)``, oldest first."""

    def __init__(self, kube: client.ApiClient, namespace: str, name: str,
                 period_s: float = 0.2) -> None:
        self._apps = client.AppsV1Api(kube)
        self.namespace, self.name, self.period_s = namespace, name, period_s
        self._lock = threading.Lock()
        self._history: list[tuple[float, int]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"replicas-{name}", daemon=True)

    def start(self) -> None:
        """Begin polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stopping.set()
        self._thread.join()

    def history(self) -> list[tuple[float, int]]:
        """Every change seen, oldest first (a copy)."""
        with self._lock:
            return list(self._history)

    def current(self) -> int | None:
        """The last value seen, or None before the Deployment exists."""
        with self._lock:
            return self._history[-1][1] if self._history else None

    def values_since(self, since: float) -> list[int]:
        """The value in force at ``since`` followed by every later change."""
        history = self.history()
        before = [value for at, value in history if at <= since][-1:]
        return before + [value for at, value in history if at > since]

    def wait_for(self, replicas: int, timeout: float) -> float:
        """Wait until the Deployment asks for ``replicas``; return when that was first seen."""
        wait_for(f"Deployment {self.namespace}/{self.name} at {replicas} replicas",
                 lambda: self.current() == replicas, timeout, interval=0.1)
        return next(at for at, value in reversed(self.history()) if value == replicas)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                replicas = self._apps.read_namespaced_deployment(
                    self.name, self.namespace).spec.replicas
            except ApiException as error:
                if error.status != 404:
                    raise
            else:
                with self._lock:
                    if not self._history or self._history[-1][1] != replicas:
                        self._history.append((time.monotonic(), int(replicas)))
            self._stopping.wait(self.period_s)


@dataclass
class Scaled:
    """One autoscaled DeepSeekDeployment under test, with its load, pod sync and recorder."""

    api: client.CustomObjectsApi
    core: client.CoreV1Api
    operator: OperatorProcess
    namespace: str
    name: str
    load: LoadGenerator
    sync: PodSync
    recorder: ReplicaRecorder
    created: float = field(default_factory=time.monotonic)

    def obj(self) -> dict[str, Any]:
        """The DeepSeekDeployment as stored."""
        return get(self.api, self.namespace, self.name)

    def autoscaling(self) -> dict[str, Any]:
        """Its status.autoscaling ({} before the first decision)."""
        return dict((self.obj().get("status") or {}).get("autoscaling") or {})

    def autoscaler_ready(self) -> dict[str, Any]:
        """Its AutoscalerReady condition ({} when absent)."""
        return condition(self.obj(), "AutoscalerReady")

    def patch_spec(self, spec: dict[str, Any]) -> None:
        """Merge-patch the DeepSeekDeployment's spec."""
        self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                self.name, {"spec": spec})

    def wait_serving(self, pods: int, timeout: float = 60) -> float:
        """Wait until exactly ``pods`` Ready pods have stand-ins; return when that was."""
        def matched() -> float | None:
            self.sync.check()
            changes = self.sync.changes()
            return changes[-1].time if changes and len(changes[-1].pods) == pods else None

        return wait_for(f"{pods} serving stand-ins for {self.namespace}/{self.name}", matched,
                        timeout, interval=0.2)

    def wait_steady(self, replicas: int, qps: float, timeout: float = 90) -> dict[str, Any]:
        """Wait until the workload asks for ``replicas``, that many stand-ins serve, and a
        decision since then observed ``qps`` (within the counting error); return
        status.autoscaling of that decision."""
        self.recorder.wait_for(replicas, timeout)
        self.wait_serving(replicas, timeout)
        # The first full rate window after the last stand-in started, then one decision.
        time.sleep(RATE_WINDOW_S)
        wait_decisions(self.operator, "ok")

        def measured() -> dict[str, Any] | None:
            status = self.autoscaling()
            seen = status.get("observedQPS")
            return status if seen is not None and abs(seen - qps) <= qps_tolerance(qps) else None

        return wait_for(f"observedQPS ~ {qps}", measured, 2 * INTERVAL_S, interval=0.5)

    def scaled_events(self, reason: str = "Scaled") -> list[str]:
        """Messages of the Events of this reason ("Scaled", "ScaleOverridden",
        "ScaledByHand", "ScaleOutOfRange") on the DeepSeekDeployment, oldest first."""
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={self.name}").items
        scaled = [e for e in events if e.reason == reason
                  and e.involved_object.kind == "DeepSeekDeployment"]
        # Creation times have one-second resolution; etcd's resourceVersion orders ties.
        scaled.sort(key=lambda e: (str(e.metadata.creation_timestamp),
                                   int(e.metadata.resource_version)))
        return [str(e.message) for e in scaled]

    def report(self) -> str:
        """What happened, for a failing test's output."""
        start = self.created
        history = [(round(at - start, 2), value) for at, value in self.recorder.history()]
        pods = [(round(c.time - start, 2), len(c.pods)) for c in self.sync.changes()]
        try:
            status = self.obj().get("status")
        except ApiException as error:
            status = f"unreadable: {error.reason}"
        return (f"replicas (s since create, value): {history}\n"
                f"serving stand-ins (s, count): {pods}\n"
                f"pod sync retries: {self.sync.transient_errors()[-5:]}\n"
                f"load: {self.load.stats()}\nstatus: {status}")


class StartScaled(Protocol):
    """Creates an autoscaled DeepSeekDeployment under load (see the ``autoscaled`` fixture)."""

    def __call__(self, name: str, qps: float, **autoscaling: Any) -> Scaled:
        """Create ``name`` with ``autoscaled_model(..., **autoscaling)`` and offer ``qps``."""
        ...


def qps_tolerance(qps: float) -> float:
    """How far a measured rate may be from the offered ``qps``, req/s: the one-request
    counting error per series (see RATE_WINDOW_S) times up to 6 series, plus 5 % for
    scrapes delayed on a loaded machine."""
    return 6 / (RATE_WINDOW_S - 1) + 0.05 * qps


@pytest.fixture
def autoscaled(request: pytest.FixtureRequest, kube: client.ApiClient,
               dsd_api: client.CustomObjectsApi, namespace: str, operator: OperatorProcess,
               rig_prometheus: PrometheusServer, rig_fleet: StandInFleet,
               rig_load: LoadFactory) -> Iterator[StartScaled]:
    """Start autoscaled DeepSeekDeployments in the test's namespace; at teardown stop
    their pod syncs and recorders (the rig fixtures then stop load and stand-ins) and,
    when the test failed, print what each one did."""
    started: list[Scaled] = []

    def start(name: str, qps: float, **autoscaling: Any) -> Scaled:
        create(dsd_api, namespace, autoscaled_model(name, rig_prometheus.url, **autoscaling))
        scaled = Scaled(
            api=dsd_api, core=client.CoreV1Api(kube), operator=operator, namespace=namespace,
            name=name, load=rig_load(qps, max_requests=LOAD_MAX_REQUESTS,
                                     max_duration_s=LOAD_MAX_DURATION_S),
            sync=PodSync(kube, rig_fleet, namespace, name),
            recorder=ReplicaRecorder(kube, namespace, name))
        started.append(scaled)
        scaled.recorder.start()
        scaled.sync.start()
        return scaled

    yield start
    report = getattr(request.node, "report_call", None)
    for scaled in started:
        if report is not None and report.failed:
            print(f"--- {scaled.namespace}/{scaled.name} ---\n{scaled.report()}")
        scaled.recorder.stop()
        scaled.sync.stop()


def test_step_up_reaches_the_computed_count_in_one_decision(autoscaled: StartScaled) -> None:
    dsd = autoscaled("step-up", qps=1.0)
    dsd.wait_steady(1, qps=1.0)

    stepped = wait_decisions(dsd.operator, "ok")
    dsd.load.set_qps(9.0)
    reached = dsd.recorder.wait_for(5, timeout=3 * INTERVAL_S)
    status = dsd.autoscaling()
    obj = dsd.obj()

    print(f"\nload step 1 -> 9 req/s to 5 replicas requested: {reached - stepped:.1f} s")
    assert dsd.recorder.values_since(stepped) == [1, 5]
    # The first decision after the step made it: the next one comes an interval later.
    assert reached - stepped < INTERVAL_S + OBSERVE_SLACK_S
    assert status["computedReplicas"] == 5 and status["desiredReplicas"] == 5
    assert abs(status["observedQPS"] - 9.0) <= qps_tolerance(9.0)
    assert status["targetQPSPerReplica"] == TARGET_QPS_PER_REPLICA
    assert status["reason"].startswith("scale up 1 -> 5: ")
    assert "lastScaleTime" in status
    assert obj["spec"]["replicas"] == 5
    assert condition(obj, "AutoscalerReady")["status"] == "True"
    events = wait_for("a Scaled event", dsd.scaled_events, 15)
    assert [m.split(":")[0] for m in events] == ["scale up 1 -> 5"]
    ready = dsd.wait_serving(5)
    print(f"5 stand-ins serving {ready - stepped:.1f} s after the step")


def test_a_burst_shorter_than_the_up_window_adds_nothing_and_a_lasting_step_does(
        autoscaled: StartScaled) -> None:
    window = 30
    dsd = autoscaled("up-window", qps=1.0, scaleUpStabilizationSeconds=window)
    dsd.wait_steady(1, qps=1.0)

    burst = wait_decisions(dsd.operator, "ok")
    dsd.load.set_qps(9.0)
    seen = wait_for("a decision that computed more replicas", lambda: (
        lambda status: status if status.get("computedReplicas", 0) > 1 else None)(
            dsd.autoscaling()), 3 * INTERVAL_S)
    dsd.load.set_qps(1.0)
    assert "lowest recommendation in the last 30.0 s is 1" in seen["reason"], seen
    wait_decisions(dsd.operator, "ok", count=3, timeout=4 * INTERVAL_S)
    assert dsd.recorder.values_since(burst) == [1]

    stepped = wait_decisions(dsd.operator, "ok")
    dsd.load.set_qps(9.0)
    reached = dsd.recorder.wait_for(5, timeout=window + 4 * INTERVAL_S)
    changes = [(at, count) for at, count in dsd.recorder.history() if at > stepped]
    print(f"\nlasting step 1 -> 9 req/s to 5 replicas requested: {reached - stepped:.1f} s "
          f"(up window {window} s); counts {[count for _, count in changes]}")
    # The window holds every scale-up until the step has lasted it, less one interval
    # (the decision that first saw the step may be up to one interval late).
    assert changes[0][0] - stepped >= window - INTERVAL_S - OBSERVE_SLACK_S
    assert changes[-1][1] == 5


def test_step_down_waits_out_the_window_then_goes_straight_down(
        autoscaled: StartScaled) -> None:
    window = 20
    dsd = autoscaled("step-down", qps=9.0, scaleDownStabilizationSeconds=window)
    dsd.wait_steady(5, qps=9.0)

    stepped = wait_decisions(dsd.operator, "ok")
    dsd.load.set_qps(3.0)
    # Window, then up to one interval for the floor to settle, one to act, and slack.
    dropped = dsd.recorder.wait_for(2, timeout=window + 3 * INTERVAL_S + 10)
    status = dsd.autoscaling()

    print(f"\nload step 9 -> 3 req/s to 2 replicas requested: {dropped - stepped:.1f} s "
          f"(window {window} s)")
    assert dsd.recorder.values_since(stepped) == [5, 2]
    # The decision just before the step recommended 5 and stays in the window for
    # `window` seconds; it was made at most OBSERVE_SLACK_S before we saw it.
    assert dropped - stepped >= window - OBSERVE_SLACK_S
    assert status["computedReplicas"] == 2 and status["desiredReplicas"] == 2
    assert abs(status["observedQPS"] - 3.0) <= qps_tolerance(3.0)
    assert dsd.obj()["spec"]["replicas"] == 2
    events = wait_for("the scale-down Event", lambda: (
        lambda found: found if found and found[-1].startswith("scale down") else None)(
            dsd.scaled_events()), 15)
    # How the start reached 5 depends on how fast the stand-ins serve on a loaded machine
    # (1 -> 5 at once, or in steps while one replica caps the rate): only up, to 5.
    ups, down = [m.split(":")[0] for m in events[:-1]], events[-1].split(":")[0]
    assert ups and all(m.startswith("scale up") for m in ups) and ups[-1].endswith("-> 5"), ups
    assert down == "scale down 5 -> 2", "one step down, straight to the new floor"


def test_prometheus_outage_holds_replicas_and_recovery_clears_it(
        autoscaled: StartScaled, rig_prometheus: PrometheusServer) -> None:
    # No down window: were a missing metric read as "no traffic", the next decision
    # would drop to minReplicas, so holding 3 proves it is not.
    dsd = autoscaled("outage", qps=5.0, scaleDownStabilizationSeconds=0)
    dsd.wait_steady(3, qps=5.0)
    assert dsd.autoscaler_ready()["status"] == "True"

    dead = f"http://127.0.0.1:{free_loopback_port()}"
    went_out = time.monotonic()
    dsd.patch_spec({"autoscaling": {"prometheus": {"url": dead}}})
    dsd.load.set_qps(0.0)
    out = wait_for("AutoscalerReady=False", lambda: (
        lambda c: c if c.get("status") == "False" else None)(dsd.autoscaler_ready()),
        INTERVAL_S + 10)
    print(f"\nAutoscalerReady=False {time.monotonic() - went_out:.1f} s after the outage")
    assert out["reason"] == "MetricsUnavailable"
    assert f"Prometheus at {dead} refused the connection" in out["message"]
    assert "holding 3 replicas" in out["message"]
    status = dsd.autoscaling()
    assert "observedQPS" not in status and "computedReplicas" not in status
    assert status["desiredReplicas"] == 3

    # Traffic comes back while Prometheus is still out of reach; two more evaluations
    # without data must still hold.
    dsd.load.set_qps(5.0)
    wait_decisions(dsd.operator, "missing", count=2, timeout=2 * INTERVAL_S + 10)
    assert dsd.recorder.values_since(went_out) == [3]
    assert dsd.obj()["spec"]["replicas"] == 3

    # Without metrics, a count set by hand is the best there is: it stands, and is said.
    by_hand = time.monotonic()
    dsd.api.patch_namespaced_custom_object_scale(GROUP, VERSION, dsd.namespace, PLURAL,
                                                 dsd.name, {"spec": {"replicas": 4}})
    dsd.recorder.wait_for(4, timeout=2 * INTERVAL_S + 10)
    wait_decisions(dsd.operator, "missing", count=1, timeout=INTERVAL_S + 10)
    assert dsd.recorder.values_since(by_hand) == [3, 4], "held, not reverted"
    assert dsd.obj()["spec"]["replicas"] == 4
    assert any("spec.replicas 4 set by hand stands" in m
               for m in dsd.scaled_events("ScaledByHand"))

    recovered = time.monotonic()
    dsd.patch_spec({"autoscaling": {"prometheus": {"url": rig_prometheus.url}}})
    back = wait_for("AutoscalerReady=True", lambda: (
        lambda c: c if c.get("status") == "True" else None)(dsd.autoscaler_ready()),
        INTERVAL_S + 10)
    print(f"AutoscalerReady=True {time.monotonic() - recovered:.1f} s after recovery")
    assert back["reason"] == "MetricsAvailable"
    assert back["lastTransitionTime"] >= out["lastTransitionTime"]
    status = dsd.autoscaling()
    assert abs(status["observedQPS"] - 5.0) <= qps_tolerance(5.0)
    assert status["computedReplicas"] == 3
    dsd.recorder.wait_for(3, timeout=60)  # the metrics decide again: back to 3
    assert dsd.recorder.values_since(went_out) == [3, 4, 3]


def test_min_and_max_bounds_hold(autoscaled: StartScaled) -> None:
    dsd = autoscaled("bounds", qps=0.0, minReplicas=2, maxReplicas=3,
                     scaleDownStabilizationSeconds=0)
    idle = dsd.wait_steady(2, qps=0.0)
    since = time.monotonic()
    wait_decisions(dsd.operator, "ok")
    status = dsd.autoscaling()
    assert idle["computedReplicas"] == 0 and status["computedReplicas"] == 0
    assert status["desiredReplicas"] == 2
    assert "clamped to minReplicas 2" in status["reason"]
    assert dsd.recorder.values_since(since) == [2]

    # 16 req/s at 2 per replica computes 8, far above maxReplicas.
    dsd.load.set_qps(16.0)
    stepped = time.monotonic()
    busy = dsd.wait_steady(3, qps=16.0)
    wait_decisions(dsd.operator, "ok")
    status = dsd.autoscaling()
    assert dsd.recorder.values_since(stepped) == [2, 3]
    assert busy["computedReplicas"] > 3 and status["computedReplicas"] > 3
    assert status["desiredReplicas"] == 3
    assert "clamped to maxReplicas 3" in status["reason"]
    assert dsd.obj()["spec"]["replicas"] == 3

    # A hand-set count above the range is not taken silently: the Event names it.
    dsd.api.patch_namespaced_custom_object_scale(GROUP, VERSION, dsd.namespace, PLURAL,
                                                 dsd.name, {"spec": {"replicas": 9}})
    capped = wait_for("a ScaleOutOfRange event", lambda: dsd.scaled_events(
        "ScaleOutOfRange"), 2 * INTERVAL_S + 10)
    assert capped[-1] == ("spec.replicas 9 set by hand is outside autoscaling.minReplicas.."
                          "maxReplicas (2..3): the autoscaler took 3; change the range to "
                          "scale further"), capped
    assert dsd.recorder.values_since(stepped) == [2, 3]


def test_kubectl_scale_is_corrected(autoscaled: StartScaled, kube: client.ApiClient,
                                    kubectl: Path, kubeconfig: Path) -> None:
    dsd = autoscaled("hand-scaled", qps=5.0)
    dsd.wait_steady(3, qps=5.0)
    apps = client.AppsV1Api(kube)
    scale = ("scale", "-n", dsd.namespace)

    # A correction can be quicker than a poll, so generations prove the edit happened:
    # one bump for the hand edit, one for the correction.
    generation = dsd.obj()["metadata"]["generation"]
    edited = time.monotonic()
    run_kubectl(kubectl, kubeconfig, *scale, f"dsd/{dsd.name}", "--replicas=5")
    wait_for("the DeepSeekDeployment back at spec.replicas 3", lambda: (
        lambda o: o["spec"]["replicas"] == 3 and o["metadata"]["generation"] == generation + 2)(
            dsd.obj()), 2 * INTERVAL_S + 5, interval=0.2)
    print(f"\nkubectl scale dsd --replicas=5 undone in {time.monotonic() - edited:.1f} s")
    assert dsd.recorder.values_since(edited) == [3], "the workload never follows the edit"
    overridden = wait_for("a ScaleOverridden event", lambda: dsd.scaled_events(
        "ScaleOverridden"), 10)
    assert "spec.replicas 5 was set by hand" in overridden[-1]
    assert "set autoscaling.mode none to scale by hand" in overridden[-1]

    generation = apps.read_namespaced_deployment(dsd.name, dsd.namespace).metadata.generation
    edited = time.monotonic()
    run_kubectl(kubectl, kubeconfig, *scale, f"deployment/{dsd.name}", "--replicas=1")
    wait_for("the Deployment back at 3 replicas", lambda: (
        lambda d: d.spec.replicas == 3 and d.metadata.generation == generation + 2)(
            apps.read_namespaced_deployment(dsd.name, dsd.namespace)),
        2 * INTERVAL_S + 5, interval=0.2)
    print(f"kubectl scale deployment --replicas=1 undone in {time.monotonic() - edited:.1f} s")
    dsd.recorder.wait_for(3, timeout=5)  # the recorder polls; let it catch up
    assert dsd.recorder.values_since(edited) in ([3], [3, 1, 3])
    assert dsd.obj()["spec"]["replicas"] == 3
    assert dsd.autoscaling()["desiredReplicas"] == 3
    dsd.wait_serving(3)


def test_bad_query_override_holds_and_is_reported_naming_the_field(
        autoscaled: StartScaled) -> None:
    dsd = autoscaled("bad-query", qps=1.0)
    dsd.wait_steady(1, qps=1.0)

    since = time.monotonic()
    dsd.patch_spec({"autoscaling": {"prometheus": {
        "query": QPS_QUERY.replace("{pod_regex}", "{pods}")}}})
    refused = wait_for("AutoscalerReady=False", lambda: (
        lambda c: c if c.get("status") == "False" else None)(dsd.autoscaler_ready()),
        INTERVAL_S + 10)
    assert refused["reason"] == "InvalidQuery"
    assert refused["message"].startswith(
        "spec.autoscaling.prometheus.query: unknown placeholder {pods}")
    assert "holding 1 replicas" in refused["message"]
    # The reconcile refuses the spec too; the workload keeps running meanwhile.
    stalled = condition(dsd.obj(), "Stalled")
    assert stalled["status"] == "True" and "spec.autoscaling.prometheus.query" in stalled[
        "message"]

    dsd.patch_spec({"autoscaling": {"prometheus": {"query": QPS_QUERY}}})
    fixed = wait_for("AutoscalerReady=True", lambda: (
        lambda c: c if c.get("status") == "True" else None)(dsd.autoscaler_ready()),
        INTERVAL_S + 10)
    assert fixed["reason"] == "MetricsAvailable"
    assert dsd.recorder.values_since(since) == [1]
