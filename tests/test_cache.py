"""The watch-fed cache of children: grouping by owner, label changes, deletions, owners."""

from __future__ import annotations

import time
from typing import Any

from deepseek_operator.controller.cache import ChildCache, owner_of
from deepseek_operator.controller.plan import FIELD_MANAGER, ObjectKey
from deepseek_operator.render import DEPLOYMENT_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE


def _obj(kind: str, name: str, owner: str | None = "r1", namespace: str = "ai",
         uid: str = "u-r1", api_version: str = "v1", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if owner is not None:
        meta["labels"].update({DEPLOYMENT_LABEL: owner, MANAGED_BY_LABEL: MANAGED_BY_VALUE})
        meta["ownerReferences"] = [{"uid": uid}]
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


def test_children_are_grouped_by_owner_and_filtered_by_kind_and_labels() -> None:
    cache = ChildCache()
    cache.store(_obj("ConfigMap", "r1-rbac"))
    cache.store(_obj("Pod", "r1-abc", component="server"))
    cache.store(_obj("Pod", "r1-download-x", component="download"))
    cache.store(_obj("ConfigMap", "r2-rbac", owner="r2"))
    cache.store(_obj("ConfigMap", "r1-rbac", namespace="other"))
    assert sorted(k.name for k in cache.children(("ai", "r1"))) == [
        "r1-abc", "r1-download-x", "r1-rbac"]
    assert list(cache.children(("ai", "r1"), kinds=frozenset({"ConfigMap"}))) == [
        ObjectKey("v1", "ConfigMap", "ai", "r1-rbac")]
    pods = cache.children(("ai", "r1"), kinds=frozenset({"Pod"}), labels={"component": "server"})
    assert [k.name for k in pods] == ["r1-abc"]
    assert cache.owners() == 3


def test_a_copy_is_returned_and_the_latest_state_wins() -> None:
    cache = ChildCache()
    first = _obj("ConfigMap", "r1-rbac")
    cache.store(first)
    first["metadata"]["labels"]["changed"] = "by the caller"
    got = cache.children(("ai", "r1"))
    assert "changed" not in next(iter(got.values()))["metadata"]["labels"]
    next(iter(got.values()))["data"] = {"x": "y"}
    assert "data" not in next(iter(cache.children(("ai", "r1")).values()))
    newer = _obj("ConfigMap", "r1-rbac")
    newer["data"] = {"v": "2"}
    cache.store(newer)
    assert next(iter(cache.children(("ai", "r1")).values()))["data"] == {"v": "2"}


def test_removed_labels_and_deletions_drop_the_child() -> None:
    cache = ChildCache()
    cache.store(_obj("Service", "r1"))
    cache.store(_obj("Service", "r1", owner=None))  # labels removed by hand
    assert cache.children(("ai", "r1")) == {}
    assert cache.owner_uids(ObjectKey("v1", "Service", "ai", "r1")) == frozenset()
    cache.store(_obj("Service", "r1"))
    cache.forget(_obj("Service", "r1"))
    assert cache.children(("ai", "r1")) == {} and cache.owners() == 0
    assert cache.owner_uids(ObjectKey("v1", "Service", "ai", "r1")) is None


def test_a_relabelled_child_moves_to_its_new_owner() -> None:
    cache = ChildCache()
    cache.store(_obj("ConfigMap", "shared"))
    cache.store(_obj("ConfigMap", "shared", owner="r2"))
    assert cache.children(("ai", "r1")) == {}
    assert list(cache.children(("ai", "r2"))) == [ObjectKey("v1", "ConfigMap", "ai", "shared")]


def test_owner_uids_of_objects_that_are_not_children() -> None:
    cache = ChildCache()
    foreign = _obj("ConfigMap", "r1-runtime", owner=None)
    foreign["metadata"]["ownerReferences"] = [{"uid": "someone-else"}]
    cache.store(foreign)
    cache.store(_obj("Pod", "not-ours", owner=None))
    key = ObjectKey("v1", "ConfigMap", "ai", "r1-runtime")
    assert cache.owner_uids(key) == frozenset({"someone-else"})
    assert cache.owner_uids(ObjectKey("v1", "Pod", "ai", "not-ours")) is None, "pods: no"
    cache.forget_key(key)
    assert cache.owner_uids(key) is None


def test_owner_of_needs_both_labels() -> None:
    assert owner_of(_obj("ConfigMap", "a")) == ("ai", "r1")
    half = _obj("ConfigMap", "a")
    del half["metadata"]["labels"][MANAGED_BY_LABEL]
    assert owner_of(half) is None


def test_storage_classes() -> None:
    cache = ChildCache()
    assert not cache.storage_class_exists("standard")
    cache.store_storage_class("standard")
    assert cache.storage_class_exists("standard")
    cache.forget_storage_class("standard")
    assert not cache.storage_class_exists("standard")


def test_purge_drops_what_a_fresh_list_missed_but_keeps_newer_arrivals() -> None:
    cache = ChildCache()
    cache.store(_obj("Service", "r1"))
    cache.store(_obj("Service", "r2", owner="r2"))
    cache.store(_obj("ConfigMap", "r1-rbac"))
    listed_at = time.monotonic()
    cache.store(_obj("Service", "r3", owner="r3"))  # arrived while the list ran
    lost = cache.purge("Service", {ObjectKey("v1", "Service", "ai", "r2")}, listed_at)
    assert lost == {("ai", "r1")}
    assert [k.name for k in cache.children(("ai", "r1"))] == ["r1-rbac"], "other kinds stay"
    assert cache.children(("ai", "r3")), "stored after the list was asked for: kept"
    assert cache.owner_uids(ObjectKey("v1", "Service", "ai", "r1")) is None


def test_only_what_a_reconcile_reads_is_kept() -> None:
    cache = ChildCache()
    obj = _obj("Deployment", "r1", api_version="apps/v1")
    obj["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "ml"}
    obj["metadata"]["managedFields"] = [
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}},
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {}},
        {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {}},
    ]
    cache.store(obj)
    (kept,) = cache.children(("ai", "r1")).values()
    assert kept["metadata"]["annotations"] == {"team": "ml"}
    assert [e["manager"] for e in kept["metadata"]["managedFields"]] == [FIELD_MANAGER]
    # the caller's object is left as it was
    assert len(obj["metadata"]["managedFields"]) == 3


def test_an_object_in_the_way_of_a_child_reports_who_waited_for_it_when_deleted() -> None:
    cache = ChildCache()
    theirs = _obj("ConfigMap", "r1-runtime", owner=None)
    cache.store(theirs)
    cache.wait_for_name(ObjectKey.of(theirs), ("ai", "r1"))
    assert cache.forget(_obj("ConfigMap", "other", owner=None)) is None
    assert cache.forget(theirs) == ("ai", "r1")
    assert cache.forget(theirs) is None, "reported once"
