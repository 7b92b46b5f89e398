"""Which apiserver versions get the HPA's tolerance field (pure; no cluster)."""

from __future__ import annotations

import pytest

from deepseek_operator.controller.cluster import supports_hpa_tolerance


@pytest.mark.parametrize(("major", "minor", "supported"), [
    ("1", "34", False), ("1", "35", True), ("1", "37", True), ("1", "33+", False),
    ("1", "36+", True), ("2", "0", True), ("", "", True),
])
def test_hpa_tolerance_is_rendered_from_kubernetes_1_35(major: str, minor: str,
                                                        supported: bool) -> None:
    assert supports_hpa_tolerance(major, minor) is supported
