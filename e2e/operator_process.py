"""Install the operator's CRDs and RBAC into a cluster and run the operator as a process.

The operator runs as a subprocess of the tests or the demo (``deepseek-operator run``),
authenticated with the client certificate whose user name is the operator's
ServiceAccount, so it has exactly the ClusterRole the Helm chart grants — an RBAC gap in
the chart fails the e2e tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "manifests" / "base"
OPERATOR_NAMESPACE = "deepseek-operator-system"
# Name of the ClusterRole and ClusterRoleBinding that install_manifests applies.
LOCAL_NAME = "deepseek-operator-local"
# Kinds of manifests/base that install_manifests leaves out (see there).
LEFT_OUT = ("ServiceAccount", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy")
# The gateway's objects (its RBAC included) are left out too: the tests that need a
# gateway run their own.
GATEWAY_APP = "deepseek-gateway"


def install_manifests(kubectl: Path, kubeconfig: Path) -> None:
    """Apply the namespace, the CRDs and the chart's ClusterRole from manifests/base, bound
    to the operator's identity, and wait for the CRDs to be Established.

    The ClusterRole and its binding are applied as ``deepseek-operator-local`` (LOCAL_NAME),
    and the operator's ServiceAccount, Deployment, Service and NetworkPolicy, and every
    object of the gateway, are not applied: the operator runs as a local process that
    authenticates with a client certificate whose user name is the ServiceAccount's (RBAC
    matches the name; no object is needed). So
    nothing here has the name of an object of the chart, and the README's
    ``helm install deepseek-operator charts/deepseek-operator`` still works on this cluster
    (Helm refuses to take over an object that another tool created).

    Raises subprocess.CalledProcessError with kubectl's output on failure.
    """
    docs: list[dict[str, Any]] = []
    for path in [BASE / "namespace.yaml", *sorted((BASE / "crds").glob("*.yaml")),
                 BASE / "operator.yaml"]:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    wanted = [_local(d) for d in docs if d["kind"] not in LEFT_OUT and (
        d["metadata"].get("labels") or {}).get("app.kubernetes.io/name") != GATEWAY_APP]
    subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "apply", "--server-side",
                    "--force-conflicts", "--field-manager=e2e", "-f", "-"],
                   input=yaml.safe_dump_all(wanted), text=True, check=True,
                   capture_output=True)
    crds = [d["metadata"]["name"] for d in wanted if d["kind"] == "CustomResourceDefinition"]
    subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "wait",
                    "--for=condition=Established", "--timeout=60s",
                    *(f"crd/{name}" for name in crds)],
                   check=True, capture_output=True, text=True)


def _local(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` renamed to LOCAL_NAME when it is the chart's ClusterRole or its binding."""
    if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
        return doc
    labels = {"app.kubernetes.io/name": "deepseek-operator",
              "app.kubernetes.io/instance": LOCAL_NAME}
    renamed = {**doc, "metadata": {"name": LOCAL_NAME, "labels": labels}}
    if doc["kind"] == "ClusterRoleBinding":
        renamed["roleRef"] = {**doc["roleRef"], "name": LOCAL_NAME}
    return renamed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OperatorProcess:
    """``deepseek-operator run`` in the background, logging to ``log_path``.

    ``extra_args`` are added to the command line (e.g. ``["--peering", "x"]``),
    ``extra_env`` to its environment (e.g. ``DEEPSEEK_OPERATOR_*`` settings).
    ``namespaces``: watch only these (``--namespace``); empty: ``--all-namespaces``.
    ``verbose``: debug logging (``--verbose``), for tests whose failures need the log; the
    benchmarks run the operator as the README does, without it.
    """

    kubeconfig: Path
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    verbose: bool = True
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    health_port: int = 0

    def start(self, ready_timeout: float = 60.0) -> None:
        """Start and wait until the liveness endpoint answers. Raises RuntimeError with
        the log tail when the process exits or does not become live in time."""
        self.metrics_port, self.health_port = _free_port(), _free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.extra_env, "KUBECONFIG": str(self.kubeconfig)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deepseek_operator.cli", "run",
                 *([f"--namespace={n}" for n in self.namespaces] or ["--all-namespaces"]),
                 f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
                 f"--metrics-port={self.metrics_port}",
                 *(["--verbose"] if self.verbose else []), *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            if self.live():
                return
            time.sleep(0.3)
        raise RuntimeError(f"operator not live after {ready_timeout:.0f}s:\n{self.log_tail()}")

    def live(self) -> bool:
        """True when the kopf liveness endpoint answers 200."""
        # A loopback probe of our own process; a client library would add nothing.
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        """The operator's /metrics text."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as resp:
            return str(resp.read().decode())

    def log_tail(self, chars: int = 6000) -> str:
        """The last ``chars`` characters of the operator's log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Stop the process group (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL at once, as a crash would (no graceful shutdown)."""
        self.stop(signal.SIGKILL, timeout=10)
