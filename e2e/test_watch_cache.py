"""Reads come from watches: an idle deployment costs no API call, a new one few reads, and
a hand edit to a child is repaired from its watch event."""

from __future__ import annotations

import time
from collections import Counter

from kubernetes import client

from deepseek_operator.controller.cache import ChildCache
from deepseek_operator.controller.cluster import Cluster
from e2e.cluster import audit
from e2e.test_controller import create, small_model, utc_now, wait_condition

READ_VERBS = ("get", "list")
WRITE_VERBS = ("create", "update", "patch", "delete")


def operator_requests(namespace: str, since: str) -> Counter[tuple[str, str]]:
    """(verb, resource) -> count of the operator's requests in ``namespace`` since an RFC
    3339 time, from the apiserver's audit log (watches excluded)."""
    counts: Counter[tuple[str, str]] = Counter()
    for entry in audit.operator_entries(since):
        if entry["verb"] != "watch" and (entry.get("objectRef") or {}).get(
                "namespace") == namespace:
            counts[(entry["verb"], audit.resource_of(entry))] += 1
    return counts


def _count(counts: Counter[tuple[str, str]], verbs: tuple[str, ...]) -> int:
    return sum(n for (verb, _), n in counts.items() if verb in verbs)


def test_creating_one_reads_little_and_idling_costs_nothing(
        dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    started = utc_now()
    create(dsd_api, namespace, small_model("w1"))
    wait_condition(dsd_api, namespace, "w1", "Ready", "True", timeout=90)
    time.sleep(3)  # the last events of the start-up settle
    to_ready = operator_requests(namespace, started)
    print(f"\ncreate to Ready: {sorted(to_ready.items())}")
    # 8 children to create; the reads left are GETs of the DeepSeekDeployment right after
    # a status write (its watched copy may predate the write).
    assert _count(to_ready, READ_VERBS) <= 10, to_ready
    assert not [k for k in to_ready if k[0] == "list"], "no child kind is listed"

    idle_since = utc_now()
    time.sleep(20)
    idle = operator_requests(namespace, idle_since)
    assert _count(idle, READ_VERBS + WRITE_VERBS) == 0, idle


def test_a_hand_edit_is_repaired_without_reading(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, small_model("w2"))
    wait_condition(dsd_api, namespace, "w2", "Ready", "True", timeout=90)
    time.sleep(3)
    core = client.CoreV1Api(kube)
    since = utc_now()
    core.patch_namespaced_config_map("w2-runtime", namespace,
                                     {"data": {"runtime.yaml": "hacked"}})

    def repaired() -> bool:
        data = core.read_namespaced_config_map("w2-runtime", namespace).data or {}
        return data.get("runtime.yaml") != "hacked"

    deadline = time.monotonic() + 15
    while not repaired():
        assert time.monotonic() < deadline, "the hand edit was not repaired in 15 s"
        time.sleep(0.2)
    time.sleep(2)
    counts = operator_requests(namespace, since)
    assert counts[("patch", "configmaps")] == 1, counts
    assert not [k for k in counts if k[0] == "list"], counts


def test_a_relist_purges_what_no_watch_reported_gone(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, small_model("w3"))
    wait_condition(dsd_api, namespace, "w3", "Ready", "True", timeout=90)
    cache = ChildCache()
    cluster = Cluster(kube, cache)
    service = kube.sanitize_for_serialization(  # type: ignore[no-untyped-call]
        client.CoreV1Api(kube).read_namespaced_service("w3", namespace))
    cache.store({"apiVersion": "v1", "kind": "Service", **service})
    ghost = {"apiVersion": "v1", "kind": "Service",  # deleted while no watch looked
             "metadata": {"name": "w3-gone", "namespace": namespace,
                          "labels": service["metadata"]["labels"]}}
    cache.store(ghost)
    lost = cluster.relist()
    assert (namespace, "w3") in lost
    assert [k.name for k in cluster.observe((namespace, "w3"))] == ["w3"]
