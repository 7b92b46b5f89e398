"""The desired-state rules of a reconcile (controller/desired.py), one case per situation."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from deepseek_operator.api.resource import DeepSeekDeployment, parse_deployment
from deepseek_operator.controller.desired import DesiredState, desired_state
from deepseek_operator.controller.plan import ObjectKey, calculate_plan
from deepseek_operator.render import RenderSettings, render

T_CLAIM, T_JOB_BEFORE = "2026-01-01T00:00:10Z", "2026-01-01T00:00:05Z"
T_JOB_AFTER = "2026-01-01T00:00:20Z"
ONE_NODE: dict[str, Any] = {
    "model": {"name": "deepseek-r1-distill-llama-70b", "quantization": "fp8", "maxModelLen": 8192},
    "gpu": {"type": "A100-40GB", "maxConcurrentSequences": 4},
    "autoscaling": {"mode": "none"}}
TWO_NODES = {**ONE_NODE, "model": {**ONE_NODE["model"], "maxModelLen": 131072},
             "gpu": {"type": "A100-40GB", "maxConcurrentSequences": 16}}
SMALL = {"model": {"name": "deepseek-r1-distill-qwen-1.5b"}, "autoscaling": {"mode": "none"}}
RWO = {**SMALL, "storage": {"accessMode": "ReadWriteOnce"}}


def _dsd(spec: dict[str, Any]) -> DeepSeekDeployment:
    return parse_deployment({
        "apiVersion": "deepseek-operator.io/v1alpha1", "kind": "DeepSeekDeployment",
        "metadata": {"name": "l70", "namespace": "h1", "uid": "u-1", "generation": 1},
        "spec": spec})


def _rendered(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return render(_dsd(spec), RenderSettings())


def _of(spec: dict[str, Any], kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(o for o in _rendered(spec) if o["kind"] == kind))


def _live(obj: dict[str, Any], created: str = T_CLAIM, **status: Any) -> dict[str, Any]:
    live = copy.deepcopy(obj)
    live["metadata"]["creationTimestamp"] = created
    live["status"] = status
    return live


def _claim(spec: dict[str, Any], request: str | None = None, phase: str = "Bound",
           capacity: str | None = None) -> dict[str, Any]:
    claim = _live(_of(spec, "PersistentVolumeClaim"), phase=phase,
                  **({"capacity": {"storage": capacity}} if capacity else {}))
    if request:
        claim["spec"]["resources"]["requests"]["storage"] = request
    return claim


def _job(spec: dict[str, Any], created: str = T_JOB_AFTER, done: bool = False) -> dict[str, Any]:
    conditions = [{"type": "Complete", "status": "True"}] if done else []
    return _live(_of(spec, "Job"), created, conditions=conditions)


def _deployment(spec: dict[str, Any], ready: int = 1) -> dict[str, Any]:
    return _live(_of(spec, "Deployment"), replicas=1, readyReplicas=ready, updatedReplicas=1)


def _lws(spec: dict[str, Any], ready: int) -> dict[str, Any]:
    lws = _live(_of(spec, "LeaderWorkerSet"), replicas=1, readyReplicas=ready,
                updatedReplicas=1)
    lws["metadata"]["generation"] = 1
    lws["status"]["observedGeneration"] = 1
    return lws


def _all(kind: str) -> Callable[[str, str], bool]:
    return lambda api_version, k: k != kind


@dataclass(frozen=True)
class Case:
    name: str
    spec: dict[str, Any]
    observed: list[dict[str, Any]]
    absent: tuple[str, ...] = ()  # kinds left out of the desired objects
    kept: tuple[str, ...] = ()  # kinds of observed objects kept besides claims
    missing: tuple[str, ...] = ()
    served: Callable[[str, str], bool] = field(default=lambda api_version, kind: True)
    claim_request: str | None = None  # the request the desired claim must carry
    outdated: bool = False


CASES = [
    Case("nothing live: everything rendered is desired", SMALL, []),
    Case("single-writer claim, download running: the workload waits", RWO,
         [_claim(RWO), _job(RWO)], absent=("Deployment",)),
    Case("single-writer claim, download done: the workload is created", RWO,
         [_claim(RWO), _job(RWO, done=True)]),
    Case("single-writer claim, workload exists: left alone while downloading again", RWO,
         [_claim(RWO), _job(RWO), _deployment(RWO)]),
    Case("a Job older than its claim filled an earlier claim: left out", SMALL,
         [_claim(SMALL), _job(SMALL, created=T_JOB_BEFORE, done=True)], absent=("Job",),
         outdated=True),
    Case("the claim already asks for more: the live request is kept", SMALL,
         [_claim(SMALL, request="5Ti")], claim_request="5Ti"),
    Case("a Bound claim smaller than the weights holds a new download", SMALL,
         [_claim(SMALL, capacity="1Gi")], absent=("Job",)),
    Case("a Bound claim still expanding holds a new download", SMALL,
         [_claim(SMALL, request="100Ti", capacity="90Ti")], absent=("Job",),
         claim_request="100Ti"),
    Case("a running download is never held back", SMALL,
         [_claim(SMALL, capacity="1Gi"), _job(SMALL)]),
    Case("a claim not Bound yet does not hold the download (its pod binds it)", SMALL,
         [_claim(SMALL, phase="Pending")]),
    Case("an unserved kind is left out and reported", TWO_NODES, [],
         absent=("LeaderWorkerSet",), served=_all("LeaderWorkerSet"),
         missing=("LeaderWorkerSet (leaderworkerset.x-k8s.io/v1)",)),
    Case("the new kind is not served: the serving Deployment is kept", TWO_NODES,
         [_claim(ONE_NODE), _job(ONE_NODE, done=True), _deployment(ONE_NODE)],
         absent=("LeaderWorkerSet",), kept=("Deployment",), served=_all("LeaderWorkerSet"),
         missing=("LeaderWorkerSet (leaderworkerset.x-k8s.io/v1)",)),
    Case("kind switch, the new workload not ready: the old one keeps serving", TWO_NODES,
         [_claim(ONE_NODE), _deployment(ONE_NODE), _lws(TWO_NODES, ready=0)],
         kept=("Deployment",)),
    Case("kind switch, the new workload ready: the old one goes", TWO_NODES,
         [_claim(ONE_NODE), _deployment(ONE_NODE), _lws(TWO_NODES, ready=1)]),
    Case("back from LeaderWorkerSet to Deployment: make before break too", ONE_NODE,
         [_claim(ONE_NODE), _lws(TWO_NODES, ready=1), _deployment(ONE_NODE, ready=0)],
         kept=("LeaderWorkerSet",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_desired_state(case: Case) -> None:
    rendered = _rendered(case.spec)
    observed = {ObjectKey.of(o): o for o in case.observed}
    state: DesiredState = desired_state(_dsd(case.spec), rendered, observed,
                                        served=case.served)
    kinds = [o["kind"] for o in state.objects]
    assert kinds == [o["kind"] for o in rendered if o["kind"] not in case.absent]
    assert sorted(k.kind for k in state.keep if k.kind != "PersistentVolumeClaim") == sorted(
        case.kept)
    assert all(k in state.keep for k in observed if k.kind == "PersistentVolumeClaim")
    assert state.missing_apis == list(case.missing)
    assert (state.outdated_job is not None) == case.outdated
    claim = next(o for o in state.objects if o["kind"] == "PersistentVolumeClaim")
    wanted = case.claim_request or _of(case.spec, "PersistentVolumeClaim")["spec"][
        "resources"]["requests"]["storage"]
    assert claim["spec"]["resources"]["requests"]["storage"] == wanted


def test_rendered_objects_are_not_changed() -> None:
    rendered = _rendered(SMALL)
    before = copy.deepcopy(rendered)
    observed = {ObjectKey.of(o): o for o in [_claim(SMALL, request="5Ti")]}
    desired_state(_dsd(SMALL), rendered, observed, served=lambda api_version, kind: True)
    assert rendered == before


def _with_class(spec: dict[str, Any], storage_class: str) -> dict[str, Any]:
    return {**spec, "storage": {**spec.get("storage", {}), "storageClassName": storage_class}}


def test_an_unbound_claim_with_another_class_is_replaced() -> None:
    old, new = _with_class(SMALL, "fast-ssd"), _with_class(SMALL, "standard")
    observed = {ObjectKey.of(o): o for o in [_claim(old, phase="Pending")]}
    state = desired_state(_dsd(new), _rendered(new), observed,
                          served=lambda api_version, kind: True)
    claim_key = next(iter(observed))
    assert "PersistentVolumeClaim" not in [o["kind"] for o in state.objects]
    assert claim_key not in state.keep, "not kept: the plan deletes it, the next creates it"
    assert state.claim_conflict is None


def test_a_bound_claim_with_another_class_is_kept_and_the_way_out_named() -> None:
    old, new = _with_class(SMALL, "fast-ssd"), _with_class(SMALL, "standard")
    observed = {ObjectKey.of(o): o for o in [_claim(old)]}
    state = desired_state(_dsd(new), _rendered(new), observed,
                          served=lambda api_version, kind: True)
    assert next(iter(observed)) in state.keep
    assert state.claim_conflict == (
        "the model cache claim l70-model-cache is Bound and a claim cannot change "
        "storageClassName (fast-ssd -> standard) after creation: set spec.storage back, or "
        "delete the claim (the operator creates it as the spec asks and downloads the "
        "weights again)")


def _owned_class(claim: dict[str, Any]) -> dict[str, Any]:
    claim["metadata"]["managedFields"] = [{"manager": "deepseek-operator", "operation": "Apply",
                                           "fieldsV1": {"f:spec": {"f:storageClassName": {}}}}]
    return claim


def test_back_to_the_default_class_replaces_a_claim_that_never_bound() -> None:
    observed = {ObjectKey.of(o): o for o in [
        _owned_class(_claim(_with_class(SMALL, "nope"), phase="Pending"))]}
    state = desired_state(_dsd(SMALL), _rendered(SMALL), observed,
                          served=lambda api_version, kind: True, field_manager="deepseek-operator")
    assert "PersistentVolumeClaim" not in [o["kind"] for o in state.objects]
    assert next(iter(observed)) not in state.keep


def test_a_default_class_filled_in_by_the_cluster_is_no_change() -> None:
    pending = _claim(_with_class(SMALL, "standard"), phase="Pending")  # set by admission
    observed = {ObjectKey.of(pending): pending}
    state = desired_state(_dsd(SMALL), _rendered(SMALL), observed,
                          served=lambda api_version, kind: True, field_manager="deepseek-operator")
    assert "PersistentVolumeClaim" in [o["kind"] for o in state.objects]
    bound = _owned_class(_claim(_with_class(SMALL, "nope")))
    observed = {ObjectKey.of(bound): bound}
    state = desired_state(_dsd(SMALL), _rendered(SMALL), observed,
                          served=lambda api_version, kind: True, field_manager="deepseek-operator")
    claim = next(o for o in state.objects if o["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "nope", "a bound claim keeps its class"
    assert state.claim_conflict is None


def test_a_claim_being_deleted_takes_its_download_job_along() -> None:
    claim = _claim(SMALL)
    claim["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    observed = {ObjectKey.of(o): o for o in [claim, _job(SMALL, done=True)]}
    state = desired_state(_dsd(SMALL), _rendered(SMALL), observed,
                          served=lambda api_version, kind: True)
    assert "Job" not in [o["kind"] for o in state.objects]


def test_a_failed_download_job_is_left_as_it_failed() -> None:
    """Rule 11: a spec edit that keeps the Job's name (a longer deadline) neither patches
    nor deletes the failed Job; a new name (another template) replaces it; a claim being
    deleted still takes it along (rule 9)."""
    failed = _job(SMALL)
    failed["status"]["conditions"] = [{"type": "Failed", "status": "True",
                                       "reason": "DeadlineExceeded"}]
    longer = {**SMALL, "download": {"activeDeadlineSeconds": 99999}}
    observed = {ObjectKey.of(o): o for o in [_claim(SMALL), failed]}
    state = desired_state(_dsd(longer), _rendered(longer), observed,
                          served=lambda api_version, kind: True)
    assert "Job" not in [o["kind"] for o in state.objects]
    assert ObjectKey.of(failed) in state.keep
    assert state.failed_job == ObjectKey.of(failed), "status still reads the failed Job"
    running = {ObjectKey.of(o): o for o in [_claim(SMALL), _job(SMALL)]}
    state = desired_state(_dsd(longer), _rendered(longer), running,
                          served=lambda api_version, kind: True)
    assert [o["spec"]["activeDeadlineSeconds"] for o in state.objects if o["kind"] == "Job"] \
        == [99999], "a Job that has not failed is still applied"
    claim = _claim(SMALL)
    claim["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    going = {ObjectKey.of(o): o for o in [claim, failed]}
    state = desired_state(_dsd(SMALL), _rendered(SMALL), going,
                          served=lambda api_version, kind: True)
    assert ObjectKey.of(failed) not in state.keep and state.failed_job is None


def _policy_map(spec: dict[str, Any]) -> dict[str, Any]:
    return next(o for o in _rendered(spec)
                if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "l70-gateway-policy")


def test_the_gateway_policy_data_is_written_only_when_created() -> None:
    served = lambda api_version, kind: True  # noqa: E731
    fresh = desired_state(_dsd(SMALL), _rendered(SMALL), {}, served=served)
    wanted = next(o for o in fresh.objects if o["metadata"]["name"] == "l70-gateway-policy")
    assert "policy.yaml" in wanted["data"], "created with the defaults"

    edited = _live(_policy_map(SMALL))
    edited["data"] = {"policy.yaml": "maxQueuedRequests: 1\n"}
    edited["metadata"]["managedFields"] = [
        {"manager": "deepseek-operator", "operation": "Update",
         "fieldsV1": {"f:data": {"f:policy.yaml": {}}}},
        {"manager": "kubectl-edit", "operation": "Update",
         "fieldsV1": {"f:data": {"f:policy.yaml": {}}}}]
    observed = {ObjectKey.of(edited): edited}
    state = desired_state(_dsd(SMALL), _rendered(SMALL), observed, served=served,
                          field_manager="deepseek-operator")
    kept = next(o for o in state.objects if o["metadata"]["name"] == "l70-gateway-policy")
    assert "data" not in kept
    assert kept["metadata"]["labels"] == edited["metadata"]["labels"]
    plan = calculate_plan([kept], observed, field_manager="deepseek-operator")
    assert plan.empty, "the edit stands: nothing to apply"
    # A label removed by hand is still repaired (metadata stays the operator's).
    del edited["metadata"]["labels"]["app.kubernetes.io/component"]
    plan = calculate_plan([kept], observed, field_manager="deepseek-operator")
    assert [c.drifted for c in plan.apply] == [("metadata.labels.app.kubernetes.io/component",)]
    assert "data" not in plan.apply[0].desired


def test_other_config_maps_are_still_applied_in_full() -> None:
    rbac = next(o for o in _rendered(SMALL) if o["metadata"]["name"] == "l70-rbac")
    observed = {ObjectKey.of(rbac): _live(rbac)}
    state = desired_state(_dsd(SMALL), _rendered(SMALL), observed,
                          served=lambda api_version, kind: True)
    assert next(o for o in state.objects if o["metadata"]["name"] == "l70-rbac")["data"]


def _given_claim(created: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "shared", "namespace": "ai", "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
            "spec": {"accessModes": ["ReadWriteMany"],
                     "resources": {"requests": {"storage": "20Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "20Gi"}}}


def test_an_existing_claim_recreated_after_its_download_is_filled_again() -> None:
    """Rules 2 and 9 for the claim spec.storage.existingClaim names: a Complete Job older
    than the claim filled the one deleted since (run it again); a Job still waiting for a
    claim created after it is left to run; a claim being deleted takes the Job along."""
    given = {**SMALL, "storage": {"existingClaim": "shared"}}
    done = _job(given, created=T_JOB_BEFORE, done=True)
    state = desired_state(_dsd(given), _rendered(given), {ObjectKey.of(done): done},
                          served=lambda api_version, kind: True,
                          given_claim=_given_claim(T_CLAIM))
    assert state.outdated_job == ObjectKey.of(done)
    assert "Job" not in [o["kind"] for o in state.objects]
    waiting = _job(given, created=T_JOB_BEFORE)
    state = desired_state(_dsd(given), _rendered(given), {ObjectKey.of(waiting): waiting},
                          served=lambda api_version, kind: True,
                          given_claim=_given_claim(T_CLAIM))
    assert state.outdated_job is None
    assert "Job" in [o["kind"] for o in state.objects]
    state = desired_state(_dsd(given), _rendered(given), {ObjectKey.of(done): done},
                          served=lambda api_version, kind: True,
                          given_claim=_given_claim("2026-01-01T00:00:01Z", deleting=True))
    assert "Job" not in [o["kind"] for o in state.objects]
    assert ObjectKey.of(done) not in state.keep
