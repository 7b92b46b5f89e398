"""The render cache returns what render returns, and renders again when an input of
render changes (controller/render_cache.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from deepseek_operator.api.errors import InvalidSpecError
from deepseek_operator.api.resource import parse_deployment
from deepseek_operator.controller.render_cache import RenderCache
from deepseek_operator.render import RenderSettings, render

BODY: dict[str, Any] = {
    "apiVersion": "deepseek-operator.io/v1alpha1", "kind": "DeepSeekDeployment",
    "metadata": {"name": "r1", "namespace": "ai", "uid": "u-1", "generation": 1,
                 "resourceVersion": "10"},
    "spec": {"model": {"name": "deepseek-r1-distill-qwen-1.5b"}},
}


def _body(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    for path, value in changes.items():
        target = body
        *parents, last = path.split("__")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return body


def test_a_hit_is_an_equal_copy_the_caller_may_change() -> None:
    cache = RenderCache()
    settings = RenderSettings()
    first = cache.render(parse_deployment(_body()), settings)
    assert first == render(parse_deployment(_body()), settings)
    first[0]["metadata"]["name"] = "changed by the caller"
    # A status write and a new resourceVersion change nothing render reads: a hit.
    again = cache.render(parse_deployment(_body(metadata__resourceVersion="11",
                                                 status={"phase": "Pending"})), settings)
    assert (cache.hits, cache.misses) == (1, 1)
    assert again == render(parse_deployment(_body()), settings)


@pytest.mark.parametrize("changes", [
    {"spec": {"model": {"name": "deepseek-r1-distill-qwen-7b"}}},
    {"metadata__labels": {"team": "search"}},
    {"metadata__uid": "u-2"},
    {"spec__autoscaling": {"mode": "operator"},
     "status": {"autoscaling": {"desiredReplicas": 3}}},
])
def test_each_input_of_render_renders_again(changes: dict[str, Any]) -> None:
    cache = RenderCache()
    settings = RenderSettings()
    base = _body(spec__autoscaling={"mode": "operator"}) if "status" in changes else _body()
    cache.render(parse_deployment(base), settings)
    changed = parse_deployment({**base, **_body(**changes)} if "status" in changes
                               else _body(**changes))
    assert cache.render(changed, settings) == render(changed, settings)
    assert cache.misses == 2


def test_other_settings_render_again_and_entries_are_bounded() -> None:
    cache = RenderCache(max_entries=2)
    dsd = parse_deployment(_body())
    cache.render(dsd, RenderSettings())
    other = RenderSettings(vllm_image="registry.example/vllm:other")
    assert cache.render(dsd, other) == render(dsd, other)
    assert cache.misses == 2
    for name in ("a", "b", "c"):
        cache.render(parse_deployment(_body(metadata__name=name)), other)
    cache.render(dsd, other)  # r1 was dropped as the least recently used
    assert cache.misses == 6


def test_a_render_error_is_raised_each_time_and_not_kept() -> None:
    cache = RenderCache()
    bad = parse_deployment(_body(metadata__namespace=""))
    for _ in range(2):
        with pytest.raises(InvalidSpecError):
            cache.render(bad, RenderSettings())
    assert cache.misses == 2
