"""The check of the served CRD against the built one (controller/crd_sync.py): what counts
as a difference and how it is told."""

from __future__ import annotations

from typing import Any

from deepseek_operator.api.crd import build_crd
from deepseek_operator.controller.crd_sync import CRD_NAME, schema_drift


def _spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = (
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])
    return spec


def test_the_built_crd_has_no_drift_from_itself() -> None:
    assert build_crd()["metadata"]["name"] == CRD_NAME
    assert schema_drift(build_crd(), build_crd()) == []


def test_an_older_crd_lacking_fields_names_them() -> None:
    served = build_crd()
    engine = _spec_schema(served)["properties"]["engine"]["properties"]
    del engine["args"], engine["env"]
    (drift,) = schema_drift(served, build_crd())
    assert drift.startswith("version v1alpha1 lacks ")
    assert "spec.engine.args" in drift and "spec.engine.env" in drift
    assert "apiserver prunes" in drift


def test_fields_the_operator_does_not_know_are_named() -> None:
    served = build_crd()
    _spec_schema(served)["properties"]["future"] = {"type": "string"}
    assert schema_drift(served, build_crd()) == [
        "version v1alpha1 has 1 field(s) this operator does not know: spec.future"]


def test_a_long_list_of_missing_fields_is_cut() -> None:
    served = build_crd()
    del _spec_schema(served)["properties"]["engine"]
    (drift,) = schema_drift(served, build_crd())
    assert drift.endswith(", ...") and drift.count("spec.engine") == 5


def test_a_changed_rule_or_column_is_a_difference_without_field_names() -> None:
    columns = build_crd()
    columns["spec"]["versions"][0]["additionalPrinterColumns"].pop()
    assert schema_drift(columns, build_crd()) == [
        "version v1alpha1 differs in additionalPrinterColumns (validation rules, defaults "
        "or columns)"]
    rules = build_crd()
    del _spec_schema(rules)["x-kubernetes-validations"]  # the CEL rules across fields
    assert schema_drift(rules, build_crd()) == [
        "version v1alpha1 differs in schema (validation rules, defaults or columns)"]


def test_versions_missing_or_unknown_are_named() -> None:
    served = build_crd()
    served["spec"]["versions"][0]["name"] = "v1alpha0"
    assert schema_drift(served, build_crd()) == [
        "version v1alpha1 is not served",
        "version v1alpha0 is served but unknown to this operator"]
    assert schema_drift({}, build_crd()) == ["version v1alpha1 is not served"]
