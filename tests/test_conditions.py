"""set_condition (apimachinery semantics), rfc3339, and which transitions become Events."""

from __future__ import annotations

from deepseek_operator.api.conditions import rfc3339, set_condition
from deepseek_operator.api.status import Condition, DeepSeekDeploymentStatus
from deepseek_operator.controller.reconcile import condition_events, status_urgent

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def test_rfc3339_has_second_precision_in_utc() -> None:
    assert rfc3339(1_767_225_600.75) == "2026-01-01T00:00:00Z"
    assert rfc3339().endswith("Z") and len(rfc3339()) == len(T0)


def test_set_condition_adds_then_replaces_in_place() -> None:
    first = set_condition([], "Ready", False, "ClaimPending", "waiting", generation=1, now=T0)
    both = set_condition(first, "StorageReady", True, "ClaimBound", "ok", generation=1, now=T0)
    again = set_condition(both, "Ready", False, "Downloading", "50 %", generation=2, now=T1)
    assert [c.type for c in again] == ["Ready", "StorageReady"]
    ready = again[0]
    assert (ready.reason, ready.message, ready.observed_generation) == ("Downloading", "50 %", 2)
    assert ready.last_transition_time == T0, "status unchanged: the transition time stays"
    flipped = set_condition(again, "Ready", True, "ReplicasReady", "1/1", generation=2, now=T1)
    assert flipped[0].last_transition_time == T1
    assert both == set_condition(both, "Ready", False, "ClaimPending", "waiting",
                                 generation=1, now=T1), "same input, same conditions"


def test_unknown_and_long_messages() -> None:
    cond = set_condition([], "Scheduled", None, "NoPods", "x" * 40000, generation=1, now=T0)[0]
    assert cond.status == "Unknown" and len(cond.message) == 32768


def _status(**conds: tuple[str, str]) -> DeepSeekDeploymentStatus:
    return DeepSeekDeploymentStatus(conditions=[
        Condition(type=kind, status=status, reason=reason, message=f"{kind} {reason}",
                  last_transition_time=T0) for kind, (status, reason) in conds.items()])


def test_a_new_object_announces_only_problems() -> None:
    """Its initial state is no transition: a normal start posts nothing, a problem a
    Warning."""
    created = _status(Ready=("False", "ClaimPending"), Progressing=("True", "ClaimPending"),
                      Stalled=("False", "Reconciled"), StorageReady=("False", "ClaimPending"),
                      ModelCached=("False", "WaitingForStorage"), Scheduled=("Unknown", "NoPods"))
    assert condition_events(None, created) == []
    refused = _status(Ready=("False", "InvalidSpec"), Stalled=("True", "InvalidSpec"),
                      StorageReady=("False", "ClaimPending"))
    assert [(e.type, e.reason) for e in condition_events(None, refused)] == [
        ("Warning", "InvalidSpec")]


def test_progress_is_normal_and_problems_are_warnings() -> None:
    before = _status(Ready=("False", "ClaimPending"), StorageReady=("False", "ClaimPending"),
                     ModelCached=("False", "WaitingForStorage"), Stalled=("False", "Reconciled"))
    bound = _status(Ready=("False", "Downloading"), StorageReady=("True", "ClaimBound"),
                    ModelCached=("False", "Downloading"), Stalled=("False", "Reconciled"))
    assert condition_events(before, bound) == [], "a detail turning True is progress"
    ready = _status(Ready=("True", "ReplicasReady"), StorageReady=("True", "ClaimBound"),
                    ModelCached=("True", "Downloaded"), Stalled=("False", "Reconciled"))
    assert [(e.type, e.reason) for e in condition_events(bound, ready)] == [
        ("Normal", "ReplicasReady")]
    failed = _status(Ready=("False", "DownloadFailed"), StorageReady=("True", "ClaimBound"),
                     ModelCached=("False", "DownloadFailed"), Stalled=("False", "Reconciled"))
    assert [(e.type, e.reason) for e in condition_events(ready, failed)] == [
        ("Warning", "DownloadFailed"), ("Warning", "DownloadFailed")], "Ready and the detail"
    stalled = _status(Ready=("False", "InvalidSpec"), StorageReady=("True", "ClaimBound"),
                      ModelCached=("True", "Downloaded"), Stalled=("True", "InvalidSpec"))
    assert [(e.type, e.reason) for e in condition_events(ready, stalled)] == [
        ("Warning", "InvalidSpec")], "Stalled mirrors Ready: one event, not two"
    rolling = _status(Ready=("False", "RollingOut"), Stalled=("False", "Reconciled"))
    assert [(e.type, e.reason) for e in condition_events(ready, rolling)] == [
        ("Normal", "RollingOut")]


def test_only_what_a_reader_waits_for_is_written_at_once() -> None:
    pending = _status(Ready=("False", "ClaimPending"), Stalled=("False", "Reconciled"),
                      StorageReady=("False", "ClaimPending"))
    pending.observed_generation = 1
    bound = _status(Ready=("False", "Downloading"), Stalled=("False", "Reconciled"),
                    StorageReady=("True", "ClaimBound"))
    bound.observed_generation = 1
    ready = _status(Ready=("True", "ReplicasReady"), Stalled=("False", "Reconciled"),
                    StorageReady=("True", "ClaimBound"))
    ready.observed_generation = 1
    assert status_urgent(None, pending, condition_events(None, pending)), "the first status"
    assert not status_urgent(pending, bound, condition_events(pending, bound)), "progress"
    assert status_urgent(bound, ready, condition_events(bound, ready)), "Ready turns"
    newer = ready.model_copy(update={"observed_generation": 2})
    assert status_urgent(ready, newer, []), "a new generation is observed"
    failed = _status(Ready=("False", "DownloadFailed"), Stalled=("False", "Reconciled"),
                     StorageReady=("True", "ClaimBound"), ModelCached=("False", "DownloadFailed"))
    failed.observed_generation = 1
    before_failure = _status(Ready=("False", "Downloading"), Stalled=("False", "Reconciled"),
                             StorageReady=("True", "ClaimBound"),
                             ModelCached=("False", "Downloading"))
    before_failure.observed_generation = 1
    assert status_urgent(before_failure, failed, condition_events(before_failure, failed)), (
        "a failure (a Warning transition) is written at once")
