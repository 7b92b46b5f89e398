"""Autoscaling mode ``keda`` against the real KEDA of the local control plane.

KEDA's operator and metrics apiserver (built and started by ``python -m e2e.cluster up``,
e2e/cluster/keda.py) serve ``external.metrics.k8s.io`` through the aggregation layer; the
kube-controller-manager's HPA controller (5 s sync) reads it. Each test creates a
DeepSeekDeployment in mode keda whose Prometheus trigger reads the rig's Prometheus, so
the whole loop is real: load -> stand-in counters -> Prometheus -> KEDA's Prometheus
scaler -> gRPC -> KEDA's metrics apiserver -> kube-apiserver -> HPA controller -> scale
subresource -> ReplicaSet -> kwok pods -> stand-ins (PodSync).

The session's operator runs with a safety resync of an hour (conftest.py), so a repair
seen within seconds came from a watch event.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.render.autoscaling import KEDA_FALLBACK_FAILURES
from e2e.cluster import keda, paths, processes
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess
from e2e.rig.fixtures import LoadFactory
from e2e.rig.fleet import StandInFleet
from e2e.rig.load import LoadGenerator
from e2e.rig.podsync import PodSync
from e2e.rig.prometheus import PrometheusServer, free_loopback_port
from e2e.test_autoscaler import QPS_QUERY, ReplicaRecorder
from e2e.test_controller import condition, create, get, small_model, utc_now
from e2e.test_faults import _kubectl, audit_writes

KEDA_GROUP, KEDA_VERSION = "keda.sh", "v1alpha1"
TARGET_QPS_PER_REPLICA = 2.0
POLLING_S = 5  # KEDA's pollingInterval (spec.autoscaling.intervalSeconds), its minimum
LOAD_MAX_REQUESTS = 20_000
LOAD_MAX_DURATION_S = 300.0


def keda_model(name: str, prometheus_url: str, **autoscaling: Any) -> dict[str, Any]:
    """A one-GPU DeepSeekDeployment (distill-qwen-1.5b on A100-40GB, cache ReadWriteMany)
    in mode keda, 1..6 replicas at 2 req/s each, reading QPS_QUERY (an 8 s rate) at
    ``prometheus_url``; ``autoscaling`` overrides fields of spec.autoscaling."""
    return small_model(name, storage={"accessMode": "ReadWriteMany"}, autoscaling={
        "mode": "keda", "minReplicas": 1, "maxReplicas": 6,
        "targetQPSPerReplica": TARGET_QPS_PER_REPLICA, "intervalSeconds": POLLING_S,
        "scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": 20,
        "prometheus": {"url": prometheus_url, "query": QPS_QUERY}, **autoscaling})


@dataclass
class KedaScaled:
    """One DeepSeekDeployment in mode keda under load, with its KEDA objects."""

    kube: client.ApiClient
    api: client.CustomObjectsApi
    namespace: str
    name: str
    load: LoadGenerator
    sync: PodSync
    recorder: ReplicaRecorder

    def obj(self) -> dict[str, Any]:
        """The DeepSeekDeployment as stored."""
        return get(self.api, self.namespace, self.name)

    def autoscaler_ready(self) -> dict[str, Any]:
        """Its AutoscalerReady condition ({} when absent)."""
        return condition(self.obj(), "AutoscalerReady")

    def scaled_object(self) -> dict[str, Any] | None:
        """The ScaledObject the operator rendered (None while it does not exist)."""
        try:
            found = self.api.get_namespaced_custom_object(
                KEDA_GROUP, KEDA_VERSION, self.namespace, "scaledobjects", self.name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        assert isinstance(found, dict)
        return found

    def so_condition(self, ctype: str) -> dict[str, Any]:
        """A condition of the ScaledObject's status ({} when absent)."""
        return condition(self.scaled_object() or {}, ctype)

    def hpa(self) -> client.V2HorizontalPodAutoscaler:
        """The HorizontalPodAutoscaler KEDA made for the ScaledObject (``keda-hpa-<name>``)."""
        return client.AutoscalingV2Api(self.kube).read_namespaced_horizontal_pod_autoscaler(
            f"keda-hpa-{self.name}", self.namespace)

    def patch_spec(self, spec: dict[str, Any]) -> None:
        """Merge-patch the DeepSeekDeployment's spec."""
        self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                self.name, {"spec": spec})

    def wait_autoscaler(self, status: str, reason: str, timeout: float) -> dict[str, Any]:
        """Wait until AutoscalerReady has ``status`` and ``reason``; return it."""
        return wait_for(f"AutoscalerReady {status} {reason}", lambda: (
            lambda c: c if (c.get("status"), c.get("reason")) == (status, reason) else None)(
                self.autoscaler_ready()), timeout)

    def wait_serving(self, pods: int, timeout: float = 60) -> None:
        """Wait until exactly ``pods`` Ready pods have stand-ins."""
        def matched() -> bool:
            self.sync.check()
            changes = self.sync.changes()
            return bool(changes) and len(changes[-1].pods) == pods

        wait_for(f"{pods} serving stand-ins", matched, timeout, interval=0.2)

    def report(self) -> str:
        """What happened, for a failing test's output."""
        try:
            so = yaml.safe_dump((self.scaled_object() or {}).get("status"))
            hpa = self.hpa().status
        except ApiException as error:
            so, hpa = f"unreadable: {error.reason}", None
        return (f"replicas (monotonic s, value): {self.recorder.history()}\n"
                f"load: {self.load.stats()}\nScaledObject status:\n{so}\nHPA status: {hpa}\n"
                f"DeepSeekDeployment status: {(self.obj().get('status') or {})}")


class StartKeda(Protocol):
    """Creates a DeepSeekDeployment in mode keda under load (the ``keda_scaled`` fixture)."""

    def __call__(self, name: str, qps: float, **autoscaling: Any) -> KedaScaled:
        """Create ``name`` with ``keda_model(..., **autoscaling)`` and offer ``qps``."""
        ...


@pytest.fixture
def keda_scaled(request: pytest.FixtureRequest, kube: client.ApiClient,
                dsd_api: client.CustomObjectsApi, namespace: str, operator: OperatorProcess,
                rig_prometheus: PrometheusServer, rig_fleet: StandInFleet,
                rig_load: LoadFactory) -> Iterator[StartKeda]:
    """Start DeepSeekDeployments in mode keda in the test's namespace; at teardown stop
    their pod syncs and recorders and, when the test failed, print what each one did."""
    started: list[KedaScaled] = []

    def start(name: str, qps: float, **autoscaling: Any) -> KedaScaled:
        create(dsd_api, namespace, keda_model(name, rig_prometheus.url, **autoscaling))
        scaled = KedaScaled(
            kube=kube, api=dsd_api, namespace=namespace, name=name,
            load=rig_load(qps, max_requests=LOAD_MAX_REQUESTS,
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


def test_keda_runs_as_its_own_users_and_serves_external_metrics(
        kube: client.ApiClient, kubectl: Path, kubeconfig: Path) -> None:
    """KEDA's six CRDs are established (ScaledObject's with the stabilization-window bounds
    its kustomization patches in), both processes run, the metrics apiserver answers
    ``external.metrics.k8s.io/v1beta1`` discovery through the kube-apiserver, and the
    audit log shows each process under its own user."""
    ext = client.ApiextensionsV1Api(kube)
    crds = {c.metadata.name: c for c in ext.list_custom_resource_definition().items
            if c.spec.group in ("keda.sh", "eventing.keda.sh")}
    assert set(crds) == {
        "scaledobjects.keda.sh", "scaledjobs.keda.sh", "triggerauthentications.keda.sh",
        "clustertriggerauthentications.keda.sh", "cloudeventsources.eventing.keda.sh",
        "clustercloudeventsources.eventing.keda.sh"}
    window = (crds["scaledobjects.keda.sh"].spec.versions[0].schema.open_apiv3_schema
              .properties["spec"].properties["advanced"].properties[
                  "horizontalPodAutoscalerConfig"].properties["behavior"].properties[
                  "scaleDown"].properties["stabilizationWindowSeconds"])
    assert (window.minimum, window.maximum) == (0, 3600)
    recorded = processes.recorded()
    assert all(processes.alive(recorded[name]) for name in keda.PROCESSES)

    served = json.loads(_kubectl_out(kubectl, kubeconfig, "get", "--raw",
                                     "/apis/external.metrics.k8s.io/v1beta1"))
    assert served["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    users = {entry["user"]["username"] for entry in _audit_entries()
             if entry["user"]["username"] in (keda.OPERATOR_USER, keda.METRICS_SERVER_USER)}
    assert users == {keda.OPERATOR_USER, keda.METRICS_SERVER_USER}


def _kubectl_out(kubectl: Path, kubeconfig: Path, *args: str) -> str:
    return subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, check=True, timeout=60).stdout


def _audit_entries() -> Iterator[dict[str, Any]]:
    """Every completed request in the apiserver's audit log (oldest file first)."""
    state = paths.state_dir()
    for path in [*sorted(state.glob("audit-*.log")), state / "audit.log"]:
        if path.exists():
            with path.open(encoding="utf-8", errors="replace", newline="\n") as lines:
                for line in lines:
                    if "system:serviceaccount:keda:" in line:
                        entry = json.loads(line)
                        if entry["stage"] == "ResponseComplete":
                            yield entry


def _monotonic(values: list[int], up: bool) -> bool:
    pairs = list(itertools.pairwise(values))
    return all(b > a for a, b in pairs) if up else all(b < a for a, b in pairs)


def test_keda_scales_the_deployment_up_under_load_and_down_after(
        keda_scaled: StartKeda) -> None:
    dsd = keda_scaled("keda-load", qps=1.0)
    created = time.monotonic()
    ready = dsd.wait_autoscaler("True", "ScaledObjectReady", 90)
    print(f"\nScaledObject reconciled by KEDA, AutoscalerReady True in "
          f"{time.monotonic() - created:.1f} s: {ready['message']}")
    dsd.recorder.wait_for(1, 60)
    dsd.wait_serving(1)
    hpa = dsd.hpa()
    assert hpa.spec.scale_target_ref.name == "keda-load"
    assert hpa.spec.metrics[0].external.metric.name.startswith("s0-prometheus")

    stepped = time.monotonic()
    dsd.load.set_qps(9.0)  # 9 / 2 per replica: ceil 4.5 = 5
    reached = dsd.recorder.wait_for(5, timeout=120)
    ups = dsd.recorder.values_since(stepped)
    print(f"load 1 -> 9 req/s: 5 replicas requested {reached - stepped:.1f} s later "
          f"(counts {ups})")
    # Straight up, or in steps while too few stand-ins cap the served rate; never down.
    assert ups[0] == 1 and ups[-1] == 5 and _monotonic(ups, up=True), ups
    status = wait_for("the operator's status at 5 desired replicas", lambda: (
        lambda o: o if (o.get("status") or {}).get("desiredReplicas") == 5 else None)(
            dsd.obj()), 30)["status"]
    scaler = condition({"status": status}, "AutoscalerReady")
    assert (scaler["status"], scaler["reason"]) == ("True", "ScaledObjectReady"), scaler
    # Active (no "inactive" note); spec.replicas 1 of the manifest is said to be unused.
    assert scaler["message"] == ("replicas are owned by KEDA; spec.replicas (1) is not used "
                                 "in this mode (the workload asks for 5)"), scaler
    hpa = dsd.hpa()
    assert hpa.status.desired_replicas == 5
    assert dsd.so_condition("Active")["status"] == "True"
    dsd.wait_serving(5)

    stepped = time.monotonic()
    dsd.load.set_qps(3.0)  # ceil 1.5 = 2, after the 20 s scale-down window
    dropped = dsd.recorder.wait_for(2, timeout=120)
    downs = dsd.recorder.values_since(stepped)
    print(f"load 9 -> 3 req/s: 2 replicas requested {dropped - stepped:.1f} s later "
          f"(counts {downs}, down window 20 s)")
    assert downs[0] == 5 and downs[-1] == 2 and _monotonic(downs, up=False), downs
    # The HPA's down window holds the highest recommendation of the last 20 s.
    assert dropped - stepped >= 20 - 1.5
    wait_for("the operator's status at 2 desired replicas", lambda: (
        dsd.obj().get("status") or {}).get("desiredReplicas") == 2, 30)
    assert dsd.autoscaler_ready()["reason"] == "ScaledObjectReady"


def test_a_prometheus_outage_falls_back_to_holding_and_is_reported(
        keda_scaled: StartKeda, rig_prometheus: PrometheusServer) -> None:
    # No down window: a failing query read as "no traffic" would drop to minReplicas at
    # once, so holding 3 with the load at 0 proves the fallback.
    dsd = keda_scaled("keda-outage", qps=5.0, scaleDownStabilizationSeconds=0)
    dsd.recorder.wait_for(3, timeout=150)
    dsd.wait_serving(3)
    dsd.wait_autoscaler("True", "ScaledObjectReady", 30)
    so = dsd.scaled_object()
    assert so is not None
    assert so["spec"]["fallback"] == {"failureThreshold": KEDA_FALLBACK_FAILURES,
                                      "replicas": 1, "behavior": "currentReplicasIfHigher"}

    dead = f"http://127.0.0.1:{free_loopback_port()}"
    went_out = time.monotonic()
    dsd.patch_spec({"autoscaling": {"prometheus": {"url": dead}}})
    dsd.load.set_qps(0.0)
    wait_for("the ScaledObject pointing at the dead Prometheus", lambda: (
        (dsd.scaled_object() or {})["spec"]["triggers"][0]["metadata"]["serverAddress"]
        == dead), 30)
    seen: list[tuple[float, str, str]] = []

    def fallen_back() -> dict[str, Any] | None:
        cond = dsd.autoscaler_ready()
        if not seen or seen[-1][1:] != (cond.get("status"), cond.get("reason")):
            seen.append((round(time.monotonic() - went_out, 1), str(cond.get("status")),
                         str(cond.get("reason"))))
        return cond if cond.get("reason") == "ScaledObjectFallback" else None

    # failureThreshold failed reads at the HPA's 5 s sync, then the next one falls back.
    out = wait_for("AutoscalerReady ScaledObjectFallback", fallen_back, 90, interval=0.5)
    print(f"\nAutoscalerReady over the outage (s, status, reason): {seen}")
    assert out["status"] == "False"
    assert out["message"].startswith(
        "the query fails, so KEDA holds the replica count (its fallback, after 3 failed "
        "reads): s0-prometheus")
    health = (dsd.scaled_object() or {})["status"]["health"]
    failing = [h for h in health.values() if h["status"] == "Failing"]
    assert failing and failing[0]["numberOfFailures"] > KEDA_FALLBACK_FAILURES, health
    assert dsd.so_condition("Fallback")["status"] == "True"

    # The HPA works on the fallback value (the current count): it stays at 3 with no load.
    # KEDA counts failures up at every HPA read (5 s); the status does not follow each.
    holding = utc_now()
    time.sleep(20)
    assert dsd.recorder.values_since(went_out) == [3], dsd.recorder.history()
    status_writes = [w for w in audit_writes(dsd.namespace, holding)
                     if w[1] == "deepseekdeployments/status"]
    assert len(status_writes) <= 1, status_writes
    hpa = dsd.hpa()
    active = [c for c in hpa.status.conditions if c.type == "ScalingActive"]
    assert active and active[0].status == "True", hpa.status.conditions
    assert hpa.status.desired_replicas == 3
    assert dsd.autoscaler_ready()["reason"] == "ScaledObjectFallback"

    recovered = time.monotonic()
    dsd.patch_spec({"autoscaling": {"prometheus": {"url": rig_prometheus.url}}})
    back = dsd.wait_autoscaler("True", "ScaledObjectReady", 60)
    print(f"AutoscalerReady True {time.monotonic() - recovered:.1f} s after recovery: "
          f"{back['message']}")
    assert back["lastTransitionTime"] >= out["lastTransitionTime"]
    # Metrics decide again: no load, so down to minReplicas 1 at once.
    dsd.recorder.wait_for(1, timeout=60)
    assert dsd.recorder.values_since(went_out) == [3, 1]
    assert dsd.so_condition("Fallback")["status"] == "False"


def test_a_scaled_object_field_changed_by_another_manager_is_repaired_from_the_watch(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        operator: OperatorProcess, rig_prometheus: PrometheusServer, kubectl: Path,
        kubeconfig: Path) -> None:
    """An intruder takes spec.maxReplicaCount and the trigger's threshold by server-side
    apply (forcing the conflict): the operator sets both back within seconds (its safety
    resync is an hour away, so the ScaledObject's watch event did it), with at most 2
    writes to it over 30 s while KEDA keeps writing the ScaledObject's status (no apply
    war with the intruder nor with KEDA)."""
    create(dsd_api, namespace, keda_model("keda-drift", rig_prometheus.url))
    api = client.CustomObjectsApi(kube)

    def scaled_object() -> dict[str, Any]:
        try:
            found = api.get_namespaced_custom_object(KEDA_GROUP, KEDA_VERSION, namespace,
                                                     "scaledobjects", "keda-drift")
        except ApiException as error:
            if error.status == 404:  # not rendered yet
                return {}
            raise
        assert isinstance(found, dict)
        return found

    wait_for("the ScaledObject reconciled by KEDA", lambda: condition(
        scaled_object(), "Ready").get("status") == "True", 90)
    wait_for("AutoscalerReady", lambda: condition(
        get(dsd_api, namespace, "keda-drift"), "AutoscalerReady").get("status") == "True", 60)
    time.sleep(3)  # the start-up writes settle
    before = utc_now()
    time.sleep(2)
    quiet = [w for w in audit_writes(namespace, before) if w[1] == "scaledobjects"]
    since = utc_now()
    intruded = time.monotonic()
    _kubectl(kubectl, kubeconfig, "apply", "--server-side", "--field-manager=intruder",
             "--force-conflicts", "-f", "-", stdin=yaml.safe_dump({
                 "apiVersion": f"{KEDA_GROUP}/{KEDA_VERSION}", "kind": "ScaledObject",
                 "metadata": {"name": "keda-drift", "namespace": namespace},
                 "spec": {"scaleTargetRef": {"name": "keda-drift"}, "maxReplicaCount": 9,
                          "triggers": [{"type": "prometheus", "metadata": {
                              "serverAddress": rig_prometheus.url, "query": "vector(100)",
                              "threshold": "0.5"}}]}}))

    def repaired() -> bool:
        spec = scaled_object()["spec"]
        return (spec["maxReplicaCount"] == 6
                and spec["triggers"][0]["metadata"]["threshold"] == "2.0"
                and "namespace=" in spec["triggers"][0]["metadata"]["query"])

    wait_for("the intruder's changes undone", repaired, 15, interval=0.2)
    took = time.monotonic() - intruded
    time.sleep(30)
    writes = [w for w in audit_writes(namespace, since) if w[1] == "scaledobjects"]
    print(f"\nrepaired {took:.1f} s after the intruder's apply; operator writes to the "
          f"ScaledObject in 30 s: {writes}")
    assert quiet == [], "the operator left the ScaledObject alone before the intrusion"
    assert 1 <= len(writes) <= 2, writes
    assert repaired()
    # The operator's safety resync (conftest: an hour) cannot have done it.
    assert "--resync-seconds=3600" in operator.extra_args
