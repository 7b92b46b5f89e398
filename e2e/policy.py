"""The policy scan: checkov (PyPI, pinned in e2e/cluster/versions.yaml) over rendered
Kubernetes manifests, and the findings we accept, each with its reason
(e2e/policy-skips.yaml).

checkov pins ~100 packages (some older than ours, e.g. `packaging`), so it lives in its own
virtualenv in the tool cache, installed once per version like the Go-built tools, and runs
as a separate process. It scans files only (`--skip-download`: no call to its vendor's
API). e2e/test_policy_scan.py renders the chart and every sample's children and scans them.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.cluster import paths

SKIPS = Path(__file__).resolve().parent / "policy-skips.yaml"
_MARKER = ".complete"


def checkov() -> Path:
    """The checkov executable of the pinned version, installed (once) into its own venv
    under the tool cache. Raises subprocess.CalledProcessError when pip fails."""
    version = paths.versions()["checkov"]
    venv = paths.cache_root() / "tools" / f"checkov-{version}"
    executable = venv / "bin" / "checkov"
    if (venv / _MARKER).is_file():
        return executable
    started = time.monotonic()
    print(f"[policy] installing checkov {version} into {venv}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                    f"checkov=={version}"], check=True)
    (venv / _MARKER).write_text(version)
    print(f"[policy]   done in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return executable


@dataclass(frozen=True)
class Finding:
    """A failed check: its id and title, the scanned file (relative to the scanned
    directory) and checkov's resource name (Kind.namespace.name[...])."""

    check: str
    title: str
    file: str
    resource: str

    @property
    def where(self) -> str:
        """`file::resource`, what a skip's `where` patterns match."""
        return f"{self.file}::{self.resource}"


def scan(directory: Path) -> list[Finding]:
    """Every failed check of checkov's Kubernetes framework over the YAML files under
    `directory`. Raises RuntimeError when checkov fails to run (not when checks fail)."""
    result = subprocess.run(
        [str(checkov()), "--directory", str(directory), "--framework", "kubernetes",
         "--skip-download", "--quiet", "--compact", "--output", "json"],
        capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise RuntimeError(f"checkov exited with {result.returncode}:\n{result.stderr[-3000:]}")
    reports: Any = json.loads(result.stdout)
    if isinstance(reports, dict):
        reports = [reports]
    findings = {Finding(check["check_id"], check["check_name"],
                        check["file_path"].lstrip("/"), check["resource"])
                for report in reports if "results" in report
                for check in report["results"]["failed_checks"]}
    return sorted(findings, key=lambda f: (f.check, f.where))


@dataclass(frozen=True)
class Skip:
    """An accepted finding: check id, `where` glob patterns (fnmatch over
    `file::resource`), and the reason."""

    check: str
    where: tuple[str, ...]
    reason: str

    def covers(self, finding: Finding) -> bool:
        """True when this skip accepts `finding`."""
        return finding.check == self.check and any(
            fnmatch.fnmatchcase(finding.where, pattern) for pattern in self.where)


def skips(path: Path = SKIPS) -> list[Skip]:
    """The accepted findings of e2e/policy-skips.yaml. Raises ValueError for an entry
    without a check, a pattern or a reason."""
    entries = yaml.safe_load(path.read_text())
    out = []
    for entry in entries:
        if not (entry.get("check") and entry.get("where") and str(entry.get("reason", ""))
                .strip()):
            raise ValueError(f"{path.name}: an entry needs check, where and reason: {entry}")
        out.append(Skip(entry["check"], tuple(entry["where"]), " ".join(entry["reason"]
                                                                          .split())))
    return out
