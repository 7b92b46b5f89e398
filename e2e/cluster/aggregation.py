"""Register extension API servers (prometheus-adapter, KEDA's metrics server) with the
local kube-apiserver's aggregation layer.

The kube-apiserver proxies ``/apis/<group>/<version>`` to the Service an APIService names,
verifying the backend's certificate against ``<service>.<namespace>.svc`` and the
APIService's caBundle, and authenticating itself with the front-proxy client certificate
(pki.py). Here the extension servers are plain processes on loopback, and no kube-proxy
routes ClusterIPs, so the Service is of type ExternalName, pointing at ``localhost``: with
aggregator routing off (the default) the kube-apiserver resolves such a Service to
``https://<externalName>:<APIService port>`` (k8s.io/apiserver ``proxy.ResolveCluster``).

Test tooling, not product: in a real cluster the extension servers run as pods behind a
ClusterIP Service, installed by their own charts.
"""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from e2e.cluster import build, controlplane, paths, pki


def run_kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run kubectl as the admin of the running control plane (output captured, not checked)."""
    kubectl = build.build_all()["kubectl"]
    return subprocess.run([str(kubectl), "--kubeconfig", str(controlplane.kubeconfig_path()),
                           *args],
                          input=stdin, capture_output=True, text=True, check=False)


def serving_pair(service: str, namespace: str) -> tuple[Path, Path]:
    """A serving certificate and key (paths) for ``<service>.<namespace>.svc``, signed by
    the control plane's CA (the caBundle ``register`` puts in the APIService); issued once
    per state directory."""
    pki_dir = paths.state_dir() / "pki"
    stem = f"serving-{namespace}-{service}"
    cert, key = pki_dir / f"{stem}.crt", pki_dir / f"{stem}.key"
    if cert.exists() and key.exists():
        return cert, key
    names = [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local",
             "localhost"]
    return pki.issue_serving(pki_dir, stem, names)


def delegation_rbac(user: str) -> list[dict[str, Any]]:
    """Bindings an extension API server's identity ``user`` needs to authenticate and
    authorize the requests the kube-apiserver proxies to it: ``system:auth-delegator``
    (TokenReview, SubjectAccessReview) and the ``extension-apiserver-authentication-reader``
    Role in kube-system (the front-proxy CA and header names, published by the
    kube-apiserver in the ``extension-apiserver-authentication`` ConfigMap)."""
    safe = user.replace(":", "-")
    subject = {"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{safe}:auth-delegator"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:auth-delegator"},
         "subjects": [subject]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"{safe}:auth-reader", "namespace": "kube-system"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "extension-apiserver-authentication-reader"},
         "subjects": [subject]},
    ]


def api_service_manifests(group: str, version: str, service: str, namespace: str,
                          port: int, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The Namespace, ExternalName Service (to ``localhost``) and APIService that make
    the kube-apiserver serve ``/apis/<group>/<version>`` from the extension server on
    loopback ``port``; ``ca_bundle`` is the PEM of the CA that signed its certificate."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": service, "namespace": namespace},
         "spec": {"type": "ExternalName", "externalName": "localhost"}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": f"{version}.{group}"},
         "spec": {"group": group, "version": version,
                  "service": {"name": service, "namespace": namespace, "port": port},
                  "caBundle": base64.b64encode(ca_bundle).decode(),
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
    ]


def apply(manifests: list[dict[str, Any]]) -> None:
    """Server-side apply ``manifests`` as the rig (field manager ``e2e-cluster``).

    Raises RuntimeError with kubectl's message when the apply fails.
    """
    result = run_kubectl("apply", "--server-side", "--force-conflicts",
                      "--field-manager=e2e-cluster", "-f", "-",
                      stdin=yaml.safe_dump_all(manifests, sort_keys=False))
    if result.returncode != 0:
        raise RuntimeError(f"kubectl apply failed: {result.stderr.strip()}")


def register(group: str, version: str, service: str, namespace: str, port: int,
             timeout: float = 60.0) -> None:
    """Register the extension server on loopback ``port`` for ``<group>/<version>`` and
    wait until the APIService reports Available.

    Raises TimeoutError, with the APIService's Available condition message, when it does
    not become Available within ``timeout`` seconds.
    """
    ca_bundle = (paths.state_dir() / "pki" / "ca.crt").read_bytes()
    apply(api_service_manifests(group, version, service, namespace, port, ca_bundle))
    wait_available(f"{version}.{group}", timeout)


def wait_available(api_service: str, timeout: float = 60.0) -> None:
    """Wait until the APIService ``api_service`` (e.g. ``v1beta1.custom.metrics.k8s.io``)
    is Available. Raises TimeoutError with its last condition message."""
    deadline = time.monotonic() + timeout
    message = "no status yet"
    while time.monotonic() < deadline:
        result = run_kubectl("get", "apiservice", api_service, "-o", "yaml")
        if result.returncode == 0:
            conditions = (yaml.safe_load(result.stdout).get("status") or {}).get(
                "conditions") or []
            for condition in conditions:
                if condition.get("type") == "Available":
                    if condition.get("status") == "True":
                        build.log(f"APIService {api_service} Available")
                        return
                    message = f"{condition.get('reason')}: {condition.get('message')}"
        else:
            message = result.stderr.strip()
        time.sleep(0.5)
    raise TimeoutError(f"APIService {api_service} not Available after {timeout:.0f}s: "
                       f"{message}")
