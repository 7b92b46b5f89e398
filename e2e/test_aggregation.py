"""The local control plane's aggregation layer works like a real cluster's: an extension
API server registered with an APIService is served through the kube-apiserver, which
proxies with the front-proxy client certificate and passes the caller's identity in the
request headers (what prometheus-adapter and KEDA's metrics server rely on)."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from e2e.cluster import aggregation, paths

GROUP, VERSION = "probe.e2e.deepseek-operator.io", "v1"
SERVICE, NAMESPACE = "aggregation-probe", "e2e-aggregation"


class _Probe(BaseHTTPRequestHandler):
    """Answers discovery for GROUP/VERSION and records who asked."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def do_GET(self) -> None:
        der = (self.connection.getpeercert(binary_form=True)
               if isinstance(self.connection, ssl.SSLSocket) else None)
        names = (x509.load_der_x509_certificate(der).subject
                 .get_attributes_for_oid(NameOID.COMMON_NAME) if der else [])
        self.seen.append({"path": self.path, "user": self.headers.get("X-Remote-User"),
                          "groups": self.headers.get_all("X-Remote-Group") or [],
                          "client_cn": names[0].value if names else None})
        body = json.dumps({"kind": "APIResourceList", "apiVersion": "v1",
                           "groupVersion": f"{GROUP}/{VERSION}", "resources": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def probe_server(kubeconfig: Path) -> Iterator[int]:
    """An HTTPS extension server on loopback that requires a client certificate from the
    front-proxy CA, as a real extension API server does for proxied requests."""
    cert, key = aggregation.serving_pair(SERVICE, NAMESPACE)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(paths.state_dir() / "pki" / "front-proxy-ca.crt")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Probe)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Probe.seen.clear()
    yield server.server_address[1]
    server.shutdown()
    aggregation.run_kubectl("delete", "apiservice", f"{VERSION}.{GROUP}", "--wait=false")
    aggregation.run_kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def test_an_api_service_is_served_through_the_front_proxy(probe_server: int,
                                                           kubectl: Path,
                                                           kubeconfig: Path) -> None:
    aggregation.register(GROUP, VERSION, SERVICE, NAMESPACE, probe_server)

    out = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "get", "--raw",
                          f"/apis/{GROUP}/{VERSION}"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["groupVersion"] == f"{GROUP}/{VERSION}"
    proxied = [s for s in _Probe.seen if s["user"] == "kubernetes-admin"]
    assert proxied, _Probe.seen
    assert proxied[-1]["client_cn"] == "front-proxy-client"
    assert "system:masters" in proxied[-1]["groups"]


def test_delegation_rbac_grants_review_and_the_authentication_config(kubectl: Path,
                                                                     kubeconfig: Path) -> None:
    user = "system:e2e:aggregation-probe"
    aggregation.apply(aggregation.delegation_rbac(user))

    def can(*args: str) -> bool:
        result = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "auth",
                                 "can-i", *args, "--as", user],
                                capture_output=True, text=True, check=False)
        return result.stdout.strip() == "yes"

    assert can("create", "tokenreviews.authentication.k8s.io")
    assert can("create", "subjectaccessreviews.authorization.k8s.io")
    assert can("get", "configmap/extension-apiserver-authentication", "-n", "kube-system")
    assert not can("get", "configmap/extension-apiserver-authentication", "-n", "default")
