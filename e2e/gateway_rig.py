"""What the gateway's e2e tests and benchmark run: the gateway as a process with its own
ServiceAccount identity, model-server stand-ins as processes, real tokens from the
TokenRequest API, and a TCP relay that can cut the gateway off the apiserver.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from deepseek_operator.api.constants import GROUP, PLURAL
from deepseek_operator.gateway.run import LISTENING_PREFIX, METRICS_LISTENING_PREFIX
from e2e.rig.model_server import READY_LINE_PREFIX

GATEWAY_NAMESPACE = "deepseek-gateway-e2e"
GATEWAY_ACCOUNT = "gateway"
# What the gateway itself needs: review tokens and permissions, read DeepSeekDeployments
# and their gateway policy ConfigMaps.
GATEWAY_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
     "verbs": ["create"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
     "verbs": ["create"]},
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
    # The <name>-gateway-policy ConfigMaps (as the Helm chart's ClusterRole grants).
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
    # No Secrets: the operator (run with --gateway-service-account GATEWAY_NAMESPACE/
    # GATEWAY_ACCOUNT) renders a Role per engine API key Secret, as with the chart.
]


def token(api: client.ApiClient, namespace: str, account: str, *,
          audiences: list[str] | None = None, seconds: int = 3600) -> str:
    """A ServiceAccount token from the TokenRequest API (default audience: the
    apiserver's)."""
    spec: dict[str, Any] = {"expirationSeconds": seconds}
    if audiences:
        spec["audiences"] = audiences
    result = client.CoreV1Api(api).create_namespaced_service_account_token(
        account, namespace, {"spec": spec})
    return str(result.status.token)


def ensure_account(api: client.ApiClient, namespace: str, name: str) -> None:
    """Create ServiceAccount `namespace/name` unless it exists."""
    core = client.CoreV1Api(api)
    with contextlib.suppress(client.ApiException):
        core.create_namespace({"metadata": {"name": namespace}})
    try:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    except client.ApiException as error:
        if error.status != 409:
            raise


def gateway_identity(api: client.ApiClient, server: str, ca_file: str,
                     workdir: Path) -> Path:
    """A kubeconfig for the gateway's ServiceAccount (ClusterRole `GATEWAY_RULES`),
    talking to `server` (https://HOST:PORT)."""
    ensure_account(api, GATEWAY_NAMESPACE, GATEWAY_ACCOUNT)
    rbac = client.RbacAuthorizationV1Api(api)
    name = "deepseek-gateway-e2e"
    role = {"metadata": {"name": name}, "rules": GATEWAY_RULES}
    binding = {"metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": GATEWAY_ACCOUNT,
                             "namespace": GATEWAY_NAMESPACE}]}
    for create, replace, body in (
            (rbac.create_cluster_role, rbac.replace_cluster_role, role),
            (rbac.create_cluster_role_binding, rbac.replace_cluster_role_binding, binding)):
        try:
            create(body)
        except client.ApiException as error:
            if error.status != 409:
                raise
            replace(name, body)  # a control plane kept from an older version
    return write_kubeconfig(workdir / "gateway.kubeconfig", server, ca_file,
                            token(api, GATEWAY_NAMESPACE, GATEWAY_ACCOUNT, seconds=7200))


def write_kubeconfig(path: Path, server: str, ca_file: str, bearer: str) -> Path:
    """A kubeconfig at `path` for `server` with a bearer token; returns `path`."""
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": server,
                                                 "certificate-authority": ca_file}}],
        "users": [{"name": "gateway", "user": {"token": bearer}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "gateway"}}],
        "current-context": "e2e",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def allow(api: client.ApiClient, namespace: str, deployment: str, name: str,
          subjects: list[dict[str, str]], *, query: bool = True, read: bool = False) -> None:
    """A Role and RoleBinding `name` granting `subjects` model:query (verb create on
    deepseekdeployments/query) and/or model:read (get) of `deployment`, as the operator
    renders them from spec.access."""
    rules = []
    if query:
        rules.append({"apiGroups": [GROUP], "resources": [f"{PLURAL}/query"],
                      "verbs": ["create"], "resourceNames": [deployment]})
    if read:
        rules.append({"apiGroups": [GROUP], "resources": [PLURAL],
                      "verbs": ["get", "list", "watch"], "resourceNames": [deployment]})
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": subjects})


def _read_ready_line(proc: subprocess.Popen[bytes], prefix: str, log: Path | None,
                     timeout: float, offset: int = 0) -> str:
    """The rest of the first line of `proc`'s stdout (or of `log` after byte `offset`)
    starting with `prefix`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace") if log else ""
            raise RuntimeError(f"process exited with {proc.returncode}: {text[-3000:]}")
        if log is not None:
            for line in log.read_bytes()[offset:].decode(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
            time.sleep(0.1)
        else:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                line = proc.stdout.readline().decode()
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
    raise RuntimeError(f"no {prefix!r} line within {timeout:.0f}s")


@dataclass
class StandInProcess:
    """One OpenAI stand-in (e2e/rig/model_server.py) serving `model`."""

    model: str
    log_path: Path
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    api_key: str | None = None  # enforced as vLLM does (VLLM_API_KEY in its environment)

    def start(self) -> StandInProcess:
        """Start it and learn its port."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "e2e.rig.model_server", "--port", "0", "--model",
                 self.model, "--pod", f"{self.model}-0", "--engine", "vllm", *self.args],
                stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                env={**os.environ, **({"VLLM_API_KEY": self.api_key} if self.api_key else {})})
        self.port = int(_read_ready_line(self.proc, READY_LINE_PREFIX, None, 15))
        return self

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    def finished(self, reason: str) -> float:
        """vllm:request_success_total{finished_reason=reason} of this stand-in."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return sample(text, "vllm:request_success_total", {"finished_reason": reason})

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGKILL: as a crash would)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=10)


def sample(text: str, name: str, labels: dict[str, str]) -> float:
    """Sum of the samples of `name` whose labels include `labels` in a Prometheus text
    exposition (prometheus-client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


DIGEST_KEY = b"e2e-audit-digest-key-0123456789"
"""The audit digest key the e2e gateways run with (test data, not a secret)."""


@dataclass
class GatewayProcess:
    """`deepseek-operator gateway` on 127.0.0.1 (a free port), stand-ins as upstream
    (`--upstream-template http://127.0.0.1:{port}`: a deployment's spec.service.port is
    its stand-in's port). Audit lines on stdout go to `audit_stdout`; the audit digest key
    is DIGEST_KEY (from a file in `workdir`), so tests can recompute request_hmac."""

    kubeconfig: Path
    workdir: Path
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    metrics_port: int = 0  # --metrics-listen-address's, else `port`

    @property
    def log_path(self) -> Path:
        """The gateway's stderr."""
        return self.workdir / "gateway.log"

    @property
    def audit_stdout(self) -> Path:
        """The gateway's stdout (audit lines)."""
        return self.workdir / "audit-stdout.jsonl"

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        """Start it and wait for /readyz (DeepSeekDeployments listed)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        key_file = self.workdir / "audit-digest.key"
        key_file.write_bytes(DIGEST_KEY)
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log, self.audit_stdout.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deepseek_operator.cli", "gateway",
                 "--listen-address", "127.0.0.1:0",
                 "--upstream-template", "http://127.0.0.1:{port}",
                 "--audit-digest-key-file", str(key_file), *self.args],
                stdout=out, stderr=log, env=env, start_new_session=True)
        address = _read_ready_line(self.proc, LISTENING_PREFIX, self.log_path, timeout,
                                   offset)
        self.port = int(address.rsplit(":", 1)[1])
        log_text = self.log_path.read_bytes()[offset:].decode(errors="replace")
        self.metrics_port = self.port
        for line in log_text.splitlines():  # printed before LISTENING_PREFIX
            if line.startswith(METRICS_LISTENING_PREFIX):
                self.metrics_port = int(line.rsplit(":", 1)[1])
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready:\n{self.log_tail()}")
            time.sleep(0.2)
        return self

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        """/readyz answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def metric(self, name: str, labels: dict[str, str]) -> float:
        """A sample of the gateway's /metrics (summed over other labels), from its
        metrics listener."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as resp:
            return sample(resp.read().decode(), name, labels)

    def audit(self) -> list[dict[str, Any]]:
        """The audit lines written to stdout so far."""
        return [json.loads(line) for line in
                self.audit_stdout.read_text().split("\n") if line.strip()]

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the gateway's stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def rss_kib(self) -> int:
        """Resident set size of the gateway process, KiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class TcpRelay:
    """Forwards 127.0.0.1:`port` to `target` byte for byte (TLS passes through);
    `cut()` closes the listener and every connection, as a network partition would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self.accepted = 0  # connections taken so far
        threading.Thread(target=self._accept, daemon=True, name="relay").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            with self._lock:
                if self._closed:
                    conn.close()
                    upstream.close()
                    return
                self._sockets += [conn, upstream]
                self.accepted += 1
            threading.Thread(target=self._pipe, args=(conn, upstream), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    (b if source is a else a).sendall(data)

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            self._closed = True
            self._listener.close()
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@contextlib.contextmanager
def running(*processes: StandInProcess | GatewayProcess) -> Iterator[None]:
    """Stop the processes on exit."""
    try:
        yield
    finally:
        for process in processes:
            process.stop()


def demo_calls(kube: client.ApiClient, namespace: str, name: str, workdir: Path) -> list[str]:
    """The demo's look at the gateway: one allowed and one denied call to DeepSeekDeployment
    `namespace/name` (Ready, with a binding of role `user` for ServiceAccount
    web/chat-frontend, as manifests/samples/distill-qwen-7b-a100-40gb.yaml has), through a
    gateway process, with the stand-in as its engine. Returns the lines to print: the two
    answers and their audit lines.

    The Role for model:query is created here too (the rule the operator renders for it:
    create on deepseekdeployments/query), so the demo works whichever version renders it.
    """
    from deepseek_operator.gateway.routing import Target

    workdir.mkdir(parents=True, exist_ok=True)
    obj: Any = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, "v1alpha1", namespace, PLURAL, name)
    served = Target.from_object(obj).served_name
    ensure_account(kube, "web", "chat-frontend")
    ensure_account(kube, namespace, "viewer")
    for role, subjects, query, read in (
            (f"{name}-demo-query", [{"kind": "ServiceAccount", "name": "chat-frontend",
                                     "namespace": "web"}], True, False),
            (f"{name}-demo-read", [{"kind": "ServiceAccount", "name": "viewer",
                                    "namespace": namespace}], False, True)):
        with contextlib.suppress(client.ApiException):  # kept from an earlier run
            allow(kube, namespace, name, role, subjects, query=query, read=read)
    engine = StandInProcess(served, workdir / "demo-engine.log")
    gateway = GatewayProcess(
        gateway_identity(kube, kube.configuration.host, kube.configuration.ssl_ca_cert,
                         workdir), workdir / "demo-gateway", ["--namespace", namespace])
    lines = [f"[demo] gateway in front of {namespace}/{name} (model {served}); "
             "token from the TokenRequest API, checked by TokenReview and "
             "SubjectAccessReview"]
    with running(engine, gateway):
        engine.start()
        gateway.args += ["--upstream-template", engine.url]
        gateway.start()
        body = json.dumps({"model": served, "messages": [
            {"role": "user", "content": "Say hello"}]}).encode()
        for who, (ns, account) in (("allowed", ("web", "chat-frontend")),
                                   ("denied", (namespace, "viewer"))):
            request = urllib.request.Request(
                f"{gateway.url}/v1/chat/completions", data=body, method="POST",
                headers={"Content-Type": "application/json",
                         "Authorization": f"Bearer {token(kube, ns, account)}"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, answer = response.status, json.loads(response.read())
                text = answer["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as error:
                status, text = error.code, json.loads(error.read())["error"]["message"]
            lines.append(f"[demo] {who}: {ns}/{account} -> HTTP {status}: {text}")
        for line in gateway.audit():
            lines.append("[demo] audit: " + json.dumps(
                {k: line[k] for k in ("time", "user", "deployment", "model", "permission",
                                      "role", "status", "prompt_tokens",
                                      "completion_tokens")}))
    return lines
