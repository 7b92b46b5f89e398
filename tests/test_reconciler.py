"""The Reconciler's per-object serialisation: a trigger is never lost while the lock is held."""

from __future__ import annotations

import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient

from deepseek_operator.autoscaler.loop import Autoscaler, Tick
from deepseek_operator.autoscaler.policy import Decision, PolicyState
from deepseek_operator.controller import reconciler as reconciler_module
from deepseek_operator.controller.cache import ChildCache
from deepseek_operator.controller.cluster import Cluster
from deepseek_operator.controller.reconcile import Outcome
from deepseek_operator.controller.reconciler import (
    PROGRESS_WRITE_SECONDS,
    WRITE_SEEN_TIMEOUT_SECONDS,
    Reconciler,
    claim_in_use,
)
from deepseek_operator.render import RenderSettings

BODY: dict[str, Any] = {
    "apiVersion": "deepseek-operator.io/v1alpha1", "kind": "DeepSeekDeployment",
    "metadata": {"name": "r1", "namespace": "ai", "generation": 1},
    "spec": {"model": {"name": "deepseek-r1-distill-qwen-1.5b"}},
}
WAIT_S = 5.0


class _Gate:
    """Blocks the first call of whatever it wraps until ``release`` is called."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.calls = 0

    def pass_through(self) -> None:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            assert self.released.wait(WAIT_S), "gate never released"


class _BlockingAutoscaler:
    """Stands in for the Autoscaler: always due, and its evaluation waits on a gate."""

    def __init__(self, gate: _Gate) -> None:
        self.gate = gate

    def due(self, dsd: object, now: float) -> bool:
        return True

    def evaluate(self, dsd: object, body: object, write_status: object) -> None:
        self.gate.pass_through()

    def forget(self, namespace: str, name: str) -> None:
        """Nothing to forget."""


@pytest.fixture
def reconciler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reconciler]:
    """A Reconciler whose reads return BODY and whose reconciles are counted, not run."""
    api = ApiClient()
    worker = Reconciler(cluster=Cluster(api, ChildCache()), autoscaler=Autoscaler(api),
                        post_event=lambda *args: None, settings=RenderSettings())
    monkeypatch.setattr(worker, "read", lambda namespace, name: BODY)
    yield worker


def _run(target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_trigger_during_an_autoscaler_evaluation_runs_after_it(
        reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = _Gate()
    reconciles: list[str] = []
    monkeypatch.setattr(reconciler, "autoscaler", _BlockingAutoscaler(gate))

    def once(body: object) -> Outcome:
        reconciles.append("once")
        return Outcome(status=None)

    monkeypatch.setattr(reconciler, "_once", once)

    evaluation = _run(lambda: reconciler.autoscale("ai", "r1"))
    assert gate.entered.wait(WAIT_S)
    assert reconciler.trigger("ai", "r1") is None, "the lock is held: the holder takes it"
    assert reconciles == []
    gate.released.set()
    evaluation.join(WAIT_S)

    assert not evaluation.is_alive()
    assert reconciles == ["once"], "the spec change or child event must not be dropped"


def test_trigger_during_a_reconcile_makes_it_go_round_once_more(
        reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = _Gate()

    def once(body: object) -> Outcome:
        gate.pass_through()
        return Outcome(status=None)

    monkeypatch.setattr(reconciler, "_once", once)
    first = _run(lambda: reconciler.trigger("ai", "r1"))
    assert gate.entered.wait(WAIT_S)
    for _ in range(3):  # a burst collapses into one more round
        assert reconciler.trigger("ai", "r1") is None
    gate.released.set()
    first.join(WAIT_S)

    assert not first.is_alive()
    assert gate.calls == 2


def _with_status(version: str, **status: Any) -> dict[str, Any]:
    return {**BODY, "metadata": {**BODY["metadata"], "resourceVersion": version},
            "status": status}


def test_a_watch_copy_older_than_the_own_status_write_is_not_used(
        reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    """After writing Ready, a copy the watch delivered before that write (however long
    the watch lags) would compute the same transition again: the written object is used
    until the watch delivers the write's resourceVersion. From then on the watch copy is
    current, a status someone else wrote afterwards included."""
    written = _with_status("12", phase="Ready")
    monkeypatch.setattr(reconciler.cluster, "write_status",
                        lambda namespace, name, patch: written)
    reconciler.remember(_with_status("10", phase="Starting"))
    reconciler._write_status("ai", "r1", {"phase": "Ready"})
    assert reconciler._current("ai", "r1")["status"]["phase"] == "Ready"
    reconciler.remember(_with_status("11", phase="Starting"))  # still older than the write
    assert reconciler._current("ai", "r1")["status"]["phase"] == "Ready"
    reconciler.remember(_with_status("12", phase="Ready"))  # the watch has the write
    reconciler.remember(_with_status("13", phase="Failed"))  # a hand edit after it
    assert reconciler._current("ai", "r1")["status"]["phase"] == "Failed"


def test_a_watch_that_never_delivers_the_write_is_trusted_after_the_timeout(
        reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch that restarted (410 Gone) may skip the write's version: after
    WRITE_SEEN_TIMEOUT_SECONDS the copy is taken as it is."""
    clock = [1000.0]
    monkeypatch.setattr(reconciler_module, "time",
                        types.SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(reconciler.cluster, "write_status",
                        lambda namespace, name, patch: _with_status("12", phase="Ready"))
    reconciler._write_status("ai", "r1", {"phase": "Ready"})
    reconciler.remember(_with_status("20", phase="Degraded"))  # relisted past version 12
    assert reconciler._current("ai", "r1")["status"]["phase"] == "Ready"
    clock[0] += WRITE_SEEN_TIMEOUT_SECONDS
    assert reconciler._current("ai", "r1")["status"]["phase"] == "Degraded"


def test_a_watch_event_that_came_before_the_writes_response_counts(
        reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch may deliver the operator's own status write before the write's response
    is handled: the copy is current then, and a hand edit after it is seen."""
    def write_status(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        reconciler.remember(_with_status("12", phase="Failed"))  # the watch was quicker
        return _with_status("12", phase="Failed")

    monkeypatch.setattr(reconciler.cluster, "write_status", write_status)
    reconciler._write_status("ai", "r1", {"phase": "Failed"})
    reconciler.remember(_with_status("13", phase="Ready", readyReplicas=5))  # forged
    assert reconciler._current("ai", "r1")["status"]["phase"] == "Ready"


def test_a_ready_deployments_progress_is_written_without_backoff(
        reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replica counts of a Ready deployment that scales are written 10 s after the previous
    write however many came before; the backoff is for the way to Ready."""
    clock = [1000.0]
    monkeypatch.setattr(reconciler_module, "time",
                        types.SimpleNamespace(monotonic=lambda: clock[0]))
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    writes: list[float] = []
    monkeypatch.setattr(reconciler.cluster, "write_status",
                        lambda namespace, name, patch: writes.append(clock[0]))
    monkeypatch.setattr(reconciler._deferred, "request", lambda *args: True)
    for step in range(6):
        outcome = Outcome(status={"desiredReplicas": step}, urgent=False)
        monkeypatch.setattr(reconciler_module, "reconcile",
                            lambda *args, outcome=outcome: outcome)
        clock[0] += PROGRESS_WRITE_SECONDS
        reconciler._once({**BODY, "status": ready})
    assert len(writes) == 6
    starting = {"conditions": [{"type": "Ready", "status": "False"}]}
    for _ in range(6):
        clock[0] += PROGRESS_WRITE_SECONDS
        reconciler._once({**BODY, "status": starting})
    # Not Ready: the interval follows the six progress writes before, at its 60 s cap.
    assert len(writes) == 6 + 1


def _using(name: str, namespace: str = "ai", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": {"model": {"name": "deepseek-r1-distill-qwen-1.5b"}, **spec}}


def test_claims_used_without_owning_them_lead_back_to_their_deployments() -> None:
    """A claim's watch events reconcile the deployments that name it (existingClaim or a
    pvc:// uri) though it is not their child; the index follows spec edits and deletes."""
    assert claim_in_use(_using("a", storage={"existingClaim": "shared"})) == "shared"
    assert claim_in_use(_using("b", model={"uri": "pvc://weights/r1/8b"})) == "weights"
    assert claim_in_use(_using("c")) == ""  # the operator's own cache claim: a child
    assert claim_in_use({"metadata": {}, "spec": {"storage": "not a mapping",
                                                  "model": {"uri": 5}}}) == ""
    api = ApiClient()
    worker = Reconciler(cluster=Cluster(api, ChildCache()), autoscaler=Autoscaler(api),
                        post_event=lambda *args: None, settings=RenderSettings())
    worker.remember(_using("a", storage={"existingClaim": "shared"}))
    worker.remember(_using("b", storage={"existingClaim": "shared"}))
    worker.remember(_using("c", namespace="other", storage={"existingClaim": "shared"}))
    worker.remember(_using("d", model={"uri": "pvc://weights/r1"}))
    assert worker.users_of_claim("ai", "shared") == ["a", "b"]
    assert worker.users_of_claim("ai", "weights") == ["d"]
    worker.remember(_using("b"))  # edited to the operator's own cache
    worker.forget("ai", "a")
    assert worker.users_of_claim("ai", "shared") == []
    assert worker.users_of_claim("other", "shared") == ["c"]


def test_a_hand_set_count_outside_the_range_is_named_in_a_warning() -> None:
    """`kubectl scale` above maxReplicas is taken as maxReplicas, and not silently."""
    api = ApiClient()
    events: list[tuple[str, str, str]] = []
    worker = Reconciler(cluster=Cluster(api, ChildCache()), autoscaler=Autoscaler(api),
                        post_event=lambda body, kind, reason, message: events.append(
                            (kind, reason, message)), settings=RenderSettings())
    decision = Decision(desired_replicas=4, computed_replicas=None, reason="held",
                        scaled=False, state=PolicyState())
    worker._post_tick_events(BODY, Tick(4, decision, None, "no metrics", capped_from=9,
                                        replica_range=(1, 4)))
    assert events == [("Warning", "ScaleOutOfRange",
                       "spec.replicas 9 set by hand is outside autoscaling.minReplicas.."
                       "maxReplicas (1..4): the autoscaler took 4; change the range to scale "
                       "further")]
    events.clear()
    worker._post_tick_events(BODY, Tick(4, decision, None, "no metrics"))
    assert events == []
