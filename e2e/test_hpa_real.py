"""Mode ``hpa`` end to end: the real HPA controller reading the custom metrics API that a
real prometheus-adapter serves from the rig's Prometheus.

The loop: load -> stand-in request counters (vllm:request_success_total, one stand-in
per Ready kwok pod, registered with Prometheus under the pod's namespace and name) ->
Prometheus -> prometheus-adapter with the rule shipped in the Helm chart
(charts/deepseek-operator/files/prometheus-adapter-rules.yaml) -> custom.metrics.k8s.io
through the kube-apiserver's aggregation layer -> the HorizontalPodAutoscaler the operator
rendered (kube-controller-manager, 5 s sync period) -> the Deployment's scale -> kwok
pods -> stand-ins. The operator then reports the HPA's decision in status.autoscaling.

Run time is bounded by the rule's 1 minute rate window (what users get) and a 60 s
scale-down stabilization window given in the spec (not the HPA's default 300 s); the HPA
syncs every 5 s on the rig.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.utils import parse_quantity

from deepseek_operator.render.autoscaling import HPA_METRIC
from e2e.cluster import metrics_adapter
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess
from e2e.rig.fixtures import LoadFactory
from e2e.rig.fleet import StandInFleet
from e2e.rig.podsync import PodSync
from e2e.rig.prometheus import PrometheusServer
from e2e.test_autoscaler import ReplicaRecorder
from e2e.test_controller import condition, create, get, small_model

TARGET_QPS_PER_REPLICA = 2.0
# 6 req/s at 2 per replica: ceil(3) = 3 replicas; at 3 the per-pod average sits on the
# target. The stand-ins deliver less than offered on a busy machine, so the count is
# reached as long as more than 4.4 req/s (2 replicas plus the HPA's 10 % tolerance) get
# served.
OFFERED_QPS = 6.0
EXPECTED_REPLICAS = math.ceil(OFFERED_QPS / TARGET_QPS_PER_REPLICA)
# The rule's rate window: a load step is fully seen this long after it happened, and a
# new pod's series reads low for as long (its rate starts from nothing), so the per-pod
# average dips after each scale-up. A down window shorter than the rate window lets the
# HPA act on that dip (seen with 20 s: 1, 2, 3, 4, 3 under a steady load).
RATE_WINDOW_S = 60
DOWN_WINDOW_S = RATE_WINDOW_S
HPA_SYNC_S = 5


@pytest.fixture(scope="module")
def custom_metrics(rig_prometheus: PrometheusServer, kube: client.ApiClient) -> Iterator[int]:
    """prometheus-adapter reading the rig's Prometheus, registered as custom.metrics.k8s.io
    on the local control plane for this module; yields its PID."""
    pid = metrics_adapter.start(rig_prometheus.url)
    yield pid
    metrics_adapter.stop()


def hpa_model(name: str) -> dict[str, Any]:
    """A one-GPU DeepSeekDeployment (cache ReadWriteMany, so replicas share it) in mode
    hpa: 1..6 replicas at TARGET_QPS_PER_REPLICA, no scale-up window, DOWN_WINDOW_S down."""
    return small_model(name, storage={"accessMode": "ReadWriteMany"}, autoscaling={
        "mode": "hpa", "minReplicas": 1, "maxReplicas": 6,
        "targetQPSPerReplica": TARGET_QPS_PER_REPLICA,
        "scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": DOWN_WINDOW_S})


def pod_metrics(kube: client.ApiClient, namespace: str) -> dict[str, float]:
    """{pod: requests/s} as custom.metrics.k8s.io/v1beta2 serves HPA_METRIC for every pod
    of ``namespace`` (what the HPA controller reads)."""
    api = client.CustomObjectsApi(kube)
    answer = api.get_namespaced_custom_object(
        "custom.metrics.k8s.io", "v1beta2", namespace, "pods", f"*/{HPA_METRIC}")
    assert isinstance(answer, dict)
    return {item["describedObject"]["name"]: float(
        parse_quantity(item["value"]))  # type: ignore[no-untyped-call]
        for item in answer.get("items") or []}


def hpa_condition(kube: client.ApiClient, namespace: str, name: str, kind: str) -> dict[str, Any]:
    """The HorizontalPodAutoscaler's condition ``kind`` ({} when absent)."""
    hpa = client.AutoscalingV2Api(kube).read_namespaced_horizontal_pod_autoscaler(name, namespace)
    for cond in hpa.status.conditions or []:
        if cond.type == kind:
            return {"status": cond.status, "reason": cond.reason, "message": cond.message}
    return {}


def test_hpa_scales_up_under_load_and_down_after_it_through_prometheus_adapter(
        custom_metrics: int, kube: client.ApiClient, dsd_api: client.CustomObjectsApi,
        namespace: str, operator: OperatorProcess, rig_fleet: StandInFleet,
        rig_load: LoadFactory) -> None:
    name = "hpa-real"
    create(dsd_api, namespace, hpa_model(name))
    recorder = ReplicaRecorder(kube, namespace, name)
    sync = PodSync(kube, rig_fleet, namespace, name)
    recorder.start()
    sync.start()
    try:
        recorder.wait_for(1, timeout=60)
        load = rig_load(OFFERED_QPS, max_requests=10_000, max_duration_s=400)
        started = time.monotonic()

        # Up: the rule's rate of the one pod's counter rises with the 1 m window.
        reached = recorder.wait_for(EXPECTED_REPLICAS, timeout=RATE_WINDOW_S + 90)
        print(f"\n{OFFERED_QPS:g} req/s from 1 replica to {EXPECTED_REPLICAS} requested: "
              f"{reached - started:.1f} s; counts {[v for _, v in recorder.history()]}")
        active = hpa_condition(kube, namespace, name, "ScalingActive")
        assert active["status"] == "True" and active["reason"] == "ValidMetricFound", active
        served = wait_for("a metric for every pod from custom.metrics.k8s.io", lambda: (
            lambda found: found if len(found) == EXPECTED_REPLICAS else None)(
                pod_metrics(kube, namespace)), 60)
        assert all(value >= 0 for value in served.values()), served

        # Steady: the operator reports the HPA's decision (as the HPA object has it) once
        # the rate has settled.
        hpas = client.AutoscalingV2Api(kube)

        def settled() -> dict[str, Any] | None:
            hpa = hpas.read_namespaced_horizontal_pod_autoscaler(name, namespace).status
            obj = get(dsd_api, namespace, name)
            status = obj.get("status") or {}
            scaling = status.get("autoscaling") or {}
            qps = scaling.get("observedQPS")
            average = float(parse_quantity(  # type: ignore[no-untyped-call]
                hpa.current_metrics[0].pods.current.average_value)) if hpa.current_metrics \
                else None
            if (scaling.get("desiredReplicas") == EXPECTED_REPLICAS == hpa.desired_replicas
                    and qps is not None and average is not None
                    and abs(qps - average * hpa.current_replicas) < 0.01
                    and (EXPECTED_REPLICAS - 1) * TARGET_QPS_PER_REPLICA < qps
                    <= 1.1 * OFFERED_QPS
                    and status.get("replicas") == EXPECTED_REPLICAS):
                return obj
            return None

        obj = wait_for("status.autoscaling at the HPA's steady decision", settled,
                       RATE_WINDOW_S + 60, interval=1.0)
        status, scaling = obj["status"], obj["status"]["autoscaling"]
        assert status["desiredReplicas"] == EXPECTED_REPLICAS
        assert scaling["targetQPSPerReplica"] == TARGET_QPS_PER_REPLICA
        assert scaling["reason"].startswith("HorizontalPodAutoscaler: "), scaling
        assert f"-> {EXPECTED_REPLICAS} replicas" in scaling["reason"]
        assert "lastScaleTime" in scaling and "computedReplicas" not in scaling
        ready = condition(obj, "AutoscalerReady")
        assert (ready["status"], ready["reason"]) == ("True", "HorizontalPodAutoscalerActive")
        assert max(v for _, v in recorder.history()) == EXPECTED_REPLICAS, "no overshoot"
        up_scale_time = scaling["lastScaleTime"]

        # Down: the load ends; the rate falls to 0 over the window, then the down window.
        load.set_qps(0.0)
        ended = time.monotonic()
        dropped = recorder.wait_for(1, timeout=RATE_WINDOW_S + DOWN_WINDOW_S + 60)
        print(f"load ended: back to 1 replica requested after {dropped - ended:.1f} s")
        assert dropped - ended >= DOWN_WINDOW_S - HPA_SYNC_S, "the down window was kept"
        down = wait_for("status.autoscaling after the scale-down", lambda: (
            lambda s: s if s.get("desiredReplicas") == 1 else None)(
                (get(dsd_api, namespace, name).get("status") or {}).get("autoscaling") or {}),
            30)
        assert down["lastScaleTime"] > up_scale_time
        assert down["observedQPS"] < TARGET_QPS_PER_REPLICA
        counts = [v for _, v in recorder.history()]
        print(f"replica counts over the test: {counts}")
        assert counts[-1] == 1 and max(counts) == EXPECTED_REPLICAS
    finally:
        recorder.stop()
        sync.stop()
