"""The generated CRD: up to date in crds/, structural, described, valid for Kubernetes 1.37,
and in agreement with the pydantic models it comes from."""

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from celpy.adapter import json_to_cel

from deepseek_operator.api import (
    API_VERSION,
    CRD_NAME,
    KIND,
    SHORT_NAME,
    VERSION,
    DeepSeekDeployment,
    parse_spec,
)
from deepseek_operator.api.crd import CRD_FILENAME, build_crd, crd_yaml, openapi_schema
from deepseek_operator.api.patterns import PATTERN_HINTS

REPO = Path(__file__).resolve().parents[1]
KUBERNETES_VERSION = "1.37.0"
SCALAR_TYPES = {"string", "integer", "number", "boolean"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return openapi_schema()


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (properties by name, list items as [], map values {})."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_crds_directory_is_up_to_date() -> None:
    committed = (REPO / "crds" / CRD_FILENAME).read_text(encoding="utf-8")
    assert committed == crd_yaml(), "crds/ is stale: run `make crds`"


def test_output_is_deterministic() -> None:
    assert crd_yaml() == crd_yaml()
    assert yaml.safe_load(crd_yaml()) == build_crd()


def test_crd_is_valid_for_the_control_plane_version() -> None:
    kubernetes_validate.validate(build_crd(), KUBERNETES_VERSION, strict=True)


def test_names_subresources_and_columns() -> None:
    spec = build_crd()["spec"]
    assert build_crd()["metadata"]["name"] == CRD_NAME
    assert spec["names"]["kind"] == KIND
    assert spec["names"]["shortNames"] == [SHORT_NAME]
    assert spec["names"]["categories"] == ["ai"]
    assert spec["scope"] == "Namespaced"
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    columns = {c["name"]: c for c in version["additionalPrinterColumns"] if "priority" not in c}
    assert list(columns) == ["Model", "GPUs/replica", "Desired", "Ready", "QPS", "Status",
                            "Download%", "Age"]
    assert columns["GPUs/replica"]["jsonPath"] == ".status.sizing.gpusPerReplica"
    assert columns["QPS"]["jsonPath"] == ".status.autoscaling.observedQPS"
    assert columns["Status"]["jsonPath"] == ".status.phase"


def test_printer_columns_and_scale_paths_exist_with_their_types(schema: dict[str, Any]) -> None:
    version = build_crd()["spec"]["versions"][0]
    nodes = dict(walk(schema))
    expected = {"integer": "integer", "number": "number", "string": "string"}
    for column in version["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".metadata."):
            continue
        node = nodes[column["jsonPath"]]
        assert node["type"] == expected[column["type"]], column
    scale = version["subresources"]["scale"]
    assert nodes[scale["specReplicasPath"]]["type"] == "integer"
    assert nodes[scale["statusReplicasPath"]]["type"] == "integer"
    assert nodes[scale["labelSelectorPath"]]["type"] == "string"


def test_schema_is_structural(schema: dict[str, Any]) -> None:
    """The rules of Kubernetes structural schemas (apiextensions, "Specifying a structural
    schema"), plus no nullable: every optional field is simply not required."""
    forbidden = {"$ref", "anyOf", "oneOf", "allOf", "not", "nullable", "uniqueItems", "$defs"}
    for path, node in walk(schema):
        assert not forbidden & set(node), (path, forbidden & set(node))
        assert node.get("type") in SCALAR_TYPES | {"object", "array"}, path
        if node["type"] == "array":
            assert "items" in node, path
        if node["type"] == "object":
            assert not ("properties" in node and "additionalProperties" in node), path
            assert node.get("additionalProperties") is not False, path
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert node["type"] == "object" and "properties" not in node, path
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []), (path, key)
        if node.get("x-kubernetes-list-type") == "set":
            assert node["items"]["type"] in SCALAR_TYPES, path
    # Only name/generateName constraints are allowed under metadata; nothing else, not even
    # a description (apiextensions validateStructuralMetadataInvariants compares it to empty).
    assert schema["properties"]["metadata"] == {"type": "object"}


def test_every_property_has_a_description(schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        if path.endswith(("[]", "{}")) or path == ".metadata":
            continue  # items and map values are described by their field; metadata: see above
        assert node.get("description", "").strip(), path
        assert "\n" not in node["description"], path


def test_strings_and_lists_are_bounded_for_cel_cost(schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        if path in (".apiVersion", ".kind"):
            continue  # set by the apiserver, never by a user
        if node["type"] == "string" and "enum" not in node and "format" not in node:
            assert "maxLength" in node, path
        if node["type"] == "array":
            assert "maxItems" in node, path
        if isinstance(node.get("additionalProperties"), dict):
            assert "maxProperties" in node, path


def test_defaults_enums_and_bounds_are_in_the_schema(schema: dict[str, Any]) -> None:
    nodes = dict(walk(schema))
    assert nodes[".spec.model.quantization"]["enum"] == ["none", "fp8", "int8", "awq", "gptq"]
    assert nodes[".spec.engine.type"]["default"] == "vllm"
    assert nodes[".spec.gpu.maxConcurrentSequences"]["default"] == 16
    qps = nodes[".spec.autoscaling.targetQPSPerReplica"]
    assert (qps["minimum"], qps["exclusiveMinimum"]) == (0, True)
    assert nodes[".spec.engine.gpuMemoryUtilization"]["maximum"] == 1.0
    assert nodes[".spec.model"]["required"] == ["name"]
    assert schema["required"] == ["spec"]
    assert "default" not in nodes[".spec.model.facts"], "facts present means a custom model"


def apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the apiserver does it: a missing property with a default
    gets the default, then defaulting continues inside it."""
    if node["type"] == "object" and isinstance(value, dict):
        for name, child in node.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = apply_defaults(child, value[name])
        if isinstance(node.get("additionalProperties"), dict):
            for key, item in value.items():
                value[key] = apply_defaults(node["additionalProperties"], item)
    if node["type"] == "array" and isinstance(value, list):
        return [apply_defaults(node["items"], item) for item in value]
    return value


@pytest.mark.parametrize(
    "spec",
    [
        {"model": {"name": "deepseek-r1"}},
        {"model": {"name": "m"}, "engine": {"env": [{"name": "A"}]}, "autoscaling": {}},
        {
            "model": {"name": "m"},
            "access": {"bindings": [{"role": "user", "subjects": [{"kind": "User", "name": "u"}]}]},
        },
    ],
)
def test_apiserver_defaults_equal_the_model_defaults(
    schema: dict[str, Any], spec: dict[str, Any]
) -> None:
    defaulted = apply_defaults(schema["properties"]["spec"], copy.deepcopy(spec))
    assert defaulted == parse_spec(spec).model_dump(exclude_none=True)


def test_defaults_are_valid_against_their_own_schema(schema: dict[str, Any]) -> None:
    defaults = [(path, node) for path, node in walk(schema) if "default" in node]
    assert len(defaults) > 30
    environment = celpy.Environment()
    for path, node in defaults:
        value = apply_defaults(node, copy.deepcopy(node["default"]))
        errors = list(jsonschema.Draft4Validator(node).iter_errors(value))
        assert not errors, (path, errors)
        for rule in node.get("x-kubernetes-validations", []):
            program = environment.program(environment.compile(rule["rule"]))
            assert program.evaluate({"self": json_to_cel(value)}), (path, rule["rule"])


def test_a_full_object_validates_against_the_schema(schema: dict[str, Any]) -> None:
    obj = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "r1", "namespace": "ai"},
        "spec": {"model": {"name": "deepseek-r1"}, "gpu": {"type": "H200-141GB"}},
    }
    dumped = DeepSeekDeployment.model_validate(obj).model_dump(exclude_none=True)
    jsonschema.Draft4Validator(schema).validate(dumped)


def cel_errors(node: dict[str, Any], value: Any, path: str = "") -> list[tuple[str, str]]:
    """The (path, message) of every x-kubernetes-validations rule `value` breaks, as the
    apiserver evaluates them: each node's rules with `self` bound to its value."""
    environment = celpy.Environment()
    broken = [
        (path, rule["message"])
        for rule in node.get("x-kubernetes-validations", [])
        if not environment.program(environment.compile(rule["rule"])).evaluate(
            {"self": json_to_cel(value)}
        )
    ]
    if isinstance(value, dict):
        for name, child in node.get("properties", {}).items():
            if name in value:
                broken += cel_errors(child, value[name], f"{path}.{name}")
        if isinstance(node.get("additionalProperties"), dict):
            for key, item in value.items():
                broken += cel_errors(node["additionalProperties"], item, f"{path}.{key}")
    if isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            broken += cel_errors(node["items"], item, f"{path}[{index}]")
    return broken


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("gpu", "count"), -1),
        (("engine", "type"), "tgi"),
        (("autoscaling", "targetQPSPerReplica"), 0.0),
        (("storage", "size"), "lots"),
        (("model", "uri"), "ftp://x/y"),
        (("model", "revision"), "bräch"),
        (("storage", "existingClaim"), "Bad_Claim"),
        (("engine", "args"), ["--api-key", "sk-test-123"]),
        (("engine", "env"), [{"name": "HF_TOKEN", "value": "hf_x"}]),
        (("engine", "env"), [{"name": "VLLM_API_KEY", "valueFrom": {
            "secretKeyRef": {"name": "k", "key": "v"}}}]),
        (("engine", "apiKeySecret"), {"name": "Bad_Name"}),
        (("engine", "apiKeySecret"), {"name": "k", "key": "a/b"}),
    ],
)
def test_schema_and_models_refuse_the_same_bad_values(
    schema: dict[str, Any], path: tuple[str, str], value: Any
) -> None:
    spec: dict[str, Any] = {"model": {"name": "deepseek-r1"}}
    spec.setdefault(path[0], {})[path[1]] = value
    node = schema["properties"]["spec"]
    defaulted = apply_defaults(node, spec)
    validator = jsonschema.Draft4Validator(node)
    assert not validator.is_valid(defaulted) or cel_errors(node, defaulted)
    with pytest.raises(ValueError, match=rf"spec\.{path[0]}\.{path[1]}"):
        parse_spec(spec)


def test_no_field_is_checked_by_a_pattern_keyword(schema: dict[str, Any]) -> None:
    """The apiserver's error for `pattern` quotes the regex; every pattern is a CEL rule."""
    assert [path for path, node in walk(schema) if "pattern" in node] == []


def test_no_validation_message_shows_a_regex(schema: dict[str, Any]) -> None:
    messages = [
        rule["message"]
        for _, node in walk(schema)
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(messages) > 20
    for message in messages:
        assert not re.search(r"[\\^$\[\]*+?|{}]", message), message
        assert not any(pattern in message for pattern in PATTERN_HINTS), message


def test_each_pattern_field_says_what_it_accepts(schema: dict[str, Any]) -> None:
    checked = {
        path: node["x-kubernetes-validations"]
        for path, node in walk(schema)
        if any(rule["rule"].startswith("self.matches(")
               for rule in node.get("x-kubernetes-validations", []))
    }
    patterns = set()
    for path, rules in checked.items():
        (rule,) = rules
        pattern = rule["rule"].removeprefix("self.matches(r'").removesuffix("')")
        assert rule["message"] == f"must be {PATTERN_HINTS[pattern]}", path
        patterns.add(pattern)
    raw = DeepSeekDeployment.model_json_schema(by_alias=True)
    del raw["$defs"]["ObjectMeta"]  # the CRD leaves metadata to the apiserver
    assert patterns == schema_patterns(raw)
    assert "hf://ORG/REPO" in checked[".spec.model.uri"][0]["message"]
    assert "900Gi" in checked[".spec.storage.size"][0]["message"]


def schema_patterns(node: Any) -> set[str]:
    """Every `pattern` in a pydantic JSON schema, at any depth."""
    if isinstance(node, dict):
        own = {node["pattern"]} if isinstance(node.get("pattern"), str) else set()
        return own.union(*(schema_patterns(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(schema_patterns(item) for item in node))
    return set()


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ((".spec.model.uri"), "hf://deepseek-ai/DeepSeek-R1", "hf://org"),
        ((".spec.storage.size"), "900Gi", "900 GB"),
        ((".spec.storage.existingClaim"), "models.cache", "Models"),
        ((".spec.engine.env[].name"), "HF_TOKEN", "1TOKEN"),
        ((".spec.engine.image"), "registry:5000/vllm/vllm-openai:v1@sha256:ab", "$(rm -rf /)"),
        ((".status.conditions[].type"), "deepseek-operator.io/Ready", "Ready/"),
    ],
)
def test_pattern_rules_accept_good_values_and_refuse_bad_ones_in_words(
    schema: dict[str, Any], field: str, good: str, bad: str
) -> None:
    node = dict(walk(schema))[field]
    assert cel_errors(node, good) == []
    assert cel_errors(node, bad) == [("", node["x-kubernetes-validations"][0]["message"])]


def test_cel_rules_compile_and_carry_messages(schema: dict[str, Any]) -> None:
    environment = celpy.Environment()
    rules = [
        (path, rule)
        for path, node in walk(schema)
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert {path for path, _ in rules} >= {
        "",
        ".spec",
        ".spec.model",
        ".spec.autoscaling",
        ".spec.access",
        ".spec.gpu",
    }
    for path, rule in rules:
        environment.compile(rule["rule"])
        assert set(rule) <= {"rule", "message", "fieldPath"}, path
        assert rule["message"], path
