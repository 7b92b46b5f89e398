"""Predicates over observed workloads: what the LeaderWorkerSet controller's status says."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek_operator.controller.predicates import lws_seen, workload_counts


def _lws(want: int, generation: int = 1, **status: Any) -> dict[str, Any]:
    """A LeaderWorkerSet as its controller (sigs.k8s.io/lws v0.8.0) leaves it: a status of
    conditions and group counts, and no observedGeneration anywhere."""
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {"name": "r1", "generation": generation},
            "spec": {"replicas": want}, "status": status}


def _cond(kind: str, status: str = "True") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": "r", "message": "m"}


AVAILABLE = [_cond("Available"), _cond("Progressing", "False")]


def test_a_ready_leaderworkerset_is_rolled_out_without_observed_generation() -> None:
    # Found against the real controller: its status has no observedGeneration, so the
    # generation test alone never passed and the deployment never became Ready.
    lws = _lws(1, generation=3, replicas=1, readyReplicas=1, updatedReplicas=1,
               conditions=AVAILABLE)
    assert workload_counts(lws) == (1, 1, True)


def test_a_leaderworkerset_without_status_is_not_rolled_out() -> None:
    assert workload_counts(_lws(1)) == (0, 0, False)
    assert not lws_seen({})


def test_a_template_update_in_progress_is_not_rolled_out() -> None:
    lws = _lws(1, generation=2, replicas=1, readyReplicas=1, updatedReplicas=1,
               conditions=[*AVAILABLE, _cond("UpdateInProgress")])
    assert workload_counts(lws) == (1, 1, False)


@pytest.mark.parametrize(("want", "replicas", "updated", "rolled_out"), [
    (2, 1, 1, False),  # scaling up: the new group is not there yet
    (1, 2, 2, False),  # scaling down: a group too many still exists
    (2, 2, 2, True),
])
def test_group_counts_against_the_spec(want: int, replicas: int, updated: int,
                                       rolled_out: bool) -> None:
    lws = _lws(want, replicas=replicas, readyReplicas=replicas, updatedReplicas=updated,
               conditions=AVAILABLE)
    assert workload_counts(lws)[2] is rolled_out


def test_a_deployment_still_needs_its_observed_generation() -> None:
    deployment = {"kind": "Deployment", "metadata": {"name": "r1", "generation": 2},
                  "spec": {"replicas": 1},
                  "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                             "observedGeneration": 1}}
    assert workload_counts(deployment) == (1, 1, False)
