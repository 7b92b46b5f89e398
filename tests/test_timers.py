"""The operator's kopf timers (safety resync, autoscaler) put no finalizer on
DeepSeekDeployments, and stop at the object's DELETED event: `helm uninstall`, or an
operator that is down, then never leaves a DeepSeekDeployment (and its namespace) stuck
in deletion. e2e/test_packaging.py shows it on the control plane."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from kubernetes.client import ApiClient

from deepseek_operator.autoscaler.loop import Autoscaler
from deepseek_operator.controller import handlers
from deepseek_operator.controller.cache import ChildCache
from deepseek_operator.controller.cluster import Cluster
from deepseek_operator.controller.reconciler import Reconciler
from deepseek_operator.render import RenderSettings

META = {"name": "r1", "namespace": "ai", "uid": "u1", "generation": 1}


def _memo() -> kopf.Memo:
    api = ApiClient()
    return kopf.Memo(reconciler=Reconciler(
        cluster=Cluster(api, ChildCache()), autoscaler=Autoscaler(api),
        post_event=lambda *args: None, settings=RenderSettings()))


def test_the_timers_need_no_finalizer() -> None:
    registry = kopf.OperatorRegistry()
    handlers.register_timers(resync_seconds=600, autoscaler_tick_seconds=5, registry=registry)
    timers = {h.id: h for h in registry._spawning.get_all_handlers()}
    assert set(timers) == {"safety_resync", "autoscale", "download_progress", "claim_pending"}
    assert [h.requires_finalizer for h in timers.values()] == [False] * 4
    # What kopf.timer itself does, which _without_finalizer undoes: if a kopf release
    # stops marking timers, this test says the workaround can go.
    plain = kopf.OperatorRegistry()
    kopf.timer("example.com", "v1", "things", id="t", interval=1, registry=plain)(
        lambda **_: None)
    assert [h.requires_finalizer for h in plain._spawning.get_all_handlers()] == [True]


def test_the_timers_run_only_while_the_watch_holds_the_object() -> None:
    memo = _memo()
    kwargs: dict[str, Any] = {"meta": META, "memo": memo}
    spec = {"autoscaling": {"mode": "operator"}}
    assert not handlers._watched(**kwargs), "never delivered by the watch"
    memo.reconciler.remember({"metadata": META, "spec": spec})
    assert handlers._watched(**kwargs)
    assert handlers._operator_autoscaling(spec=spec, **kwargs)
    assert not handlers._operator_autoscaling(spec={"autoscaling": {"mode": "hpa"}}, **kwargs)
    downloading = {"conditions": [{"type": "ModelCached", "status": "False",
                                   "reason": "Downloading"}]}
    assert handlers._downloading_and_watched(status=downloading, **kwargs)
    assert not handlers._downloading_and_watched(status={}, **kwargs)
    memo.reconciler.forget("ai", "r1")  # on_deployment_event, at the DELETED event
    assert not handlers._watched(**kwargs)
    assert not handlers._operator_autoscaling(spec=spec, **kwargs)
    assert not handlers._downloading_and_watched(status=downloading, **kwargs)


class _Requests:
    """Stands in for the Debouncer: records what a timer queued."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, str, float]] = []

    def request(self, namespace: str, name: str, delay: float) -> None:
        self.queued.append((namespace, name, delay))


def test_the_reconcile_timers_queue_and_return_at_once() -> None:
    """A timer still running when its filter stops matching costs kopf a polling delay
    and an annotation patch of the object; so the timers that reconcile only queue the
    reconcile (at once) on the workers and never reconcile in kopf's thread pool."""
    registry = kopf.OperatorRegistry()
    handlers.register_timers(resync_seconds=600, autoscaler_tick_seconds=5, registry=registry)
    timers = {h.id: h for h in registry._spawning.get_all_handlers()}
    memo = _memo()
    memo.child_events = _Requests()
    for handler_id in ("safety_resync", "download_progress", "claim_pending"):
        fn = timers[handler_id].fn
        assert asyncio.iscoroutinefunction(fn), handler_id
        asyncio.run(fn(meta=META, memo=memo, body={"metadata": META}))
    assert memo.child_events.queued == [("ai", "r1", 0.0)] * 3
    assert memo.reconciler.managed_count() == 0, "nothing reconciled in the timer itself"
