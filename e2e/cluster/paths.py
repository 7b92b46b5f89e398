"""Where the local control plane keeps its binaries and its running state.

Everything lives outside the checkout, under ``$DEEPSEEK_OPERATOR_CACHE`` (default
``$XDG_CACHE_HOME/deepseek-operator``, i.e. ``~/.cache/deepseek-operator``), so a fresh
clone reuses binaries built by an earlier one and ``git status`` stays clean.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.yaml"
DEFAULT_NODES_FILE = HERE / "nodes.yaml"


def cache_root() -> Path:
    """The cache directory (binaries, Go wrapper modules, cluster state)."""
    explicit = os.environ.get("DEEPSEEK_OPERATOR_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "deepseek-operator"


def state_dir() -> Path:
    """State of the running control plane: certificates, etcd data, logs, PID files.

    ``$DEEPSEEK_OPERATOR_STATE`` moves it, so two control planes can run side by side
    (each on its own free ports) while sharing the built binaries.
    """
    explicit = os.environ.get("DEEPSEEK_OPERATOR_STATE")
    return Path(explicit) if explicit else cache_root() / "cluster"


def versions() -> dict[str, str]:
    """Pinned versions from versions.yaml: kubernetes, etcd, kwok, helm, prometheus-adapter
    (built), cli-utils and prometheus (libraries of the Go test tools) and
    prometheus-operator (only its CRDs are used)."""
    data = yaml.safe_load(VERSIONS_FILE.read_text())
    return {str(k): str(v) for k, v in data.items()}


def bin_dir(component: str, version: str) -> Path:
    """Directory holding the binaries of one component at one version."""
    return cache_root() / "bin" / f"{component}-{version}"
