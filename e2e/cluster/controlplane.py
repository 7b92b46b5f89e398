"""Run a real Kubernetes control plane as plain processes on 127.0.0.1.

``up`` builds (or reuses) the binaries, writes certificates and kubeconfigs, then starts
etcd, kube-apiserver (RBAC on, audit log on, the aggregation layer: aggregation.py),
kube-controller-manager, kube-scheduler, the kwok controller (simulated nodes whose pods
become Running and Ready) and the e2e hostPath provisioner, registers the simulated nodes
and a default StorageClass, and waits until all nodes are Ready. ``down`` stops every
process by PID and removes the state directory.

This is test tooling, not product: it exists because kind, k3s, minikube and envtest cannot
be downloaded on our machines.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.cluster import build, keda, lws, paths, pki, processes
from e2e.cluster.build import log
from e2e.cluster.provisioner import PROVISIONER_NAME

SERVICE_CIDR = "10.0.0.0/16"
STORAGE_CLASS = "standard"
# The log of every "download" container on the kwok nodes (kwok's ClusterLogs serves it,
# in the CRI log format, to `kubectl logs` and pods/log through the apiserver): e2e tests
# write a real download script's output there (see container_log_line).
DOWNLOAD_LOG = "download-container.log"
OPERATOR_USER = "system:serviceaccount:deepseek-operator-system:deepseek-operator"
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


@dataclass(frozen=True)
class Endpoints:
    """Loopback ports of a running control plane, saved in ``<state>/endpoints.json``."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @property
    def server(self) -> str:
        """HTTPS URL of kube-apiserver."""
        return f"https://127.0.0.1:{self.apiserver}"


# Ports are taken below the kernel's ephemeral range: a restarted kube-apiserver or etcd
# binds its port again, and a port from that range may meanwhile be the local end of any
# outgoing connection on the machine ("bind: address already in use"; seen in the fault
# suite under load).
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10000


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that are free now, outside the ephemeral range."""
    high = max(_ephemeral_low(), _LOWEST_PORT + 1000)
    ports: list[int] = []
    while len(ports) < n:
        port = random.randrange(_LOWEST_PORT, high)
        if port in ports:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def kubeconfig_path(identity: str = "admin") -> Path:
    """Kubeconfig of a client identity (admin, controller-manager, scheduler, operator)."""
    return paths.state_dir() / f"{identity}.kubeconfig"


def _write_kubeconfig(identity: str, server: str) -> None:
    pki_dir = paths.state_dir() / "pki"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": server, "certificate-authority": str(pki_dir / "ca.crt")}}],
        "users": [{"name": identity, "user": {
            "client-certificate": str(pki_dir / f"{identity}.crt"),
            "client-key": str(pki_dir / f"{identity}.key")}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": identity}}],
        "current-context": "e2e",
    }
    kubeconfig_path(identity).write_text(yaml.safe_dump(config, sort_keys=False))


def _endpoints_file() -> Path:
    return paths.state_dir() / "endpoints.json"


def load_endpoints() -> Endpoints | None:
    """Endpoints of the control plane recorded in the state directory, if any."""
    try:
        return Endpoints(**json.loads(_endpoints_file().read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _kubectl(binaries: dict[str, Path], *args: str, stdin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binaries["kubectl"]), "--kubeconfig", str(kubeconfig_path()),
                           *args], input=stdin, capture_output=True, text=True, check=check)


def _wait(what: str, probe: Any, timeout: float, process: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        if process is not None:
            pid = processes.recorded().get(process)
            if pid is None or not processes.alive(pid):
                tail = processes.log_path(process).read_text()[-3000:]
                raise RuntimeError(f"{process} exited while waiting for {what}:\n{tail}")
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _http_ok(url: str) -> bool:
    # Plain loopback health probe of etcd; a client library would add nothing here.
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def apiserver_ready(binaries: dict[str, Path]) -> bool:
    """True when kube-apiserver answers /readyz with ok."""
    result = _kubectl(binaries, "get", "--raw", "/readyz", check=False)
    return result.returncode == 0 and result.stdout.strip() == "ok"


def node_manifests(nodes_file: Path) -> list[dict[str, Any]]:
    """Node objects for kwok from the node-set YAML (see nodes.yaml for the format)."""
    spec = yaml.safe_load(nodes_file.read_text())
    nodes: list[dict[str, Any]] = []
    for group in spec["nodes"]:
        for i in range(int(group.get("count", 1))):
            name = f"{group['name']}-{i}"
            labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                      "kubernetes.io/arch": "amd64", "type": "kwok"}
            capacity = {"cpu": str(group["cpu"]), "memory": str(group["memory"]), "pods": "110",
                        "ephemeral-storage": "2Ti"}
            taints: list[dict[str, str]] = []
            gpu = group.get("gpu")
            if gpu:
                labels.update({
                    "nvidia.com/gpu.present": "true",
                    "nvidia.com/gpu.product": str(gpu["product"]),
                    "nvidia.com/gpu.memory": str(gpu["memoryMiB"]),
                    "nvidia.com/gpu.count": str(gpu["count"]),
                })
                capacity["nvidia.com/gpu"] = str(gpu["count"])
                taints.append({"key": "nvidia.com/gpu", "value": "present",
                                "effect": "NoSchedule"})
            nodes.append({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels,
                             "annotations": {"kwok.x-k8s.io/node": "fake",
                                             "node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {"taints": taints} if taints else {},
                "status": {"capacity": capacity, "allocatable": capacity,
                           "nodeInfo": {"kubeletVersion": "fake", "kubeProxyVersion": "fake",
                                        "architecture": "amd64", "operatingSystem": "linux",
                                        "containerRuntimeVersion": "kwok", "kernelVersion": "",
                                        "osImage": "", "machineID": "", "systemUUID": "",
                                        "bootID": ""},
                           "phase": "Running"},
            })
    return nodes


def _storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER_NAME,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }


def _download_logs(path: Path) -> dict[str, Any]:
    """kwok's ClusterLogs: every container named "download" has the log ``path``."""
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs",
            "metadata": {"name": "e2e-download-logs"},
            "spec": {"logs": [{"containers": ["download"], "logsFile": str(path),
                               "follow": True}]}}


def container_log_line(text: str) -> str:
    """``text`` as one line of a CRI container log file (what kwok's Logs serve):
    ``<RFC 3339 nano time> stdout F <text>``."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{stamp}.{int(now % 1 * 1e9):09d}Z stdout F {text}\n"


def download_log_path() -> Path:
    """The file kwok serves as every download container's log (see DOWNLOAD_LOG)."""
    return paths.state_dir() / DOWNLOAD_LOG


def running() -> bool:
    """True when every process of the control plane is alive and the apiserver is ready.

    Other recorded processes (an operator the demo left running) do not count.
    """
    recorded = processes.recorded()
    expected = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
                "provisioner", lws.PROCESS, *keda.PROCESSES}
    if not expected <= set(recorded) or not all(processes.alive(recorded[n]) for n in expected):
        return False
    return apiserver_ready(build.build_all())


def up(nodes_file: Path | None = None) -> Path:
    """Bring the control plane up (or reuse a running one); returns the admin kubeconfig.

    Raises RuntimeError or TimeoutError, with the failing component's log tail, when a
    component does not start.
    """
    binaries = build.build_all()
    if running():
        log(f"control plane already up; KUBECONFIG={kubeconfig_path()}")
        return kubeconfig_path()
    if processes.recorded():
        log("found a partial control plane; stopping it first")
        down()
    started = time.monotonic()
    state = paths.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    pki_dir = state / "pki"
    pki.write_pki(pki_dir)
    ep = Endpoints(*_free_ports(6))
    _endpoints_file().write_text(json.dumps(asdict(ep)))
    for identity in ("admin", "controller-manager", "scheduler", "operator"):
        _write_kubeconfig(identity, ep.server)
    (state / "audit-policy.yaml").write_text(yaml.safe_dump(_AUDIT_POLICY))

    processes.start("etcd", [
        str(binaries["etcd"]), "--name=e2e", f"--data-dir={state / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{ep.etcd_client}",
        f"--advertise-client-urls=http://127.0.0.1:{ep.etcd_client}",
        f"--listen-peer-urls=http://127.0.0.1:{ep.etcd_peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{ep.etcd_peer}",
        f"--initial-cluster=e2e=http://127.0.0.1:{ep.etcd_peer}",
        "--unsafe-no-fsync", "--quota-backend-bytes=4294967296", "--log-level=warn",
    ])
    _wait("etcd health", lambda: _http_ok(f"http://127.0.0.1:{ep.etcd_client}/health"), 30,
          "etcd")

    processes.start("kube-apiserver", [
        str(binaries["kube-apiserver"]),
        f"--etcd-servers=http://127.0.0.1:{ep.etcd_client}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--secure-port={ep.apiserver}",
        f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
        f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
        f"--client-ca-file={pki_dir / 'ca.crt'}",
        f"--service-account-key-file={pki_dir / 'sa.pub'}",
        f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC", "--allow-privileged=true",
        f"--audit-policy-file={state / 'audit-policy.yaml'}",
        f"--audit-log-path={state / 'audit.log'}", "--audit-log-maxsize=200",
        "--audit-log-maxbackup=1", "--audit-log-format=json",
        # The endpoint reconciler refuses a loopback advertise address; no pod of ours
        # dials the in-cluster `kubernetes` Service (kwok pods do not run), so turn it off.
        "--endpoint-reconciler-type=none", "--profiling=false", "--v=0",
        # Container logs (pods/log) come from kwok's kubelet-like server at the node's
        # InternalIP (127.0.0.1, --node-ip below); its certificate is not verified, as no
        # --kubelet-certificate-authority is given (test tooling).
        "--kubelet-preferred-address-types=InternalIP",
        # The aggregation layer (custom.metrics and external.metrics APIs): see pki.py.
        f"--requestheader-client-ca-file={pki_dir / 'front-proxy-ca.crt'}",
        f"--requestheader-allowed-names={pki.FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki_dir / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki_dir / 'front-proxy-client.key'}",
    ])
    _wait("kube-apiserver /readyz", lambda: apiserver_ready(binaries), 90, "kube-apiserver")

    for component, port in (("controller-manager", ep.controller_manager),
                            ("scheduler", ep.scheduler)):
        kc = str(kubeconfig_path(component))
        common = [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
                  f"--authorization-kubeconfig={kc}", "--leader-elect=false",
                  "--bind-address=127.0.0.1", f"--secure-port={port}"]
        if component == "controller-manager":
            processes.start("kube-controller-manager", [
                str(binaries["kube-controller-manager"]), *common,
                f"--service-account-private-key-file={pki_dir / 'sa.key'}",
                f"--root-ca-file={pki_dir / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki_dir / 'ca.crt'}",
                f"--cluster-signing-key-file={pki_dir / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--use-service-account-credentials=true", "--controllers=*",
                # Fast garbage collection and HPA syncs keep e2e tests short.
                "--concurrent-gc-syncs=10", "--horizontal-pod-autoscaler-sync-period=5s",
            ])
        else:
            processes.start("kube-scheduler", [str(binaries["kube-scheduler"]), *common])

    (state / DOWNLOAD_LOG).write_text("")
    (state / "kwok.yaml").write_text(
        build.kwok_stages(paths.versions()["kwok"]) + "\n---\n"
        + (paths.HERE / "kwok-e2e-stages.yaml").read_text() + "\n---\n"
        + yaml.safe_dump(_download_logs(state / DOWNLOAD_LOG)))
    processes.start("kwok", [
        str(binaries["kwok"]), f"--kubeconfig={kubeconfig_path()}",
        f"--config={state / 'kwok.yaml'}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--manage-nodes-with-label-selector=",
        "--cidr=10.244.0.1/16", "--node-ip=127.0.0.1", f"--node-port={ep.kwok}",
        f"--server-address=127.0.0.1:{ep.kwok}",
        f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
        f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
    ])
    processes.start("provisioner", [
        sys.executable, "-m", "e2e.cluster.provisioner",
        f"--kubeconfig={kubeconfig_path()}", f"--root={state / 'volumes'}",
    ], env={"PYTHONPATH": str(paths.HERE.parent.parent)})

    manifests = [*node_manifests(nodes_file or paths.DEFAULT_NODES_FILE), _storage_class()]
    stream = yaml.safe_dump_all(manifests, sort_keys=False)
    _wait("objects applied", lambda: _kubectl(
        binaries, "apply", "--server-side", "--field-manager=e2e-cluster", "-f", "-",
        stdin=stream, check=False).returncode == 0, 30)
    _wait("nodes Ready", lambda: _kubectl(
        binaries, "wait", "--for=condition=Ready", "node", "--all", "--timeout=2s",
        check=False).returncode == 0, 60, "kwok")
    _wait("default ServiceAccount", lambda: _kubectl(
        binaries, "get", "serviceaccount", "default", "-n", "default",
        check=False).returncode == 0, 60, "kube-controller-manager")
    keda.up(binaries)
    lws.up(binaries, client_kubeconfig(lws.IDENTITY), _free_ports(2))
    log(f"control plane up in {time.monotonic() - started:.1f}s; "
        f"KUBECONFIG={kubeconfig_path()}")
    return kubeconfig_path()


def down() -> None:
    """Stop every process started by ``up`` (by PID) and remove the state directory."""
    stopped = processes.stop_all()
    if stopped:
        log(f"stopped {', '.join(stopped)}")
    shutil.rmtree(paths.state_dir(), ignore_errors=True)


def restart(component: str, timeout: float = 90.0) -> float:
    """Kill ``etcd`` or ``kube-apiserver`` of the running control plane as a crash would
    (no graceful shutdown), start it again with the same command line (ports,
    certificates, data directory) and wait until the apiserver is ready again; returns the
    seconds it was unavailable.

    Raises RuntimeError or TimeoutError (with the component's log tail) when it does not
    come back.
    """
    if component not in ("etcd", "kube-apiserver"):
        raise ValueError(f"restart supports etcd and kube-apiserver, not {component}")
    ep = load_endpoints()
    assert ep is not None, "no control plane is running"
    binaries = build.build_all()
    started = time.monotonic()
    pid = processes.recorded()[component]
    argv = processes.command_line(pid)
    processes.stop(component, pid, grace_seconds=0.0)
    # Our own retry loop, with a reason: on this machine the killed process's port has
    # stayed taken for a moment after its death (the new one exits with "bind: address
    # already in use"), so the component is started again until the deadline.
    while True:
        processes.start(component, argv)
        try:
            if component == "etcd":
                _wait("etcd health",
                      lambda: _http_ok(f"http://127.0.0.1:{ep.etcd_client}/health"),
                      timeout, "etcd")
            _wait("kube-apiserver /readyz", lambda: apiserver_ready(binaries), timeout,
                  "kube-apiserver")
            return time.monotonic() - started
        except RuntimeError as error:
            if ("address already in use" not in str(error)[-600:]
                    or time.monotonic() - started > timeout):
                raise
            time.sleep(1.0)


def _etcd_call(method: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST to etcd's v3 JSON gateway on loopback (e.g. ``kv/range``)."""
    ep = load_endpoints()
    assert ep is not None, "no control plane is running"
    request = urllib.request.Request(f"http://127.0.0.1:{ep.etcd_client}/v3/{method}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


def compact_etcd() -> int:
    """Compact etcd's history up to its current revision (physically), so that every
    older resourceVersion is gone from storage; returns that revision."""
    # A range over the key 0x00 (base64 "AA==") finds nothing but reports the revision.
    revision = int(_etcd_call("kv/range", {"key": "AA=="})["header"]["revision"])
    _etcd_call("kv/compaction", {"revision": revision, "physical": True})
    return revision


def client_kubeconfig(identity: pki.ClientIdentity) -> Path:
    """Issue a client certificate for ``identity`` (signed by the control plane's CA) and
    write its kubeconfig; returns the kubeconfig's path."""
    ep = load_endpoints()
    assert ep is not None, "no control plane is running"
    pki.issue_client(paths.state_dir() / "pki", identity)
    _write_kubeconfig(identity.file_stem, ep.server)
    return kubeconfig_path(identity.file_stem)


def status() -> dict[str, Any]:
    """Per-process liveness and apiserver readiness, as a JSON-able dict."""
    procs = {name: {"pid": pid, "alive": processes.alive(pid)}
             for name, pid in processes.recorded().items()}
    ep = load_endpoints()
    ready = bool(procs) and apiserver_ready(build.build_all())
    return {"ready": ready, "server": ep.server if ep else None,
            "kubeconfig": str(kubeconfig_path()) if procs else None, "processes": procs}


def env_lines() -> list[str]:
    """Shell lines that point kubectl, helm and the tests at the running control plane."""
    bins = sorted({str(p.parent) for p in build.build_all().values()})
    return [f"export KUBECONFIG={kubeconfig_path()}",
            f"export PATH={':'.join(bins)}:$PATH"]
