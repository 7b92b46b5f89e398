"""Policy scan in CI: checkov over the chart, rendered with every value combination of
e2e/test_packaging.py, and over the children of every sample DeepSeekDeployment
(`deepseek-operator render`). Each finding is fixed, or accepted in e2e/policy-skips.yaml
with its reason; a skip that no longer matches anything fails too, so the list stays
true. And every pod runs as non-root, with a read-only root filesystem except the engine
container (vLLM and SGLang write kernel caches outside HOME: see the skip of CKV_K8S_22)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import policy
from e2e.cluster import build, paths
from e2e.test_packaging import CHART, COMBINATIONS, REPO

SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))
WORKLOADS = {"Deployment", "Job", "Pod", "LeaderWorkerSet"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of what is scanned: chart/<combination>.yaml (`helm template`, tests
    included) and samples/<sample>.yaml (`render`, as the chart runs the operator: with
    --gateway, in a namespace of its own)."""
    root = tmp_path_factory.mktemp("policy")
    (root / "chart").mkdir()
    (root / "samples").mkdir()
    helm = build.build_all()["helm"]
    for name, values in COMBINATIONS.items():
        values_file = root / f"{name}.values"
        values_file.write_text(yaml.safe_dump(values))
        out = subprocess.run([str(helm), "template", "deepseek-operator", str(CHART),
                              "--namespace", "deepseek-operator-system", "--kube-version",
                              paths.versions()["kubernetes"], "-f", str(values_file)],
                             capture_output=True, text=True, check=True).stdout
        (root / "chart" / f"{name}.yaml").write_text(out)
        values_file.unlink()
    for sample in SAMPLES:
        out = subprocess.run([sys.executable, "-m", "deepseek_operator.cli", "render", "-f",
                              str(sample), "--namespace", "ai", "--gateway", "--pod-monitor"],
                             capture_output=True, text=True, check=True).stdout
        (root / "samples" / sample.name).write_text(out)
    return root


@pytest.fixture(scope="module")
def findings(rendered: Path) -> list[policy.Finding]:
    started = time.monotonic()
    found = policy.scan(rendered)
    print(f"checkov scanned {len(list(rendered.rglob('*.yaml')))} files in "
          f"{time.monotonic() - started:.1f}s: {len(found)} findings")
    return found


def test_every_finding_is_fixed_or_skipped_with_a_reason(
        findings: list[policy.Finding]) -> None:
    accepted = policy.skips()
    open_findings = [f"{f.check} {f.where}: {f.title}" for f in findings
                     if not any(skip.covers(f) for skip in accepted)]
    assert open_findings == [], "\n".join(open_findings)


def test_every_skip_still_matches_a_finding(findings: list[policy.Finding]) -> None:
    stale = [f"{skip.check} {skip.where}" for skip in policy.skips()
             if not any(skip.covers(f) for f in findings)]
    assert stale == [], "drop these from e2e/policy-skips.yaml: " + "; ".join(stale)


def test_the_scan_sees_each_sample_and_chart_rendering(rendered: Path) -> None:
    files = {p.relative_to(rendered).as_posix() for p in rendered.rglob("*.yaml")}
    assert files == {f"chart/{name}.yaml" for name in COMBINATIONS} | {
        f"samples/{s.name}" for s in SAMPLES}
    for path in rendered.rglob("*.yaml"):
        assert any(d and d["kind"] in WORKLOADS for d in yaml.safe_load_all(path.read_text()))


def _pod_specs(rendered: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(rendered.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] not in WORKLOADS:
                continue
            name = f"{path.relative_to(rendered)}::{doc['kind']}/{doc['metadata']['name']}"
            if doc["kind"] == "Pod":
                yield name, doc["spec"]
            elif doc["kind"] == "LeaderWorkerSet":
                template = doc["spec"]["leaderWorkerTemplate"]
                for key in ("leaderTemplate", "workerTemplate"):
                    if key in template:
                        yield f"{name}/{key}", template[key]["spec"]
            else:
                yield name, doc["spec"]["template"]["spec"]


def test_pods_run_as_non_root_and_read_only_but_the_engine(rendered: Path) -> None:
    seen = 0
    for name, spec in _pod_specs(rendered):
        pod = spec.get("securityContext") or {}
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            seen += 1
            context = container.get("securityContext") or {}
            where = f"{name}/{container['name']}"
            assert context.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            # The engines (vLLM, SGLang) are the exception: see CKV_K8S_22's skip.
            assert context.get("readOnlyRootFilesystem") is (container["name"] != "engine"), \
                where
    assert seen > 20
