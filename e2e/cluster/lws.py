"""The LeaderWorkerSet controller (``sigs.k8s.io/lws``) in the local control plane.

The operator renders a LeaderWorkerSet (leaderworkerset.x-k8s.io/v1) for a replica that
spans nodes; this module builds and runs the real controller so those objects come to
life: its manager binary is built from the pinned Go module, its CRD and RBAC come from the
same module's ``config/`` directory, and its admission webhooks are served on a loopback
port with a certificate of the rig's CA and registered with the apiserver by URL (no
Service, no in-process cert rotation).

Facts used here come from the LWS source at the pinned version: ``cmd/main.go`` (flags),
``api/config/v1alpha1`` (the Configuration file: webhook host/port/certDir,
``internalCertManagement.enable``), ``config/webhook/`` (webhook paths, rules and the
``objectSelector`` patches) and ``config/rbac/role.yaml`` (the manager's ClusterRole).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.cluster import build, paths, pki, processes

MODULE = "sigs.k8s.io/lws"
BINARY = "lws-manager"
CRD_FILE = "config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
ROLE_FILE = "config/rbac/role.yaml"
WEBHOOK_FILES = ("config/webhook/manifests.yaml",)
WEBHOOK_PATCHES = {
    "MutatingWebhookConfiguration": "config/webhook/mutating-patch.yaml",
    "ValidatingWebhookConfiguration": "config/webhook/validating-patch.yaml",
}
_MARKER = ".complete"

PROCESS = "lws-controller"
"""Name of the controller's process in the rig's PID files and logs."""
NAMESPACE = "lws-system"
"""The namespace LWS falls back to outside a pod (pkg/utils: GetOperatorNamespace); with
leader election and cert rotation off, nothing is written there."""
IDENTITY = pki.ClientIdentity(
    "lws-controller", f"system:serviceaccount:{NAMESPACE}:lws-controller-manager",
    ("system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"))
"""The controller's client identity: the user name of the ServiceAccount its release
runs as, so the ClusterRole binding below is what a real install grants."""
LOCAL_PREFIX = "lws-local-"
"""Prefix of the cluster-scoped objects applied here (ClusterRole, binding, webhook
configurations), so they do not collide with a real LWS install's names."""
FIELD_MANAGER = "e2e-cluster-lws"
"""Field manager of the objects applied here."""


def build_lws(version: str) -> Path:
    """Build the LWS manager (``sigs.k8s.io/lws/cmd`` at ``version``, e.g. ``v0.8.0``)
    once; returns the path of the ``lws-manager`` binary.

    v0.8.0 is the newest version on the module proxy and builds with Go 1.26; its go.mod
    has no replace lines, but ``go install module@version`` asks the proxy for the
    module's version list (for deprecation notices), which a proxy may refuse (403), so
    the build runs in a wrapper module that requires the pinned version, as build.py does
    for etcd. Raises
    subprocess.CalledProcessError when the Go build fails (its output is on stderr).
    """
    out = paths.bin_dir("lws", version)
    if (out / _MARKER).is_file() and (out / BINARY).exists():
        return out / BINARY
    gomod = "\n".join([
        "module deepseek-operator.local/lws-tools", "", "go 1.26.0", "",
        f"require {MODULE} {version}", "",
    ])
    src = build._wrapper(f"lws-{version}", gomod, [f"{MODULE}/cmd"])
    out.mkdir(parents=True, exist_ok=True)
    build.log(f"building the LeaderWorkerSet controller {version}; a cold build takes minutes")
    ldflags = f"-s -w -X {MODULE}/pkg/version.GitVersion={version}"
    build._run(["go", "build", "-trimpath", "-ldflags", ldflags,
                "-o", str(out / f"{BINARY}.tmp"), f"{MODULE}/cmd"], src)
    (out / f"{BINARY}.tmp").rename(out / BINARY)
    (out / _MARKER).write_text(version)
    return out / BINARY


@functools.cache
def module_dir(version: str) -> Path:
    """Where ``go mod download`` unpacked ``sigs.k8s.io/lws@version`` (fetched on first
    use); its ``config/`` holds the CRD, RBAC and webhook manifests."""
    return build._module_dir(MODULE, version)


def _kubectl(kubectl: Path, *args: str, stdin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run kubectl as the admin; with ``check``, RuntimeError (with its stderr) on failure."""
    admin = paths.state_dir() / "admin.kubeconfig"
    result = subprocess.run([str(kubectl), "--kubeconfig", str(admin), *args], input=stdin,
                            capture_output=True, text=True, check=False, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result


def crd(version: str) -> dict[str, Any]:
    """The LeaderWorkerSet CustomResourceDefinition of the module at ``version``."""
    doc: dict[str, Any] = yaml.safe_load((module_dir(version) / CRD_FILE).read_text())
    return doc


def rbac(version: str) -> list[dict[str, Any]]:
    """The manager's ClusterRole (rules from the module's config/rbac/role.yaml) as
    ``lws-local-manager-role``, bound to IDENTITY's user."""
    role: dict[str, Any] = yaml.safe_load((module_dir(version) / ROLE_FILE).read_text())
    name = f"{LOCAL_PREFIX}manager-role"
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name}, "rules": role["rules"]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": name},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                       "name": IDENTITY.user}]},
    ]


def _json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """``doc`` with kustomize's JSON 6902 ``replace`` operations at ``/webhooks/N`` (the
    only kind config/webhook's patches use). Raises ValueError for any other operation."""
    webhooks = list(doc["webhooks"])
    for op in ops:
        parts = str(op.get("path", "")).split("/")
        if op.get("op") != "replace" or len(parts) != 3 or parts[1] != "webhooks":
            raise ValueError(f"unsupported webhook patch {op.get('op')} {op.get('path')}")
        webhooks[int(parts[2])] = op["value"]
    return {**doc, "webhooks": webhooks}


def webhook_configurations(version: str, port: int, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The Mutating- and ValidatingWebhookConfiguration of the module at ``version``, as
    its kustomize overlay makes them (the pod webhooks only for pods labelled
    ``leaderworkerset.sigs.k8s.io/name``), with each webhook's Service reference replaced
    by ``url: https://127.0.0.1:<port><path>`` and ``ca_bundle`` (PEM) as caBundle; named
    ``lws-local-<name>``."""
    directory = module_dir(version)
    out: list[dict[str, Any]] = []
    for path in WEBHOOK_FILES:
        for doc in yaml.safe_load_all((directory / path).read_text()):
            if not doc:
                continue
            patch = WEBHOOK_PATCHES.get(doc["kind"])
            if patch is not None:
                doc = _json_patch(doc, yaml.safe_load((directory / patch).read_text()))
            webhooks = []
            for hook in doc["webhooks"]:
                target = hook["clientConfig"]["service"]["path"]
                webhooks.append({**hook, "clientConfig": {
                    "url": f"https://127.0.0.1:{port}{target}",
                    "caBundle": base64.b64encode(ca_bundle).decode()}})
            out.append({**doc, "metadata": {"name": LOCAL_PREFIX + doc["metadata"]["name"]},
                        "webhooks": webhooks})
    return out


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the controller: its webhook server (HTTPS) and health probes."""

    webhook: int
    health: int


def configuration(ports: Ports, cert_dir: Path) -> dict[str, Any]:
    """The controller's Configuration file (config.lws.x-k8s.io/v1alpha1, see
    api/config/v1alpha1): webhook on 127.0.0.1:<webhook> with the certificate in
    ``cert_dir`` (tls.crt, tls.key), no in-process cert rotation, no leader election,
    metrics off ("0"), health probes on 127.0.0.1:<health>."""
    return {
        "apiVersion": "config.lws.x-k8s.io/v1alpha1", "kind": "Configuration",
        "webhook": {"host": "127.0.0.1", "port": ports.webhook, "certDir": str(cert_dir)},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports.health}"},
        "metrics": {"bindAddress": "0"},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
    }


def _probe_lws(name: str) -> dict[str, Any]:
    """A minimal LeaderWorkerSet for a server-side dry run (calls both webhooks)."""
    container = {"name": "probe", "image": "registry.invalid/probe:1"}
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"leaderWorkerTemplate": {"size": 2, "workerTemplate": {
                "spec": {"containers": [container]}}}}}


def _wait(what: str, probe: Callable[[], bool], timeout: float) -> None:
    """Poll ``probe`` until True; RuntimeError (with the log tail) if the controller
    exits, TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        pid = processes.recorded().get(PROCESS)
        if pid is None or not processes.alive(pid):
            tail = processes.log_path(PROCESS).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{PROCESS} exited while waiting for {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _wait_plain(what: str, probe: Callable[[], bool], timeout: float) -> None:
    """Poll ``probe`` until True; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def _healthy(port: int) -> bool:
    # Loopback probe of the controller's /readyz; a client library would add nothing.
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _serves_tls(port: int, ca_file: Path) -> bool:
    """True when the webhook port completes a TLS handshake with a certificate the rig's
    CA signed for 127.0.0.1 (what the apiserver checks)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1"):
            return True
    except OSError:
        return False


def _state() -> Path:
    return paths.state_dir() / "lws"


def up(binaries: dict[str, Path], kubeconfig: Path, free_ports: list[int]) -> None:
    """Install and start the LWS controller on a running control plane.

    ``binaries``: build.build_all()'s map (kubectl and lws-manager are used);
    ``kubeconfig``: IDENTITY's kubeconfig; ``free_ports``: two free loopback ports
    (webhook, health). Applies the CRD and RBAC, issues the webhook's serving certificate
    from the rig's CA, starts the manager, registers the webhooks by URL and waits until a
    server-side dry-run create of a LeaderWorkerSet passes both webhooks. Raises
    RuntimeError or TimeoutError (with the controller's log tail) when it does not come up,
    RuntimeError (with kubectl's message) when kubectl refuses a manifest.
    """
    started = time.monotonic()
    version = paths.versions()["lws"]
    kubectl = binaries["kubectl"]
    ports = Ports(*free_ports[:2])
    state, pki_dir = _state(), paths.state_dir() / "pki"
    certs = state / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    crt, key = pki.issue_serving(pki_dir, "lws-webhook", ["lws-webhook-service"])
    shutil.copyfile(crt, certs / "tls.crt")
    shutil.copyfile(key, certs / "tls.key")
    (state / "config.yaml").write_text(yaml.safe_dump(configuration(ports, certs)))

    _kubectl(kubectl, "apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
             "--force-conflicts", "-f", "-",
             stdin=yaml.safe_dump_all([crd(version), *rbac(version)], sort_keys=False))
    # A wait issued right after the create may fail at once (the apiserver's discovery has
    # not caught up): retried until the deadline.
    _wait_plain("the LeaderWorkerSet CRD Established", lambda: _kubectl(
        kubectl, "wait", "--for=condition=Established", "--timeout=5s",
        f"crd/{CRD_NAME}", check=False).returncode == 0, 60)
    processes.start(PROCESS, [str(binaries[BINARY]), f"--config={state / 'config.yaml'}",
                              "--leader-elect=false", "--zap-devel=false"],
                    env={"KUBECONFIG": str(kubeconfig)})
    _wait("the LWS controller's /readyz", lambda: _healthy(ports.health), 60)
    _wait("the LWS webhook's TLS", lambda: _serves_tls(ports.webhook, pki_dir / "ca.crt"), 60)
    hooks = webhook_configurations(version, ports.webhook, (pki_dir / "ca.crt").read_bytes())
    _kubectl(kubectl, "apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
             "--force-conflicts", "-f", "-", stdin=yaml.safe_dump_all(hooks, sort_keys=False))
    probe = yaml.safe_dump(_probe_lws("lws-webhook-probe"))
    _wait("a LeaderWorkerSet dry run through the LWS webhooks", lambda: _kubectl(
        kubectl, "create", "--dry-run=server", "-f", "-", stdin=probe,
        check=False).returncode == 0, 60)
    build.log(f"LeaderWorkerSet controller {version} up in {time.monotonic() - started:.1f}s "
              f"(webhooks on 127.0.0.1:{ports.webhook})")


def restart(timeout: float = 60.0) -> None:
    """Kill the running controller as a crash would and start it again with the same
    command line; waits until the webhooks answer again. Raises RuntimeError or
    TimeoutError when it does not come back."""
    pid = processes.recorded()[PROCESS]
    argv = processes.command_line(pid)
    env = {"KUBECONFIG": str(paths.state_dir() / f"{IDENTITY.file_stem}.kubeconfig")}
    config = yaml.safe_load((_state() / "config.yaml").read_text())
    health = int(config["health"]["healthProbeBindAddress"].rsplit(":", 1)[1])
    webhook = int(config["webhook"]["port"])
    processes.stop(PROCESS, pid, grace_seconds=0.0)
    # The new process binds the same ports; it exits at once if the old one still holds them.
    _wait_plain("the LWS controller's ports to be released",
                lambda: _bindable(health) and _bindable(webhook), timeout)
    processes.start(PROCESS, argv, env=env)
    _wait("the LWS controller's /readyz", lambda: _healthy(health), timeout)
    _wait("the LWS webhook's TLS", lambda: _serves_tls(
        webhook, paths.state_dir() / "pki" / "ca.crt"), timeout)


def _bindable(port: int) -> bool:
    """True when a listener could bind 127.0.0.1:``port`` now (with SO_REUSEADDR, as Go's
    listeners do, so connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


CRD_NAME = "leaderworkersets.leaderworkerset.x-k8s.io"


def remove_api(kubectl: Path) -> None:
    """Make the running control plane a cluster without the LeaderWorkerSet API: delete
    its CRD (and with it every LeaderWorkerSet) and wait until it is gone. The controller
    keeps running; ``restore_api`` brings the API back. Raises RuntimeError (with
    kubectl's message) when the delete fails."""
    _kubectl(kubectl, "delete", f"crd/{CRD_NAME}", "--ignore-not-found", "--wait=true",
             "--timeout=60s")


def restore_api(kubectl: Path) -> None:
    """Apply the LeaderWorkerSet CRD again after ``remove_api`` and restart the controller,
    so its informers start on the served API instead of backing off; returns once the
    webhooks answer a server-side dry run again. Raises RuntimeError or TimeoutError when
    it does not come back."""
    _kubectl(kubectl, "apply", "--server-side", f"--field-manager={FIELD_MANAGER}",
             "--force-conflicts", "-f", "-",
             stdin=yaml.safe_dump(crd(paths.versions()["lws"]), sort_keys=False))
    _wait_plain("the LeaderWorkerSet CRD Established", lambda: _kubectl(
        kubectl, "wait", "--for=condition=Established", "--timeout=5s", f"crd/{CRD_NAME}",
        check=False).returncode == 0, 60)
    restart()
    probe = yaml.safe_dump(_probe_lws("lws-webhook-probe"))
    _wait("a LeaderWorkerSet dry run through the LWS webhooks", lambda: _kubectl(
        kubectl, "create", "--dry-run=server", "-f", "-", stdin=probe,
        check=False).returncode == 0, 60)


def rss_bytes() -> int:
    """Resident memory of the running controller (VmRSS from /proc), in bytes; 0 when it
    does not run."""
    pid = processes.recorded().get(PROCESS)
    if pid is None:
        return 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    print(build_lws(paths.versions()["lws"]))
