"""prometheus-adapter on the local control plane: the custom metrics API for mode ``hpa``.

The HorizontalPodAutoscaler the operator renders for ``spec.autoscaling.mode: hpa`` reads
a per-pod metric from ``custom.metrics.k8s.io``. prometheus-adapter
(``sigs.k8s.io/prometheus-adapter``, cmd/adapter) serves that API from PromQL, so the
kube-controller-manager's HPA controller decides on real Prometheus data.

* ``build.build_prometheus_adapter`` compiles it once per pinned version
  (e2e/cluster/versions.yaml) into the binary cache, with the other components.
* ``start(prometheus_url)`` runs it as a process of the control plane (``down`` stops it)
  with its own client identity (user ``USER``: the delegation RBAC of an aggregated API
  server plus read access to pods and namespaces) and its rules from the one rules file
  users get with the Helm chart (``RULES_FILE``), and registers it through the
  aggregation layer (e2e/cluster/aggregation.py) for every version in ``API_VERSIONS``.

It is not started by ``python -m e2e.cluster up``: the rig's Prometheus runs on a port
chosen when a test session starts it (e2e/rig/prometheus.py), after ``up``. The test
fixture (or the benchmark) that starts Prometheus calls ``start`` with its URL; ``up``
stays as fast as before.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Final

from e2e.cluster import aggregation, build, controlplane, paths, pki, processes

COMPONENT: Final = "prometheus-adapter"
RULES_FILE: Final = (paths.HERE.parent.parent / "charts" / "deepseek-operator" / "files"
                     / "prometheus-adapter-rules.yaml")
"""The adapter rules shipped with the Helm chart; the rig reads the very same file."""
API_GROUP: Final = "custom.metrics.k8s.io"
API_VERSIONS: Final = ("v1beta1", "v1beta2")
"""Versions of the custom metrics API the adapter serves (sigs.k8s.io/custom-metrics-apiserver
installs both); the HPA controller asks for the preferred one, v1beta2."""
SERVICE: Final = "prometheus-adapter"
NAMESPACE: Final = "custom-metrics"
USER: Final = "system:prometheus-adapter"
IDENTITY: Final = pki.ClientIdentity("prometheus-adapter", USER)
RELIST_INTERVAL: Final = "5s"
"""How often the adapter lists the series Prometheus has (its default is 10 minutes, too
slow for a test whose pods and series appear while it runs)."""


def rbac_manifests() -> list[dict[str, Any]]:
    """What the adapter's identity needs, as API objects: its namespace, the delegation
    RBAC of an aggregated API server (aggregation.delegation_rbac), and a ClusterRole to
    list and watch the objects its rules map series to (pods, namespaces; nodes and
    services as upstream's deploy/manifests/cluster-role.yaml grants them)."""
    reader = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "e2e:prometheus-adapter-resource-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "namespaces", "nodes", "services"],
                   "verbs": ["get", "list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "e2e:prometheus-adapter-resource-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": reader["metadata"]["name"]},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    return [namespace, *aggregation.delegation_rbac(USER), reader, binding]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def running() -> bool:
    """Whether an adapter process of the running control plane is alive."""
    pid = processes.recorded().get(COMPONENT)
    return pid is not None and processes.alive(pid)


def start(prometheus_url: str, rules_file: Path = RULES_FILE) -> int:
    """Start prometheus-adapter reading ``prometheus_url`` (e.g. ``http://127.0.0.1:41234``)
    with the rules of ``rules_file`` (default ``RULES_FILE``, the chart's), register it
    for ``API_GROUP`` at each of ``API_VERSIONS`` and wait until the APIServices are
    Available. An adapter already running (for another Prometheus) is stopped first.
    Returns its PID; ``stop`` (or ``python -m e2e.cluster down``) ends it.

    Raises AssertionError when no local control plane runs, RuntimeError (with the
    adapter's log tail) when an APIService is not Available within 60 s.
    """
    assert controlplane.load_endpoints() is not None, "no local control plane is running"
    binary = build.build_prometheus_adapter(paths.versions()[COMPONENT])
    stop()
    kubeconfig = controlplane.client_kubeconfig(IDENTITY)
    aggregation.apply(rbac_manifests())
    cert, key = aggregation.serving_pair(SERVICE, NAMESPACE)
    port = _free_port()
    pid = processes.start(COMPONENT, [
        str(binary), f"--prometheus-url={prometheus_url}", f"--config={rules_file}",
        f"--metrics-relist-interval={RELIST_INTERVAL}",
        f"--secure-port={port}", "--bind-address=127.0.0.1",
        f"--tls-cert-file={cert}", f"--tls-private-key-file={key}",
        f"--lister-kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}", "--v=1",
    ])
    started = time.monotonic()
    try:
        for version in API_VERSIONS:
            if not processes.alive(pid):
                raise RuntimeError(f"{COMPONENT} exited")
            aggregation.register(API_GROUP, version, SERVICE, NAMESPACE, port)
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as error:
        raise RuntimeError(f"{COMPONENT} did not become Available after "
                           f"{time.monotonic() - started:.0f}s: {error}\n{log_tail()}") from error
    build.log(f"{COMPONENT} serving {API_GROUP} in {time.monotonic() - started:.1f}s "
              f"(PID {pid}, Prometheus {prometheus_url})")
    return pid


def stop() -> None:
    """Stop the adapter process, if one runs, and remove its APIServices: one left
    unavailable makes API discovery incomplete for every client of the control plane
    (kubectl, the operator), which would report it."""
    pid = processes.recorded().get(COMPONENT)
    if pid is None:
        return
    aggregation.run_kubectl("delete", "apiservice", "--ignore-not-found", "--wait=false",
                            *(f"{version}.{API_GROUP}" for version in API_VERSIONS))
    processes.stop(COMPONENT, pid)


def log_tail(chars: int = 3000) -> str:
    """The end of the adapter's log (``<state>/logs/prometheus-adapter.log``)."""
    path = processes.log_path(COMPONENT)
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""
