"""Plan calculation and the subset comparison behind "a no-op reconcile writes nothing"."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from deepseek_operator.controller.diff import differences, is_subset, removed_fields
from deepseek_operator.controller.plan import ObjectKey, calculate_plan


def _cm(name: str, data: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ai", **meta}, "data": data or {"k": "v"}}


def _deployment(replicas: int, image: str = "engine:1", cpu: str = "8") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "r1", "namespace": "ai", "labels": {"a": "b"}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "engine", "image": image, "resources": {"requests": {"cpu": cpu}}}]}}},
    }


def _live(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: the object plus defaults, status and metadata."""
    live: dict[str, Any] = {**obj, "status": {"replicas": 1}}
    live["metadata"] = {**obj["metadata"], "uid": "u1", "resourceVersion": "7",
                        "managedFields": [{"manager": "deepseek-operator"}]}
    if obj["kind"] == "Deployment":
        spec = dict(obj["spec"])
        spec["strategy"] = {"type": "RollingUpdate"}
        spec["template"] = {"spec": {**obj["spec"]["template"]["spec"], "dnsPolicy": "ClusterFirst",
                                     "containers": [{**c, "imagePullPolicy": "IfNotPresent"}
                                                    for c in obj["spec"]["template"]["spec"][
                                                        "containers"]]}}
        live["spec"] = spec
    return live


@pytest.mark.parametrize(("name", "desired", "observed", "apply", "delete"), [
    ("do nothing when live matches (defaults and status added by the server)",
     [_cm("a"), _deployment(2)], [_live(_cm("a")), _live(_deployment(2))], [], []),
    ("create what is missing", [_cm("a"), _cm("b")], [_live(_cm("a"))], ["b"], []),
    ("update on drift of one field", [_deployment(2, image="engine:2")],
     [_live(_deployment(2))], ["r1"], []),
    ("hand-set replicas are drift", [_deployment(3)], [_live(_deployment(5))], ["r1"], []),
    ("delete what is no longer desired", [_cm("a")], [_live(_cm("a")), _live(_cm("old"))],
     [], ["old"]),
])
def test_calculate_plan(name: str, desired: list[dict[str, Any]],
                        observed: list[dict[str, Any]], apply: list[str],
                        delete: list[str]) -> None:
    plan = calculate_plan(desired, {ObjectKey.of(o): o for o in observed})
    assert [c.key.name for c in plan.apply] == apply, name
    assert [k.name for k in plan.delete] == delete, name
    assert plan.empty == (not apply and not delete)


def test_kept_children_are_never_deleted() -> None:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "r1-model-cache", "namespace": "ai"}}
    key = ObjectKey.of(claim)
    plan = calculate_plan([], {key: claim}, keep=[key])
    assert plan.delete == ()


def test_created_and_drift_are_reported() -> None:
    plan = calculate_plan([_deployment(2, image="engine:2"), _cm("new")],
                          {ObjectKey.of(_deployment(2)): _live(_deployment(2))})
    by_name = {c.key.name: c for c in plan.apply}
    assert by_name["new"].created
    assert by_name["r1"].drifted == ("spec.template.spec.containers[0].image",)


def test_quantities_compare_by_value() -> None:
    assert is_subset({"cpu": "1000m", "memory": "1Gi"}, {"cpu": "1", "memory": "1024Mi"})
    assert not is_subset({"cpu": "2"}, {"cpu": "1"})
    assert not is_subset({"image": "a:1"}, {"image": "a:2"})


def test_list_length_change_is_drift() -> None:
    desired = {"args": ["--a", "--b"]}
    assert not is_subset(desired, {"args": ["--a", "--b", "--evil"]})
    assert differences(desired, {"args": ["--a"]}) == ["args"]
    assert differences({"x": {"y": 1}}, {"x": {}}) == ["x.y"]
    assert differences({"x": {"y": 1}}, {"x": {"y": 1, "z": 2}}) == []


def test_fields_we_applied_and_no_longer_want_are_released() -> None:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "r1-model-cache", "namespace": "ai", "labels": {"a": "b"}},
             "spec": {"accessModes": ["ReadWriteMany"]}}
    live = copy.deepcopy(claim)
    live["metadata"]["ownerReferences"] = [{"uid": "u1", "kind": "DeepSeekDeployment"}]
    live["metadata"]["managedFields"] = [
        {"manager": "kubectl", "operation": "Update",
         "fieldsV1": {"f:metadata": {"f:annotations": {"f:x": {}}}}},
        {"manager": "deepseek-operator", "operation": "Apply", "fieldsV1": {
            "f:metadata": {"f:labels": {"f:a": {}}, "f:ownerReferences": {
                'k:{"uid":"u1"}': {}}},
            "f:spec": {"f:accessModes": {}}}},
    ]
    # retainOnDelete became true: the desired claim has no owner reference any more.
    plan = calculate_plan([claim], {ObjectKey.of(live): live}, field_manager="deepseek-operator")
    assert [c.drifted for c in plan.apply] == [("metadata.ownerReferences (no longer wanted)",)]
    # Without our manager's entry (or for another manager's fields) nothing is released.
    assert calculate_plan([claim], {ObjectKey.of(live): live},
                          field_manager="someone-else").empty


def test_released_replicas_are_handed_over_at_their_live_value() -> None:
    live = _live(_deployment(3))
    live["metadata"]["managedFields"] = [
        {"manager": "deepseek-operator", "operation": "Apply", "fieldsV1": {
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {}}}}]
    desired = _deployment(3)
    del desired["spec"]["replicas"]  # autoscaling.mode became hpa: the HPA sets it
    plan = calculate_plan([desired], {ObjectKey.of(live): live},
                          field_manager="deepseek-operator")
    (change,) = plan.apply
    assert "spec.replicas (no longer wanted)" in change.drifted
    assert change.handover == {"apiVersion": "apps/v1", "kind": "Deployment",
                               "metadata": {"name": "r1", "namespace": "ai"},
                               "spec": {"replicas": 3}}
    # Still wanted, or another field released: nothing to hand over.
    assert calculate_plan([_deployment(4)], {ObjectKey.of(live): live},
                          field_manager="deepseek-operator").apply[0].handover is None
    released_label = calculate_plan([_deployment(3) | {"metadata": {
        "name": "r1", "namespace": "ai", "labels": {}}}], {ObjectKey.of(live): live},
        field_manager="deepseek-operator")
    assert released_label.apply[0].handover is None


def test_removed_fields_follows_maps_only() -> None:
    containers: dict[str, Any] = {'k:{"name":"engine"}': {"f:image": {}}}
    owned: dict[str, Any] = {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {
        "f:containers": containers}}}, ".": {}}
    desired = {"spec": {"template": {"spec": {"containers": [{"name": "engine"}]}}}}
    assert removed_fields(desired, owned) == ["spec.replicas"]


def test_named_lists_are_keyed_by_name_as_server_side_apply_merges_them() -> None:
    desired = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    # Another manager's variable stays (an apply would not remove it): not drift.
    assert is_subset(desired, {"env": [{"name": "B", "value": "2"}, {"name": "X", "value": "x"},
                                       {"name": "A", "value": "1"}]})
    assert differences(desired, {"env": [{"name": "A", "value": "1"},
                                         {"name": "X", "value": "x"}]}) == ["env[1]"]
    assert differences(desired, {"env": [{"name": "A", "value": "9"},
                                         {"name": "B", "value": "2"}]}) == ["env[0].value"]
    assert not is_subset(desired, {"env": "not a list"})


def test_role_binding_subjects_must_match_exactly() -> None:
    alice = {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}
    bob = {**alice, "name": "bob"}
    desired = {"roleRef": {"name": "r1-user"}, "subjects": [alice]}
    # A subject removed from the spec (or added by hand) still has access: drift.
    assert not is_subset(desired, {"roleRef": {"name": "r1-user"}, "subjects": [alice, bob]})
    assert differences(desired, {"roleRef": {"name": "r1-user"},
                                 "subjects": [alice, bob]}) == ["subjects"]
    assert is_subset(desired, {"roleRef": {"name": "r1-user"}, "subjects": [alice]})
    assert differences(desired, {"roleRef": {"name": "r1-user"}, "subjects": [alice]}) == []


def test_an_object_another_controller_owns_is_never_deleted() -> None:
    # KEDA copies a ScaledObject's labels (ours) onto the HPA it makes and controls.
    ours = {"apiVersion": "deepseek-operator.io/v1alpha1", "kind": "DeepSeekDeployment",
            "name": "r1", "uid": "u1", "controller": True}
    keda = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "r1",
            "uid": "u2", "controller": True}

    def hpa(name: str, refs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": name, "namespace": "ai", "ownerReferences": refs}}

    observed = {ObjectKey.of(o): o for o in (
        hpa("keda-hpa-r1", [keda]), hpa("r1", [ours]), hpa("plain", []),
        hpa("not-controller", [{**keda, "controller": False}]))}
    plan = calculate_plan([], observed)
    assert sorted(k.name for k in plan.delete) == ["not-controller", "plain", "r1"]
