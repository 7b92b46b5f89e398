"""The chart and the kustomize base ship the same CRDs as crds/ (one source, copied)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CRDS = sorted((REPO / "crds").glob("*.yaml"))


@pytest.mark.parametrize("copy_dir", ["charts/deepseek-operator/crds", "manifests/base/crds"])
def test_crd_copies_are_identical(copy_dir: str) -> None:
    copies = sorted((REPO / copy_dir).glob("*.yaml"))
    assert [c.name for c in copies] == [c.name for c in CRDS], "run `make crds`"
    for source, copy in zip(CRDS, copies, strict=True):
        assert copy.read_bytes() == source.read_bytes(), f"{copy} is stale: run `make crds`"


def test_kustomization_lists_every_crd() -> None:
    kustomization = yaml.safe_load((REPO / "manifests/base/kustomization.yaml").read_text())
    listed = {r for r in kustomization["resources"] if r.startswith("crds/")}
    assert listed == {f"crds/{c.name}" for c in CRDS}
