"""Why a model-cache claim waits: the StorageReady message built from the claim's Events
(controller/claim_events.py)."""

from __future__ import annotations

import datetime as dt
import itertools
import types
from typing import Any, cast

import pytest
from kubernetes.client import ApiClient

from deepseek_operator.controller import cluster as cluster_module
from deepseek_operator.controller.cache import ChildCache
from deepseek_operator.controller.claim_events import (
    MAX_EVENT_CHARS,
    MAX_REASONS,
    REDACTED,
    access_mode_hint,
    claim_reasons,
    pending_claim_message,
    sanitize,
)
from deepseek_operator.controller.cluster import (
    CLAIM_EVENTS_REFRESH_MAX_SECONDS,
    CLAIM_EVENTS_REFRESH_SECONDS,
    Cluster,
)
from deepseek_operator.controller.reconcile import (
    CLAIM_EVENTS_AFTER_SECONDS,
    _pending_claim_events,
)
from deepseek_operator.render import DEPLOYMENT_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE

UID = "0c7a5f7e-1b7d-4d0e-9a51-5a3f0e0f2c11"
# What the AWS EBS CSI driver's external-provisioner posts for a ReadWriteMany claim.
EBS_REFUSAL = ('failed to provision volume with StorageClass "gp3": rpc error: code = '
               "InvalidArgument desc = Volume capabilities MULTI_NODE_MULTI_WRITER not "
               "supported. Only AccessModes[ReadWriteOnce] supported.")
EXTERNAL = ("Waiting for a volume to be created either by the external provisioner "
            "'ebs.csi.aws.com' or manually by the system administrator. If volume creation "
            "is delayed, please verify that the provisioner is running and correctly "
            "registered.")


def _claim(modes: list[str], storage_class: str = "gp3", ours: bool = True) -> dict[str, Any]:
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, DEPLOYMENT_LABEL: "r1"} if ours else {}
    return {"metadata": {"name": "r1-model-cache", "namespace": "ai", "uid": UID,
                         "labels": labels},
            "spec": {"accessModes": modes, "storageClassName": storage_class},
            "status": {"phase": "Pending"}}


def _event(reason: str, message: str, type_: str = "Normal", at: str = "2026-12-01T03:00:00Z",
           uid: str = UID, count: int = 1) -> dict[str, Any]:
    return {"reason": reason, "message": message, "type": type_, "lastTimestamp": at,
            "count": count, "involvedObject": {"kind": "PersistentVolumeClaim",
                                               "name": "r1-model-cache", "uid": uid}}


def test_a_refused_rwx_claim_names_the_provisioners_reason_and_the_way_out() -> None:
    events = [_event("ExternalProvisioning", EXTERNAL, at="2026-12-01T03:00:05Z"),
              _event("ProvisioningFailed", EBS_REFUSAL, "Warning", at="2026-12-01T03:00:01Z")]
    message = pending_claim_message(_claim(["ReadWriteMany"]), events,
                                    provisioner="ebs.csi.aws.com")
    assert message.startswith("PersistentVolumeClaim r1-model-cache is Pending: "
                              "ProvisioningFailed: failed to provision volume")
    waiting = pending_claim_message(_claim(["ReadWriteMany"], "efs"), events[:1],
                                    provisioner="efs.csi.aws.com")
    assert waiting == ("PersistentVolumeClaim r1-model-cache is Pending: ExternalProvisioning: "
                       + EXTERNAL.rstrip("."))
    # The failure, not the newer "waiting for the provisioner", and one sentence end.
    assert "ExternalProvisioning" not in message
    assert "Only AccessModes[ReadWriteOnce] supported. StorageClass" in message
    assert ('StorageClass "gp3" (provisioner ebs.csi.aws.com) provisions ReadWriteOnce '
            "volumes only") in message
    assert "spec.storage.accessMode ReadWriteOnce with replicas 1" in message
    assert "autoscaling.maxReplicas 1" in message
    assert "spec.storage.storageClassName" in message and "EFS" in message


def test_an_unknown_provisioner_that_refuses_gets_a_hedged_hint() -> None:
    events = [_event("ProvisioningFailed", "volume rejected", "Warning")]
    message = pending_claim_message(_claim(["ReadWriteMany"], "rwo-only"), events,
                                    provisioner="example.com/disks")
    assert 'StorageClass "rwo-only" may not support ReadWriteMany' in message
    assert "ReadWriteOnce with replicas 1" in message


def test_a_known_single_node_class_hints_before_any_event() -> None:
    message = pending_claim_message(_claim(["ReadWriteMany"], "standard-rwo"), [],
                                    provisioner="pd.csi.storage.gke.io")
    assert "no events about it yet" in message
    assert "provisioner pd.csi.storage.gke.io) provisions ReadWriteOnce volumes only" in message


def test_no_hint_for_a_claim_that_only_waits_or_asks_readwriteonce() -> None:
    waiting = [_event("WaitForFirstConsumer",
                      "waiting for first consumer to be created before binding")]
    message = pending_claim_message(_claim(["ReadWriteMany"], "nfs"), waiting,
                                    provisioner="nfs.csi.k8s.io")
    assert message == ("PersistentVolumeClaim r1-model-cache is Pending: WaitForFirstConsumer: "
                       "waiting for first consumer to be created before binding")
    refused_rwo = [_event("ProvisioningFailed", "out of capacity", "Warning")]
    assert pending_claim_message(_claim(["ReadWriteOnce"]), refused_rwo,
                                 provisioner="ebs.csi.aws.com") == (
        "PersistentVolumeClaim r1-model-cache is Pending: ProvisioningFailed: out of capacity")


def test_a_given_claim_is_not_promised_a_replacement() -> None:
    events = [_event("ProvisioningFailed", EBS_REFUSAL, "Warning")]
    message = pending_claim_message(_claim(["ReadWriteMany"], ours=False), events,
                                    provisioner="ebs.csi.aws.com")
    assert "the claim is given (spec.storage.existingClaim" in message
    assert "replaces it" not in message


def test_unreadable_events_are_said_and_unread_ones_are_not_guessed() -> None:
    assert pending_claim_message(_claim(["ReadWriteOnce"]), None, "events of x: 403 Forbidden") \
        == ("PersistentVolumeClaim r1-model-cache is Pending (its events could not be read: "
            "events of x: 403 Forbidden)")
    assert pending_claim_message(_claim(["ReadWriteOnce"]), None) == (
        "PersistentVolumeClaim r1-model-cache is Pending")


def test_reasons_are_distinct_bounded_of_this_claim_and_without_counts() -> None:
    events = [_event(f"Failure{i}", f"error {i}", "Warning", at=f"2026-12-01T03:00:0{i}Z")
              for i in range(6)]
    events.append(_event("ExternalProvisioning", EXTERNAL, at="2026-12-01T03:40:00Z"))
    events += [_event("ProvisioningFailed", "old claim's error", "Warning",
                      at="2026-12-01T03:59:59Z", uid="another-uid"),
               _event("Failure5", "an older Failure5", "Warning", at="2026-12-01T02:00:00Z"),
               _event("Scheduled", "not a reason to wait", at="2026-12-01T03:30:00Z")]
    reasons = claim_reasons(events, UID)
    assert len(reasons) == MAX_REASONS
    assert [r for _, r, _ in reasons] == ["Failure5", "Failure4", "Failure3"]
    assert reasons[0][2] == "error 5"
    # A repeat (higher count, later time, same words) gives the same message: no new write.
    first = pending_claim_message(_claim(["ReadWriteOnce"]), [_event("X", "m", "Warning")])
    again = pending_claim_message(_claim(["ReadWriteOnce"]), [
        _event("X", "m", "Warning", at="2026-12-01T03:10:00Z", count=40)])
    assert first == again


def test_events_api_notes_and_series_times_are_read() -> None:
    events = [{"reason": "ProvisioningFailed", "note": "from events.k8s.io", "type": "Warning",
               "series": {"lastObservedTime": "2026-12-01T03:00:09Z"},
               "regarding": {"uid": UID}},
              {"reason": "ProvisioningFailed", "message": "older", "type": "Warning",
               "eventTime": "2026-12-01T03:00:01Z", "involvedObject": {"uid": UID}}]
    assert claim_reasons(events, UID) == [("Warning", "ProvisioningFailed", "from events.k8s.io")]


def test_sanitize_masks_secrets_and_bounds_the_text() -> None:
    text = ("failed: POST https://admin:hunter2@nas.example.com/api?token=abc123&x=1\n"
            "password=s3cr3t, Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.signature "
            'api_key: "AKIAIOSFODNN7EXAMPLE" secret_access_key=wJalrXUtnFEMI/K7MDENG '
            "blob QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlq end\x1b[31m")
    clean = sanitize(text, 1000)
    for secret in ("hunter2", "abc123", "s3cr3t", "eyJhbGciOiJIUzI1NiJ9", "AKIAIOSFODNN7EXAMPLE",
                   "wJalrXUtnFEMI", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlq"):
        assert secret not in clean, secret
    assert clean.count(REDACTED) >= 6
    assert "\n" not in clean and "\x1b" not in clean
    assert "nas.example.com/api" in clean and "failed: POST https://" in clean
    # What a provisioner normally says survives untouched.
    assert sanitize(EBS_REFUSAL) == EBS_REFUSAL
    plain = f'claim "pvc-{UID}" on node gpu-h100-0'
    assert sanitize(plain) == plain
    long = sanitize("word " * 200)
    assert len(long) == MAX_EVENT_CHARS and long.endswith("...")


def test_the_hint_needs_a_rwx_claim_and_a_reason() -> None:
    assert access_mode_hint(["ReadWriteOnce"], "gp3", "ebs.csi.aws.com", True) == ""
    assert access_mode_hint(["ReadWriteMany"], "efs", "efs.csi.aws.com", False) == ""
    assert access_mode_hint(["ReadWriteMany"], "", "", True).startswith(
        "the default StorageClass may not support ReadWriteMany")


class _Reads:
    """Stands in for Cluster's two reads, counting the Event lists."""

    def __init__(self) -> None:
        self.lists: list[tuple[str, str, str]] = []

    def claim_events(self, namespace: str, name: str,
                     uid: str) -> tuple[list[dict[str, Any]] | None, str]:
        self.lists.append((namespace, name, uid))
        return [_event("ProvisioningFailed", "no", "Warning")], ""

    def storage_provisioner(self, name: str) -> str:
        return {"gp3": "ebs.csi.aws.com"}.get(name, "")


def test_events_are_read_only_for_a_claim_that_waits() -> None:
    reads = _Reads()
    cluster = cast(Any, reads)
    bound = {**_claim(["ReadWriteMany"]), "status": {"phase": "Bound"}}
    deleting = _claim(["ReadWriteMany"])
    deleting["metadata"]["deletionTimestamp"] = "2026-12-01T03:00:00Z"
    for claim in (None, bound, deleting):
        assert _pending_claim_events(cluster, claim) == (None, "", "")
    assert reads.lists == []
    events, error, provisioner = _pending_claim_events(cluster, _claim(["ReadWriteMany"]))
    assert reads.lists == [("ai", "r1-model-cache", UID)]
    assert events is not None and events[0]["reason"] == "ProvisioningFailed"
    assert (error, provisioner) == ("", "ebs.csi.aws.com")


def test_a_claim_binding_as_usual_has_its_events_left_unread() -> None:
    reads = _Reads()
    cluster = cast(Any, reads)
    claim = _claim(["ReadWriteMany"])
    claim["metadata"]["creationTimestamp"] = "2026-12-01T03:00:00Z"
    created = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC).timestamp()
    young = created + CLAIM_EVENTS_AFTER_SECONDS - 1
    assert _pending_claim_events(cluster, claim, now=young) == (None, "", "")
    assert reads.lists == []
    events, _, _ = _pending_claim_events(cluster, claim,
                                         now=created + CLAIM_EVENTS_AFTER_SECONDS)
    assert events is not None and reads.lists == [("ai", "r1-model-cache", UID)]


def test_a_waiting_claims_events_are_listed_once_per_refresh_interval(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every child event of a deployment whose claim waits reconciles it; the Events are
    listed at most once per CLAIM_EVENTS_REFRESH_SECONDS per claim, the answer reused in
    between, and the answers of claims nobody asks about any more are dropped."""
    clock = [100.0]
    monkeypatch.setattr(cluster_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    cluster = Cluster(ApiClient(), ChildCache())
    listed: list[tuple[str, str, str]] = []

    def list_events(namespace: str, name: str, uid: str) -> tuple[list[dict[str, Any]], str]:
        listed.append((namespace, name, uid))
        return [{"reason": f"Provisioning{len(listed)}"}], ""

    monkeypatch.setattr(cluster, "_list_claim_events", list_events)
    first = cluster.claim_events("ai", "r1-model-cache", UID)
    for step in range(1, 15):  # a reconcile a second, for 14 s
        clock[0] = 100.0 + step
        assert cluster.claim_events("ai", "r1-model-cache", UID) == first
    assert len(listed) == 1
    cluster.claim_events("ai", "other-cache", "other-uid")  # another claim: its own list
    clock[0] = 100.0 + CLAIM_EVENTS_REFRESH_SECONDS
    refreshed = cluster.claim_events("ai", "r1-model-cache", UID)
    assert refreshed != first and len(listed) == 3
    # The interval doubles with each list of the same claim, up to the maximum.
    times = []
    for _ in range(int(CLAIM_EVENTS_REFRESH_MAX_SECONDS * 3)):
        clock[0] += 1.0
        before = len(listed)
        cluster.claim_events("ai", "r1-model-cache", UID)
        if len(listed) > before:
            times.append(clock[0])
    gaps = [b - a for a, b in itertools.pairwise([100.0 + CLAIM_EVENTS_REFRESH_SECONDS, *times])]
    assert gaps == [2 * CLAIM_EVENTS_REFRESH_SECONDS, 4 * CLAIM_EVENTS_REFRESH_SECONDS,
                    CLAIM_EVENTS_REFRESH_MAX_SECONDS, CLAIM_EVENTS_REFRESH_MAX_SECONDS]
    clock[0] += 4 * CLAIM_EVENTS_REFRESH_MAX_SECONDS
    cluster.claim_events("ai", "r1-model-cache", UID)
    assert set(cluster._claim_events) == {UID}  # other-uid's answer went stale and was dropped
