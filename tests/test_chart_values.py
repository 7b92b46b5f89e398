"""The chart's values.schema.json: it types every value of values.yaml, accepts the defaults
and refuses bad values by path (helm applies it on template, install and upgrade; the e2e
packaging tests check helm's own messages)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

CHART = Path(__file__).resolve().parent.parent / "charts" / "deepseek-operator"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Paths of every value of values.yaml, mappings descended into."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, (*path, key))


def _node(path: tuple[str, ...]) -> dict[str, Any]:
    """The schema of the value at `path`: a named property, else the schema every key of
    that mapping has (additionalProperties), `$ref`s resolved."""
    node: dict[str, Any] = SCHEMA
    for key in path:
        properties = node.get("properties", {})
        node = properties[key] if key in properties else node["additionalProperties"]
        if "$ref" in node:
            node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _errors(values: dict[str, Any]) -> list[str]:
    """Each schema error as `path: message`, path dotted as in `--set`."""
    validator = jsonschema.Draft7Validator(SCHEMA)
    return sorted(".".join(str(p) for p in e.absolute_path) + ": " + e.message
                  for e in validator.iter_errors(values))


def test_the_schema_is_draft_7_and_accepts_the_defaults() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert _errors(VALUES) == []


@pytest.mark.parametrize("path", [p for p in _leaves(VALUES) if p],
                         ids=lambda p: ".".join(p))
def test_every_value_has_a_type(path: tuple[str, ...]) -> None:
    node = _node(path)
    alternatives = node.get("oneOf", [node])
    assert alternatives and all("type" in alternative for alternative in alternatives)


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("logFormat", "xml", "logFormat: 'xml' is not one of ['plain', 'full', 'json']"),
        ("metricsPort", "abc", "metricsPort: 'abc' is not of type 'integer'"),
        ("metricsPort", 0, "metricsPort: 0 is less than the minimum of 1"),
        ("healthPort", 70000, "healthPort: 70000 is greater than the maximum of 65535"),
        ("replicaCount", -1, "replicaCount: -1 is less than the minimum of 0"),
        ("image.pullPolicy", "Sometimes", "image.pullPolicy: 'Sometimes' is not one of"),
        ("watchNamespaces", ["Bad_NS"], "watchNamespaces.0: 'Bad_NS' does not match"),
        ("peering.enabled", "yes", "peering.enabled: 'yes' is not of type 'boolean'"),
        ("resources.limits.memory", "lots", "resources.limits.memory: 'lots' is not valid"),
        ("tolerations", [{"effect": "Never"}], "tolerations.0.effect: 'Never' is not one of"),
        ("gateway.replicaCount", 1, "gateway.replicaCount: 1 is less than the minimum of 2"),
        ("gateway.service.type", "Ingress", "gateway.service.type: 'Ingress' is not one of"),
        ("gateway.audit.volume", "hostPath", "gateway.audit.volume: 'hostPath' is not one of"),
        ("gateway.enabled", "yes", "gateway.enabled: 'yes' is not of type 'boolean'"),
        ("networkPolicy.scraperPodLabels", {"app": 1},
         "networkPolicy.scraperPodLabels.app: 1 is not of type 'string'"),
    ],
)
def test_a_bad_value_is_refused_naming_it(dotted: str, value: Any, message: str) -> None:
    values = copy.deepcopy(VALUES)
    *parents, last = dotted.split(".")
    target = values
    for key in parents:
        target = target[key]
    target[last] = value
    (error,) = _errors(values)
    assert error.startswith(message)


def test_a_misspelt_value_is_refused() -> None:
    (error,) = _errors({**VALUES, "metricPort": 9090})
    assert "'metricPort' was unexpected" in error
