"""What a Stalled/ApplyFailed message tells the user to do: the spec field a refused child
field comes from, or what to do by the child's kind."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from deepseek_operator.controller.cluster import ApplyError
from deepseek_operator.controller.plan import ObjectKey
from deepseek_operator.controller.reconcile import _apply_hint


def _refusal(kind: str, message: str) -> ApplyError:
    exc = ApiException(status=422, reason="Unprocessable Entity")
    exc.body = json.dumps({"message": message})
    return ApplyError(ObjectKey("v1", kind, "ns", "r1-x"), "applying", exc)


@pytest.mark.parametrize(
    ("kind", "message", "spec_field"),
    [
        ("Deployment", 'spec.template.spec.tolerations[0].key: Invalid value: "A B"',
         "spec.scheduling.tolerations"),
        ("Deployment", "spec.template.spec.containers[0].env[1].name: Invalid value",
         "spec.engine.env"),
        ("RoleBinding", 'subjects[0].name: Invalid value: "Bot X": a lowercase RFC 1123',
         "spec.access.bindings[].subjects"),
        ("PersistentVolumeClaim", "spec.resources.requests.storage: field can not be less",
         "spec.storage.size"),
    ],
)
def test_a_refusal_names_the_spec_field_it_comes_from(
    kind: str, message: str, spec_field: str
) -> None:
    error = _refusal(kind, message)
    assert error.refused
    assert spec_field in _apply_hint(error)


def test_a_refusal_from_no_known_field_says_what_to_do() -> None:
    hint = _apply_hint(_refusal("Service", "metadata.annotations: Too long"))
    assert "delete it" in hint and "change the spec" in hint
