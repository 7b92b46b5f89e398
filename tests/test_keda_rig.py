"""The pure parts of the local control plane's KEDA set-up (e2e/cluster/keda.py): the
wrapper module's go.mod and the JSON patches KEDA's CRD kustomization applies."""

from __future__ import annotations

from typing import Any

import pytest
from e2e.cluster.keda import json_patch, replace_lines, wrapper_gomod

KEDA_GOMOD = """module github.com/kedacore/keda/v2

go 1.26.0

// Needed replaces
replace example.com/nexus v0.1.0 => example.com/nexus v0.1.1-0.20260629224316-835bd8d49cb4

replace (
\texample.com/a => example.com/b v1.2.3 // a comment
\t// only a comment => not a replace
)

exclude github.com/go-chi/chi/v5 v5.2.3
"""


def test_replace_lines_reads_single_line_and_block_forms() -> None:
    assert replace_lines(KEDA_GOMOD) == [
        "example.com/nexus v0.1.0 => example.com/nexus v0.1.1-0.20260629224316-835bd8d49cb4",
        "example.com/a => example.com/b v1.2.3",
    ]


def test_the_wrapper_requires_keda_and_repeats_its_replaces() -> None:
    gomod = wrapper_gomod("v2.21.0", ["example.com/a => example.com/b v1.2.3"])
    assert "require github.com/kedacore/keda/v2 v2.21.0\n" in gomod
    assert "\nreplace example.com/a => example.com/b v1.2.3\n" in gomod
    assert gomod.startswith("module deepseek-operator.local/keda-tools\n\ngo 1.26.0\n")


def test_json_patch_adds_appends_and_removes() -> None:
    doc: dict[str, Any] = {"a": {"required": ["x"], "props": {"m": 1, "n": 2}}}
    json_patch(doc, [
        {"op": "add", "path": "/a/required/-", "value": "protocol"},
        {"op": "add", "path": "/a/props/n~1x", "value": {"minimum": 0}},
        {"op": "remove", "path": "/a/props/m"},
        {"op": "add", "path": "/a/required/0", "value": "first"},
    ])
    assert doc == {"a": {"required": ["first", "x", "protocol"],
                         "props": {"n": 2, "n/x": {"minimum": 0}}}}
    with pytest.raises(ValueError, match="replace"):
        json_patch(doc, [{"op": "replace", "path": "/a", "value": 1}])
    with pytest.raises(KeyError):
        json_patch(doc, [{"op": "remove", "path": "/a/missing"}])
