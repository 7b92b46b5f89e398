"""YAML streams in and out, for `deepseek-operator render -f` (pure: text in, text out)."""

import copy
from collections.abc import Iterable
from typing import Any, Final

import yaml

from ..api import FieldIssue, InvalidSpecError

DEFAULT_NAMESPACE: Final = "default"


def load_documents(text: str) -> list[dict[str, Any]]:
    """The non-empty documents of the YAML stream `text`, each a mapping.

    Raises InvalidSpecError: path `line N` for malformed YAML, `document N` (1-based) for a
    document that is not a mapping.
    """
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "input"
        raise InvalidSpecError([FieldIssue(where, f"not valid YAML: {error}")]) from None
    for index, doc in enumerate(documents, start=1):
        if not isinstance(doc, dict):
            raise InvalidSpecError(
                [FieldIssue(f"document {index}", "must be a mapping (a Kubernetes object)")]
            )
    return documents


def with_namespace(obj: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    """A copy of `obj` whose metadata.namespace is set: its own, else `namespace`, else
    `default` (as kubectl does).

    Raises InvalidSpecError naming metadata.namespace when `obj` has one that differs from
    a given `namespace`, or metadata that is not a mapping.
    """
    result = copy.deepcopy(obj)
    metadata = result.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidSpecError([FieldIssue("metadata", "must be a mapping")])
    own = metadata.get("namespace")
    if own and namespace and own != namespace:
        raise InvalidSpecError(
            [FieldIssue("metadata.namespace", f"is {own!r} but namespace {namespace!r} was asked")]
        )
    metadata["namespace"] = own or namespace or DEFAULT_NAMESPACE
    return result


class _StreamDumper(yaml.SafeDumper):
    """SafeDumper writing multi-line strings (scripts, embedded YAML) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_StreamDumper.add_representer(str, _represent_str)


def dump_yaml_stream(objects: Iterable[dict[str, Any]]) -> str:
    """`objects` as one YAML stream, each document opened by `---` (like `helm template`);
    keys in the order rendered, multi-line strings as literal blocks."""
    return "".join(
        "---\n" + yaml.dump(obj, Dumper=_StreamDumper, sort_keys=False, allow_unicode=True,
                            width=1 << 16)
        for obj in objects
    )
