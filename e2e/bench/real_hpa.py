"""Replay a time-compressed segment of the benchmark's trace through the real HPA
controller and compare its decisions with the model of e2e/bench/hpa.py.

The benchmark's "hpa" column comes from our model of the HPA algorithm. This checks the
model against kube-controller-manager itself (the pinned Kubernetes, on the local control
plane), on the stretch of the trace where the model changes the count most often:

- time is compressed by ``FACTOR`` = the model's sync period (15 s, the HPA default)
  over the rig's (``--horizontal-pod-autoscaler-sync-period=5s``): one wall second is
  ``FACTOR`` trace seconds. The HPA's ``behavior`` gets the default policies and windows
  (e2e/bench/hpa.py) divided by the same factor: scale up by max(4 pods, 100 %) per 5 s,
  down by 100 % per 5 s, down window 100 s;
- the metric is what the simulation gives the model: the mean offered rate of the last
  ``metric_window_seconds`` trace seconds. A small exporter publishes it split evenly over
  the Deployment's current pods as the gauge ``METRIC`` (per pod, labels namespace and
  pod); the rig's Prometheus scrapes it every second, prometheus-adapter (with
  ``RULES``) serves it as a Pods metric, and an HPA of the same shape as the operator's
  (type Pods, AverageValue = the per-replica throughput) reads it. With every pod
  reporting, the HPA computes ceil(sum / target), as the model does;
- the Deployment's pods are kwok pods (Ready at once): the HPA's inputs are the pod
  count and the metric, not readiness (readiness only matters for CPU metrics).

Two comparisons. Open loop (``same_inputs``): at each sync of the real controller, the
model is given exactly what that controller read (its current count, the metric total)
and must decide the same: the algorithm check, free of timing. Closed loop: the model is
replayed on the same segment with its own count as current,
deciding every 15 trace seconds from the same start. The comparison: each change of
count of one is matched with a change to the same count by the other within one sync
period (15 trace seconds); the share of trace seconds where the counts agree, exactly and
within one sync period of shift; and the largest difference of counts left within one
sync period. The real controller reads the metric 1-2 wall seconds late (the exporter's
tick, Prometheus' 1 s scrape, the adapter's query), i.e. 3-6 trace seconds: while the rate
moves, it can land one or two replicas from the model at the same sync.
"""

from __future__ import annotations

import http.server
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml
from kubernetes import client
from kubernetes.utils import parse_quantity

from e2e.bench.hpa import (
    POLICY_PERIOD_SECONDS,
    SCALE_DOWN_PERCENT,
    SCALE_UP_PERCENT,
    SCALE_UP_PODS,
    HorizontalPodAutoscalerModel,
)
from e2e.bench.simulate import SimConfig
from e2e.cluster import metrics_adapter
from e2e.kube import wait_for
from e2e.rig.prometheus import PrometheusServer, ScrapeTarget

RIG_SYNC_SECONDS = 5
"""The rig's --horizontal-pod-autoscaler-sync-period (e2e/cluster/controlplane.py)."""
DOWN_WINDOW_SECONDS = 300
METRIC = "deepseek_bench_offered_qps_per_pod"
RULES: dict[str, Any] = {"rules": [{
    "seriesQuery": f'{{__name__="{METRIC}",namespace!="",pod!=""}}',
    "resources": {"overrides": {"namespace": {"resource": "namespace"},
                                "pod": {"resource": "pod"}}},
    "name": {"matches": ".*", "as": METRIC},
    "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
}]}
"""prometheus-adapter rule of the replay: the exporter's gauge as it is (no rate: the
exporter already publishes the windowed mean the model sees)."""
NAME = "hpa-replay"
TICK_SECONDS = 0.25


@dataclass(frozen=True)
class Replay:
    """The outcome of one replay; times are trace seconds from the segment's start.

    Attributes:
        start: the segment's first second in the trace.
        seconds: its length in trace seconds.
        factor: trace seconds per wall second.
        real: (time, count) changes of the Deployment's spec.replicas, first entry the start.
        model: (time, count) changes of the model's decisions, first entry the start.
        syncs: what the real controller wrote into the HPA's status at each sync seen
            (time, currentReplicas, desiredReplicas, the metric total it read: per-pod
            averageValue x currentReplicas); a sync that changed nothing writes nothing.
    """

    start: int
    seconds: int
    factor: float
    real: list[tuple[float, int]]
    model: list[tuple[float, int]]
    syncs: list[tuple[float, int, int, float]] = field(default_factory=list)


def busiest_segment(counts: npt.NDArray[np.int64], seconds: int) -> int:
    """Start of the ``seconds``-long window of ``counts`` (replicas per second) with the
    most changes of count."""
    changes = np.concatenate([[0], (np.diff(counts) != 0).astype(np.int64)])
    per_window = np.convolve(changes, np.ones(seconds, dtype=np.int64), mode="valid")
    return int(np.argmax(per_window))


def _observed(cumulative: npt.NDArray[np.float64], t: float, window: int) -> float:
    """The simulation's metric at trace second ``t``: the mean offered rate of the last
    ``window`` seconds (simulate.py), interpolated between whole seconds."""
    def area(x: float) -> float:
        whole = min(int(x), len(cumulative) - 2)
        return float(cumulative[whole] + (x - whole) * (cumulative[whole + 1]
                                                        - cumulative[whole]))
    start = max(0.0, t - window)
    return (area(t) - area(start)) / (t - start) if t > start else 0.0


def model_replay(trace: npt.NDArray[np.float64], sim: SimConfig, start: int, seconds: int,
                 initial: int) -> list[tuple[float, int]]:
    """The model's counts over the segment, deciding every ``sim.interval_seconds``
    in closed loop from ``initial``; (time from start, count) at each change."""
    cumulative = np.concatenate([[0.0], np.cumsum(trace)])
    model = HorizontalPodAutoscalerModel(min_replicas=sim.min_replicas,
                                         max_replicas=sim.max_replicas,
                                         target_per_pod=sim.throughput_qps)
    current, changes = initial, [(0.0, initial)]
    for offset in range(0, seconds, sim.interval_seconds):
        desired = model.decide(float(start + offset),
                               _observed(cumulative, start + offset, sim.metric_window_seconds),
                               current)
        if desired != current:
            changes.append((float(offset), desired))
            current = desired
    return changes


class _Exporter:
    """Serves ``METRIC`` for the pods it is given on a loopback port, in Prometheus'
    text format; thread-safe."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._values: dict[str, float] = {}
        self._lock = threading.Lock()
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        """Begin serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def set(self, values: dict[str, float]) -> None:
        """Replace the published values: {pod name: requests/s}."""
        with self._lock:
            self._values = dict(values)

    def text(self) -> str:
        """The exposition text of the current values."""
        with self._lock:
            lines = [f'{METRIC}{{namespace="{self.namespace}",pod="{pod}"}} {value:.6f}'
                     for pod, value in sorted(self._values.items())]
        return f"# TYPE {METRIC} gauge\n" + "\n".join(lines) + "\n"


def _scaled(seconds: float, factor: float) -> int:
    return max(1, round(seconds / factor))


def hpa_manifest(sim: SimConfig, factor: float) -> dict[str, Any]:
    """The replay's HorizontalPodAutoscaler: the operator's shape (Pods metric,
    AverageValue) with the default behavior of autoscaling/v2 compressed by ``factor``."""
    period = _scaled(POLICY_PERIOD_SECONDS, factor)
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": sim.min_replicas, "maxReplicas": sim.max_replicas,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": METRIC},
                "target": {"type": "AverageValue",
                           "averageValue": f"{round(sim.throughput_qps * 1000)}m"}}}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                            "policies": [
                                {"type": "Pods", "value": SCALE_UP_PODS, "periodSeconds": period},
                                {"type": "Percent", "value": SCALE_UP_PERCENT,
                                 "periodSeconds": period}]},
                "scaleDown": {"stabilizationWindowSeconds": _scaled(DOWN_WINDOW_SECONDS, factor),
                              "policies": [{"type": "Percent", "value": SCALE_DOWN_PERCENT,
                                            "periodSeconds": period}]},
            },
        },
    }


def _deployment(replicas: int) -> dict[str, Any]:
    """A Deployment of placeholder kwok pods (they run nothing)."""
    labels = {"app": NAME}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "replay", "image": "replay:kwok",
                                     "resources": {"requests": {"cpu": "10m"}}}],
                     "tolerations": [{"operator": "Exists"}],
                     "terminationGracePeriodSeconds": 0}}},
    }


def replay(kube: client.ApiClient, prometheus: PrometheusServer, workdir: Path,
           trace: npt.NDArray[np.float64], sim: SimConfig, start: int,
           seconds: int) -> Replay:
    """Replay trace seconds ``[start, start + seconds)`` through the real HPA controller
    of the running local control plane (module docstring) and the model; takes about
    ``seconds / FACTOR`` wall seconds plus a warm-up. Starts prometheus-adapter on
    ``prometheus`` (stopped at the end) and works in a namespace of its own (deleted).

    Raises TimeoutError when the HPA never reads the metric.
    """
    factor = sim.interval_seconds / RIG_SYNC_SECONDS
    cumulative = np.concatenate([[0.0], np.cumsum(trace)])
    initial = min(max(math.ceil(_observed(cumulative, start, sim.metric_window_seconds)
                                / sim.throughput_qps), sim.min_replicas), sim.max_replicas)
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    scaling = client.AutoscalingV2Api(kube)
    namespace = f"bench-hpa-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    exporter = _Exporter(namespace)
    exporter.start()
    rules = workdir / "replay-adapter-rules.yaml"
    rules.write_text(yaml.safe_dump(RULES, sort_keys=False))
    try:
        prometheus.set_targets([ScrapeTarget(exporter.address)])
        metrics_adapter.start(prometheus.url, rules_file=rules)
        apps.create_namespaced_deployment(namespace, _deployment(initial))

        def pods() -> list[str]:
            found = core.list_namespaced_pod(namespace, label_selector=f"app={NAME}").items
            return [str(p.metadata.name) for p in found
                    if p.metadata.deletion_timestamp is None]

        def publish(t: float) -> None:
            names = pods()
            value = _observed(cumulative, t, sim.metric_window_seconds)
            exporter.set({name: value / len(names) for name in names} if names else {})

        wait_for(f"{initial} replay pods", lambda: len(pods()) == initial, 60, interval=0.2)
        publish(start)
        scaling.create_namespaced_horizontal_pod_autoscaler(namespace, hpa_manifest(sim, factor))

        def active() -> bool:
            hpa = scaling.read_namespaced_horizontal_pod_autoscaler(NAME, namespace)
            return any(c.type == "ScalingActive" and c.status == "True"
                       for c in hpa.status.conditions or [])

        # Warm-up at the first second's value: the HPA must read the metric before the
        # clock starts (its first sync also records the current count, as the model's).
        wait_for("the HPA reading the replay metric", active, 60, interval=0.5)
        real: list[tuple[float, int]] = [(0.0, initial)]
        syncs: list[tuple[float, int, int, float]] = []
        seen: Any = None
        began = time.monotonic()
        while (elapsed := (time.monotonic() - began) * factor) <= seconds:
            publish(start + elapsed)
            replicas = apps.read_namespaced_deployment(NAME, namespace).spec.replicas
            if replicas != real[-1][1]:
                real.append((round(elapsed, 1), int(replicas)))
            status = scaling.read_namespaced_horizontal_pod_autoscaler(NAME, namespace).status
            sync = _sync(status)
            if sync is not None and sync != seen:
                seen = sync
                syncs.append((round(elapsed, 1), *sync))
            time.sleep(TICK_SECONDS)
    finally:
        metrics_adapter.stop()
        prometheus.set_targets([])
        exporter.stop()
        core.delete_namespace(namespace)
    return Replay(start, seconds, factor, real,
                  model_replay(trace, sim, start, seconds, initial), syncs)


def _sync(status: Any) -> tuple[int, int, float] | None:
    """(currentReplicas, desiredReplicas, metric total) from an HPA status object of the
    kubernetes client, None before the controller has read the metric."""
    metrics = status.current_metrics or []
    if not metrics or metrics[0].pods is None or status.current_replicas is None:
        return None
    average = float(parse_quantity(metrics[0].pods.current.average_value))  # type: ignore[no-untyped-call]
    current = int(status.current_replicas)
    return current, int(status.desired_replicas), round(average * current, 3)


def same_inputs(result: Replay, sim: SimConfig, factor: float) -> tuple[int, int]:
    """Open loop: the model given, at each sync the real controller made, exactly what
    that controller read (its current count and the metric total), against its decision.
    Syncs that wrote nothing (nothing changed) are filled in every sync period with the
    last values, so the model's windows see as many recommendations as the controller's.
    Returns (syncs where the model decided the same, syncs compared)."""
    model = HorizontalPodAutoscalerModel(min_replicas=sim.min_replicas,
                                         max_replicas=sim.max_replicas,
                                         target_per_pod=sim.throughput_qps)
    period = RIG_SYNC_SECONDS * factor
    filled: list[tuple[float, int, int, float]] = []
    for index, sync in enumerate(result.syncs):
        filled.append(sync)
        end = result.syncs[index + 1][0] if index + 1 < len(result.syncs) else sync[0]
        at = sync[0] + period
        while at < end - period / 2:
            filled.append((at, sync[2], sync[2], sync[3]))  # unchanged: current = desired
            at += period
    same = sum(model.decide(at, total, current) == desired
               for at, current, desired, total in filled)
    return same, len(filled)


def step_values(changes: list[tuple[float, int]], seconds: int) -> npt.NDArray[np.int64]:
    """Counts per trace second over ``seconds`` from a list of (time, count) changes."""
    out = np.empty(seconds, dtype=np.int64)
    for index, (at, count) in enumerate(changes):
        end = changes[index + 1][0] if index + 1 < len(changes) else seconds
        out[math.ceil(at):math.ceil(end)] = count
    return out


def _matched(ours: list[tuple[float, int]], theirs: list[tuple[float, int]],
             slack: float) -> list[float]:
    """For each change of ``ours`` (after the start), the time offset of the nearest change
    of ``theirs`` to the same count within ``slack`` seconds; unmatched ones left out."""
    offsets = []
    for at, count in ours[1:]:
        near = [abs(at - t) for t, c in theirs[1:] if c == count and abs(at - t) <= slack]
        if near:
            offsets.append(min(near))
    return offsets


def compare(result: Replay, sync_seconds: int) -> dict[str, Any]:
    """How far the real controller and the model agree (module docstring), as JSON-able
    numbers; ``sync_seconds``: the model's sync period in trace seconds."""
    real, model = step_values(result.real, result.seconds), step_values(result.model,
                                                                        result.seconds)
    # For each second, the smallest difference between the real count and the model's
    # within one sync period of it.
    nearest = np.abs(real - model)
    for shift in range(-sync_seconds, sync_seconds + 1):
        lo, hi = max(0, shift), min(result.seconds, result.seconds + shift)
        nearest[lo - shift:hi - shift] = np.minimum(
            nearest[lo - shift:hi - shift], np.abs(real[lo - shift:hi - shift] - model[lo:hi]))
    shifted = nearest == 0
    real_matched = _matched(result.real, result.model, sync_seconds)
    model_matched = _matched(result.model, result.real, sync_seconds)
    return {
        "segment_start_s": result.start, "segment_seconds": result.seconds,
        "compression": result.factor,
        "real_changes": len(result.real) - 1, "model_changes": len(result.model) - 1,
        "real_changes_matched": len(real_matched), "model_changes_matched": len(model_matched),
        "max_offset_s": max([*real_matched, *model_matched], default=0.0),
        "agree_share": round(float(np.mean(real == model)), 4),
        "agree_within_sync_share": round(float(np.mean(shifted)), 4),
        "max_difference_within_sync": int(nearest.max()),
        "real_replica_seconds": int(real.sum()), "model_replica_seconds": int(model.sum()),
        "real": result.real, "model": result.model,
    }


def summary(numbers: dict[str, Any]) -> str:
    """Lines for the benchmark's output."""
    lines = []
    if "syncs_compared" in numbers:
        lines.append(
            f"same inputs (open loop): given what the real controller read at each of its "
            f"{numbers['syncs_compared']} syncs, the model decides as it did at "
            f"{numbers['same_input_decisions']}")
    return "\n".join([
        *lines,
        f"segment: trace seconds {numbers['segment_start_s']}.."
        f"{numbers['segment_start_s'] + numbers['segment_seconds']} compressed "
        f"{numbers['compression']:g}x",
        f"changes of count: real HPA {numbers['real_changes']}, model "
        f"{numbers['model_changes']}; matched within one sync period: real "
        f"{numbers['real_changes_matched']}/{numbers['real_changes']}, model "
        f"{numbers['model_changes_matched']}/{numbers['model_changes']} "
        f"(largest offset {numbers['max_offset_s']:.1f} s)",
        f"same count: {100 * numbers['agree_share']:.1f} % of seconds, "
        f"{100 * numbers['agree_within_sync_share']:.1f} % within one sync period, "
        f"never more than {numbers['max_difference_within_sync']} apart within one; "
        f"replica-seconds real {numbers['real_replica_seconds']}, model "
        f"{numbers['model_replica_seconds']}",
        f"real  (s, count): {numbers['real']}",
        f"model (s, count): {numbers['model']}",
    ])


def run(trace: npt.NDArray[np.float64], model_counts: npt.NDArray[np.int64], sim: SimConfig,
        minutes: int) -> dict[str, Any]:
    """The ``--real-hpa`` segment of the benchmark: pick the ``minutes``-long stretch of
    ``trace`` where ``model_counts`` (the model's replicas per second over the whole
    trace) change most, replay it (``replay``) on the local control plane (brought up
    if none runs, and then stopped again) with a Prometheus of its own, and return
    ``compare``'s numbers.

    Raises what ``controlplane.up``, ``PrometheusServer.start`` and ``replay`` raise.
    The numbers also hold ``same_inputs``' result (``same_input_decisions`` of
    ``syncs_compared``) and the syncs seen.
    """
    import tempfile

    from e2e.cluster import controlplane
    from e2e.kube import api_client

    seconds = minutes * 60
    start = busiest_segment(model_counts, seconds)
    was_running = controlplane.running()
    kube = api_client(controlplane.up())
    try:
        with (tempfile.TemporaryDirectory(prefix="hpa-replay-") as scratch,
              PrometheusServer(Path(scratch) / "prometheus") as prometheus):
            result = replay(kube, prometheus, Path(scratch), trace, sim, start, seconds)
    finally:
        if not was_running:
            controlplane.down()
    numbers = compare(result, sim.interval_seconds)
    same, syncs = same_inputs(result, sim, result.factor)
    numbers.update(same_input_decisions=same, syncs_compared=syncs, syncs=result.syncs)
    return numbers
