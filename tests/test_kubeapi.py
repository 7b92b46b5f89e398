"""API resource lookups when a child kind's CRD comes and goes, and applies of a kind the
API no longer serves (found against the real control plane: a LeaderWorkerSet CRD deleted
while the operator ran left every apply failing with 404 and the deployment Stalled with
ApplyFailed instead of APINotInstalled)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes.client import ApiClient, ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from deepseek_operator.controller.cache import ChildCache
from deepseek_operator.controller.cluster import ApplyError, Cluster
from deepseek_operator.controller.plan import ObjectKey
from deepseek_operator.kubeapi import Resources

LWS = ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")


@dataclass
class FakeDiscovery:
    """The DynamicClient's discoverer: ``served`` kinds, a count of cache invalidations,
    and the Resource ``server_side_apply`` answers with ``apply_status``."""

    served: set[tuple[str, str]]
    invalidated: int = 0
    apply_status: int = 0
    lookups: list[tuple[str, str]] = field(default_factory=list)

    def get(self, api_version: str, kind: str) -> Any:
        self.lookups.append((api_version, kind))
        if (api_version, kind) not in self.served:
            raise ResourceNotFoundError(f"no {kind}")
        return self

    def invalidate_cache(self) -> None:
        self.invalidated += 1

    def server_side_apply(self, **_: Any) -> Any:
        raise ApiException(status=self.apply_status, reason="Not Found")


@dataclass
class FakeDynamic:
    resources: FakeDiscovery


def _resources(discovery: FakeDiscovery) -> Resources:
    resources = Resources(ApiClient())
    resources._dynamic = FakeDynamic(discovery)  # type: ignore[assignment]
    return resources


def test_a_found_kind_is_kept_until_a_recheck() -> None:
    discovery = FakeDiscovery({LWS})
    resources = _resources(discovery)
    assert resources.get(*LWS) is discovery
    discovery.served.clear()  # the CRD is deleted
    assert resources.get(*LWS) is discovery, "no lookup per call"
    resources.recheck()  # the CRD's watch event
    assert discovery.invalidated == 1
    assert resources.get(*LWS) is None


def test_forget_drops_one_kind_and_the_discovery_cache() -> None:
    other = ("monitoring.coreos.com/v1", "PodMonitor")
    discovery = FakeDiscovery({LWS, other})
    resources = _resources(discovery)
    resources.get(*LWS), resources.get(*other)
    discovery.served.discard(LWS)
    resources.forget(*LWS)
    assert discovery.invalidated == 1
    assert resources.get(*LWS) is None
    assert resources.get(*other) is discovery
    resources.forget(*LWS)  # not found any more: nothing to invalidate
    assert discovery.invalidated == 1


def _error(verb: str, status: int) -> ApplyError:
    key = ObjectKey("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "ai", "r1")
    return ApplyError(key, verb, ApiException(status=status, reason="x"))


@pytest.mark.parametrize(("verb", "status", "refused"), [
    ("applying", 404, False),  # the kind is gone: retried after a new lookup
    ("applying", 422, True),
    ("applying", 409, False),
    ("creating", 404, True),
])
def test_which_api_errors_are_refusals(verb: str, status: int, refused: bool) -> None:
    assert _error(verb, status).refused is refused


def test_only_an_immutable_field_error_counts_as_immutable() -> None:
    """The executor replaces a download Job only for this error: any other 422 (an
    invalid value) must not delete a running or finished download."""
    key = ObjectKey("batch/v1", "Job", "ai", "r1-download-1")

    def refused(body: str) -> ApplyError:
        exc = ApiException(status=422, reason="Unprocessable Entity")
        exc.body = body
        return ApplyError(key, "applying", exc)

    assert refused(json.dumps({"message": 'Job.batch "r1-download-1" is invalid: '
                               "spec.template: Invalid value: core.PodTemplateSpec{...}: "
                               "field is immutable"})).immutable
    assert not refused(json.dumps({"message": 'Job.batch "r1-download-1" is invalid: '
                                   "spec.activeDeadlineSeconds: Invalid value: -1: must be "
                                   "greater than or equal to 0"})).immutable


def test_an_apply_answered_404_forgets_the_kind() -> None:
    cluster = Cluster(ApiClient(), ChildCache())
    discovery = FakeDiscovery({LWS}, apply_status=404)
    cluster.resources = _resources(discovery)
    body = {"apiVersion": LWS[0], "kind": LWS[1], "metadata": {"name": "r1", "namespace": "ai"}}
    with pytest.raises(ApplyError) as failed:
        cluster.apply(body)
    assert not failed.value.refused
    discovery.served.clear()
    assert not cluster.served(*LWS), "asked discovery again"
    assert discovery.lookups == [LWS, LWS]


def _lws_body() -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": "r1"}},
                "spec": {"containers": [{"name": "engine", "image": "vllm"}]}}
    return {"apiVersion": LWS[0], "kind": LWS[1], "metadata": {"name": "r1", "namespace": "ai"},
            "spec": {"leaderWorkerTemplate": {"size": 2, "leaderTemplate": template,
                                              "workerTemplate": template}}}


def test_lws_pod_templates_are_checked_as_dry_run_deployments(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Found against the real LWS controller: a pod template its CRD accepts but pod
    # validation refuses left the LeaderWorkerSet without status, the reason only in the
    # controller's log.
    sent: list[tuple[str, dict[str, Any], str]] = []

    def refuse(_self: Any, namespace: str, body: dict[str, Any], **kw: Any) -> None:
        sent.append((namespace, body, kw["dry_run"]))
        refused = ApiException(status=422, reason="Unprocessable Entity")
        refused.body = json.dumps({"message": (
            'Deployment.apps "r1-x" is invalid: spec.template.spec.containers[0].env[0]'
            '.valueFrom.resourceFieldRef.containerName: Invalid value')})
        raise refused

    monkeypatch.setattr("kubernetes.client.AppsV1Api.create_namespaced_deployment", refuse)
    cluster = Cluster(ApiClient(), ChildCache())
    with pytest.raises(ApplyError) as failed:
        cluster.check_pod_templates(_lws_body())
    assert failed.value.refused
    assert "spec.leaderWorkerTemplate.leaderTemplate" in str(failed.value)
    assert "containers[0].env[0].valueFrom" in str(failed.value)
    namespace, body, dry_run = sent[0]
    assert (namespace, dry_run) == ("ai", "All")
    assert body["spec"]["selector"] == {"matchLabels": {"app": "r1"}}
    assert body["metadata"] == {"generateName": "r1-"}


def test_lws_pod_templates_that_pass_are_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr("kubernetes.client.AppsV1Api.create_namespaced_deployment",
                        lambda _self, namespace, body, **kw: calls.append(namespace))
    Cluster(ApiClient(), ChildCache()).check_pod_templates(_lws_body())
    assert calls == ["ai", "ai"]

