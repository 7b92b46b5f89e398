"""Which watch events of a DeepSeekDeployment reconcile: more than a status change."""

from __future__ import annotations

import copy
from typing import Any

from kubernetes.client import ApiClient

from deepseek_operator.autoscaler.loop import Autoscaler
from deepseek_operator.controller.cache import ChildCache
from deepseek_operator.controller.cluster import Cluster
from deepseek_operator.controller.reconciler import Reconciler
from deepseek_operator.render import RenderSettings

BODY: dict[str, Any] = {
    "metadata": {"name": "r1", "namespace": "ai", "uid": "u1", "generation": 1,
                 "labels": {"team": "ml"}},
    "spec": {"model": {"name": "deepseek-r1-distill-qwen-1.5b"}},
}


def _changed(**updates: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    body["metadata"].update(updates)
    return body


def test_only_changes_beyond_the_status_reconcile() -> None:
    api = ApiClient()
    reconciler = Reconciler(cluster=Cluster(api, ChildCache()), autoscaler=Autoscaler(api),
                            post_event=lambda *args: None, settings=RenderSettings())
    assert reconciler.remember(BODY), "first sight"
    with_status = {**BODY, "status": {"phase": "Ready"}, "metadata": {
        **BODY["metadata"], "resourceVersion": "99"}}
    assert not reconciler.remember(with_status), "a status write"
    assert reconciler.remember(_changed(generation=2)), "a spec change"
    assert reconciler.remember(_changed(generation=2, labels={"team": "x"}))
    assert reconciler.remember(
        _changed(generation=2, labels={"team": "x"}, deletionTimestamp="2026-11-30T00:00:00Z"))
    reconciler.forget("ai", "r1")
    assert reconciler.remember(BODY), "seen again after a deletion"
