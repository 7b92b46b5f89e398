"""Which copy of a DeepSeekDeployment a reconcile starts from right after a status write:
a watched copy that shows the write, else what the write returned."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek_operator.controller.reconciler import shows_status_patch

READY = [{"type": "Ready", "status": "True", "reason": "Serving"}]


@pytest.mark.parametrize(
    ("status", "patch", "shown"),
    [
        ({"phase": "Ready", "conditions": READY, "replicas": 2},
         {"phase": "Ready", "conditions": READY}, True),
        ({"phase": "Pending", "conditions": READY}, {"phase": "Ready"}, False),
        # lists are merge-patched whole: a condition list of another length is older
        ({"conditions": READY}, {"conditions": [*READY, {"type": "Stalled"}]}, False),
        # null removes a key: shown only when the key is gone
        ({"phase": "Ready"}, {"autoscaler": None}, True),
        ({"phase": "Ready", "autoscaler": {"desiredReplicas": 2}}, {"autoscaler": None}, False),
        # nested dicts are merged: other keys may stay
        ({"modelCache": {"claim": "r1-models", "size": "10Gi"}},
         {"modelCache": {"claim": "r1-models"}}, True),
        ({"modelCache": "r1-models"}, {"modelCache": {"claim": "r1-models"}}, False),
        (None, {"phase": "Ready"}, False),
        (None, {}, True),
    ],
)
def test_a_copy_shows_a_status_write_only_when_it_holds_all_of_it(
        status: dict[str, Any] | None, patch: dict[str, Any], shown: bool) -> None:
    assert shows_status_patch(status, patch) is shown
