"""`make demo DEMO_ARGS=--keep`: the operator stays running beside the control plane,
recorded with its processes (so `python -m e2e.cluster down` stops it), and a sample can
be deleted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.cluster import controlplane, processes
from e2e.demo import NAMESPACE, OPERATOR
from e2e.operator_process import REPO, OperatorProcess


def test_demo_keep_leaves_the_operator_running_and_recorded(
        kubeconfig: Path, kubectl: Path, operator: OperatorProcess) -> None:
    if os.environ.get("KUBECONFIG"):
        pytest.skip("the demo runs on the local control plane, not on KUBECONFIG's cluster")
    operator.stop()  # one operator at a time: the demo starts its own
    try:
        demo = subprocess.run([sys.executable, "-m", "e2e.demo", "--keep", "--timeout", "150"],
                              cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, check=False, timeout=300)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        pid = processes.recorded()[OPERATOR]
        assert processes.alive(pid)
        assert controlplane.running()  # the kept operator does not look like a broken plane
        lines = demo.stdout.splitlines()
        assert f"export KUBECONFIG={kubeconfig}" in lines  # printed though not in a terminal
        assert f"KUBECONFIG={controlplane.kubeconfig_path('operator')}" in demo.stdout
        assert f"PID {pid}" in demo.stdout and "make cluster-down" in demo.stdout
        deleted = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "delete",
                                  "dsd", "--all", "-n", NAMESPACE, "--timeout=60s"],
                                 capture_output=True, text=True, check=False)
        assert deleted.returncode == 0, deleted.stderr
    finally:
        kept = processes.recorded().get(OPERATOR)
        if kept is not None:
            processes.stop(OPERATOR, kept)
        operator.start()
        subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "delete", "namespace",
                        NAMESPACE, "--ignore-not-found", "--timeout=120s"],
                       capture_output=True, check=False)
