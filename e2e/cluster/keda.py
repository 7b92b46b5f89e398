"""KEDA in the local control plane: built from its Go module, run as two processes.

KEDA (``github.com/kedacore/keda/v2``, version pinned as ``keda`` in versions.yaml) is
two programs: the operator (``cmd/operator``: it reconciles ScaledObjects into
HorizontalPodAutoscalers and runs the scalers) and the metrics apiserver (``cmd/adapter``:
it serves ``external.metrics.k8s.io/v1beta1`` to the HPA controller and asks the operator
for each value over gRPC). Both are built in a wrapper module (KEDA's go.mod has
``replace`` lines, which ``go install`` refuses) that repeats those lines.

``up`` (called by controlplane.up once the apiserver serves) applies what KEDA's own
``config/`` directory of the pinned module holds: the CRDs of ``config/crd`` with the JSON
patches its kustomization lists, the ``keda`` namespace, the operator's ClusterRole and
bindings (``config/rbac``), the metrics apiserver's bindings (``config/metrics-server``,
among them the one that lets the HPA controller read external metrics). Each process gets
a client certificate of its own (user names below) instead of a ServiceAccount token.

Certificates: KEDA's gRPC between the metrics apiserver (client) and the operator (server)
is mutual TLS from ``<cert dir>/{ca.crt,tls.crt,tls.key}`` (kedacore/keda
pkg/metricsservice/utils/tls_certificates.go); KEDA generates them itself only with
``--enable-cert-rotation``, which is off by default, so the rig CA issues one pair for both
ends (server and client use, names of the operator's Service and 127.0.0.1). The metrics
apiserver serves the aggregated API with a certificate from
``aggregation.serving_pair`` and is registered with ``aggregation.register``.

Every port is a free loopback port; only the metrics apiserver's own /metrics endpoint
(``--port``) binds all interfaces, as KEDA gives it no address flag.

KEDA's admission webhooks (``cmd/webhooks``) are not run: they only validate
ScaledObjects at admission (e.g. two ScaledObjects on one workload), which the operator,
the only writer of ScaledObjects here, never produces.

Environment KEDA reads (kedacore/keda pkg/util/env_resolver.go, watch.go):
``WATCH_NAMESPACE`` (must be set; empty: all namespaces), ``POD_NAMESPACE`` (its own
namespace, default ``keda``), ``KEDA_CLUSTER_OBJECT_NAMESPACE`` (where it reads Secrets of
ClusterTriggerAuthentications; without it, the in-pod ServiceAccount namespace file, which
does not exist here).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from e2e.cluster import build, paths, pki, processes

MODULE = "github.com/kedacore/keda/v2"
COMMANDS = {"keda-operator": "cmd/operator", "keda-adapter": "cmd/adapter"}
NAMESPACE = "keda"
OPERATOR = "keda-operator"
METRICS_SERVER = "keda-metrics-apiserver"
PROCESSES = (OPERATOR, METRICS_SERVER)
"""Process names (logs in ``<state>/logs/<name>.log``)."""
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:keda-operator"
"""The user KEDA's config/rbac binds (its ServiceAccount ``keda-operator``)."""
METRICS_SERVER_USER = f"system:serviceaccount:{NAMESPACE}:keda-metrics-apiserver"
"""The metrics apiserver's own user (KEDA's manifests run it as keda-operator too)."""
EXTERNAL_METRICS = ("external.metrics.k8s.io", "v1beta1")
_SERVICE_DOMAINS = ("svc", "svc.cluster.local")
_CRD_DIR = "config/crd"
# config/ files applied as they are, in this order (the namespace first).
_CONFIG_FILES = (
    "config/general/namespace.yaml",
    "config/rbac/role.yaml",
    "config/rbac/role_binding.yaml",
    "config/rbac/aggregate_cluster_roles.yaml",
    "config/metrics-server/role.yaml",
    "config/metrics-server/role_binding.yaml",
)
_MARKER = ".complete"


# --- build -------------------------------------------------------------------------------


def replace_lines(gomod: str) -> list[str]:
    """The ``replace`` directives of a go.mod, one ``old [v] => new [v]`` string each
    (single-line and block form; comments dropped)."""
    found: list[str] = []
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if in_block:
            if line == ")":
                in_block = False
            elif "=>" in line:
                found.append(line)
        elif line.startswith("replace"):
            rest = line.removeprefix("replace").strip()
            if rest == "(":
                in_block = True
            elif "=>" in rest:
                found.append(rest)
    return found


def wrapper_gomod(version: str, replaces: list[str]) -> str:
    """go.mod of the wrapper module that builds KEDA ``version`` (e.g. ``v2.21.0``): it
    requires the module and repeats its ``replace`` lines."""
    lines = ["module deepseek-operator.local/keda-tools", "", "go 1.26.0", "",
             f"require {MODULE} {version}", ""]
    lines += [f"replace {r}" for r in replaces]
    return "\n".join([*lines, ""])


def build_keda(version: str) -> dict[str, Path]:
    """Build ``keda-operator`` and ``keda-adapter`` (once per version, into
    ``<cache>/bin/keda-<version>/``) with the ``-X`` version flags of KEDA's Makefile;
    returns {binary name: path}. Raises subprocess.CalledProcessError when a Go step fails.
    """
    out = paths.bin_dir("keda", version)
    binaries = {name: out / name for name in COMMANDS}
    if (out / _MARKER).is_file():
        return binaries
    gomod = build._module_gomod(f"{MODULE}@{version}", paths.cache_root())
    src = build._wrapper(f"keda-{version}", wrapper_gomod(version, replace_lines(gomod)),
                        [f"{MODULE}/{c}" for c in COMMANDS.values()])
    ldflags = f"-s -w -X {MODULE}/version.Version={version} -X {MODULE}/version.GitCommit=none"
    out.mkdir(parents=True, exist_ok=True)
    for name, command in COMMANDS.items():
        if binaries[name].exists():
            continue
        build.log(f"building {name} (KEDA {version}); a cold build takes many minutes")
        build._run(["go", "build", "-trimpath", "-ldflags", ldflags,
                      "-o", str(out / f"{name}.tmp"), f"{MODULE}/{command}"], src)
        (out / f"{name}.tmp").rename(binaries[name])
    (out / _MARKER).write_text(version)
    return binaries


# --- manifests ---------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """Apply RFC 6902 ``add`` and ``remove`` operations (what KEDA's CRD patches use) to
    ``doc`` in place. Raises ValueError for another operation, KeyError or IndexError for
    a path that does not exist."""
    for op in ops:
        *parents, last = _pointer(op["path"])
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if op["op"] == "add":
            if isinstance(target, list):
                if last == "-":
                    target.append(op["value"])
                else:
                    target.insert(int(last), op["value"])
            else:
                target[last] = op["value"]
        elif op["op"] == "remove":
            del target[int(last) if isinstance(target, list) else last]
        else:
            raise ValueError(f"unsupported JSON patch operation {op['op']!r}")


def crds(module_dir: Path) -> list[dict[str, Any]]:
    """KEDA's CustomResourceDefinitions as its ``config/crd`` kustomization builds them:
    every file under ``resources`` with the JSON patches under ``patches`` applied to the
    CRD each targets (by name)."""
    crd_dir = module_dir / _CRD_DIR
    kustomization = yaml.safe_load((crd_dir / "kustomization.yaml").read_text())
    docs = [yaml.safe_load((crd_dir / r).read_text()) for r in kustomization["resources"]]
    by_name = {d["metadata"]["name"]: d for d in docs}
    for patch in kustomization.get("patches") or []:
        json_patch(by_name[patch["target"]["name"]],
                   yaml.safe_load((crd_dir / patch["path"]).read_text()))
    return docs


def config_manifests(module_dir: Path) -> list[dict[str, Any]]:
    """The namespace and RBAC of KEDA's ``config/`` (see _CONFIG_FILES), as written."""
    docs: list[dict[str, Any]] = []
    for name in _CONFIG_FILES:
        docs += [d for d in yaml.safe_load_all((module_dir / name).read_text()) if d]
    return docs


def metrics_server_rbac() -> list[dict[str, Any]]:
    """What the metrics apiserver's own user needs beyond delegated authentication
    (``aggregation.delegation_rbac``): read ScaledObjects, which its provider looks up for
    each metric it is asked for (KEDA's manifests run it as the operator's ServiceAccount,
    whose ClusterRole grants far more)."""
    name = "keda-metrics-apiserver"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [{"apiGroups": ["keda.sh"], "resources": ["scaledobjects"],
                       "verbs": ["get", "list", "watch"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": name},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                             "name": METRICS_SERVER_USER}]}
    return [role, binding]


# --- certificates ------------------------------------------------------------------------


def write_grpc_pair(pki_dir: Path, cert_dir: Path) -> None:
    """Write ``cert_dir/{ca.crt,tls.crt,tls.key}``: the rig CA (from ``pki_dir``) and one
    key pair it signs for both ends of KEDA's gRPC (server and client use; DNS names of
    the operator's Service, ``localhost`` and 127.0.0.1). Existing files are kept."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    if (cert_dir / "tls.crt").exists():
        return
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_pem = (pki_dir / "ca.crt").read_bytes()
    ca_name = x509.load_pem_x509_certificate(ca_pem).subject
    key = ec.generate_private_key(ec.SECP256R1())
    names = ["localhost", *(f"{OPERATOR}.{NAMESPACE}.{d}" for d in _SERVICE_DOMAINS)]
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, OPERATOR)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names]
                + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (cert_dir / "ca.crt").write_bytes(ca_pem)
    (cert_dir / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (cert_dir / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# --- processes ---------------------------------------------------------------------------


def _ports_file() -> Path:
    return paths.state_dir() / "keda-ports.json"


def ports() -> dict[str, int]:
    """Loopback ports of the running KEDA processes ({} when none): ``grpc`` (operator's
    metrics service), ``operator_metrics``, ``operator_health``, ``metrics_server``
    (the aggregated API, HTTPS) and ``metrics_server_metrics``."""
    try:
        data = json.loads(_ports_file().read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items()}


def up(binaries: dict[str, Path]) -> None:
    """Install KEDA's CRDs and RBAC, start its operator and metrics apiserver and register
    ``external.metrics.k8s.io/v1beta1``; returns when that APIService is Available.

    Called by controlplane.up once the apiserver serves, with build_all's binaries.
    Raises RuntimeError or TimeoutError with the failing process's log tail.
    """
    # Imported here: controlplane imports this module.
    from e2e.cluster import aggregation, controlplane

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return controlplane._kubectl(binaries, *args, stdin=stdin, check=False)

    wait = controlplane._wait
    started = time.monotonic()
    module_dir = build._module_dir(MODULE, paths.versions()["keda"])
    state = paths.state_dir()
    stream = yaml.safe_dump_all(crds(module_dir), sort_keys=False)
    wait("KEDA CRDs applied", lambda: kubectl(
        "apply", "--server-side", "--field-manager=e2e-cluster", "-f", "-",
        stdin=stream).returncode == 0, 30)
    wait("KEDA CRDs established", lambda: kubectl(
        "wait", "--for=condition=Established", "--timeout=2s",
        *(f"crd/{d['metadata']['name']}" for d in crds(module_dir))).returncode == 0, 30)
    rbac = [*config_manifests(module_dir), *metrics_server_rbac(),
            *aggregation.delegation_rbac(METRICS_SERVER_USER)]
    stream = yaml.safe_dump_all(rbac, sort_keys=False)
    wait("KEDA RBAC applied", lambda: kubectl(
        "apply", "--server-side", "--field-manager=e2e-cluster", "-f", "-",
        stdin=stream).returncode == 0, 30)

    groups = ("system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}")
    operator_kc = controlplane.client_kubeconfig(
        pki.ClientIdentity("keda-operator", OPERATOR_USER, groups))
    server_kc = controlplane.client_kubeconfig(
        pki.ClientIdentity("keda-metrics-apiserver", METRICS_SERVER_USER, groups))
    grpc_dir = state / "keda-certs"
    write_grpc_pair(state / "pki", grpc_dir)
    # CAs the scalers trust beside the system's (--ca-dir; default /custom/ca): the rig CA.
    ca_dir = state / "keda-ca"
    ca_dir.mkdir(exist_ok=True)
    (ca_dir / "ca.crt").write_bytes((state / "pki" / "ca.crt").read_bytes())
    names = ("grpc", "operator_metrics", "operator_health", "metrics_server",
             "metrics_server_metrics")
    port = dict(zip(names, controlplane._free_ports(len(names)), strict=True))
    _ports_file().write_text(json.dumps(port))
    env = {"WATCH_NAMESPACE": "", "POD_NAMESPACE": NAMESPACE,
           "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE}

    processes.start(OPERATOR, [
        str(binaries["keda-operator"]),
        f"--metrics-bind-address=127.0.0.1:{port['operator_metrics']}",
        f"--health-probe-bind-address=127.0.0.1:{port['operator_health']}",
        f"--metrics-service-bind-address=127.0.0.1:{port['grpc']}",
        f"--cert-dir={grpc_dir}", f"--ca-dir={ca_dir}",
        "--leader-elect=false", "--zap-log-level=info", "--zap-encoder=console",
    ], env={**env, "KUBECONFIG": str(operator_kc)})

    health = f"http://127.0.0.1:{port['operator_health']}/readyz"
    wait("keda-operator /readyz", lambda: controlplane._http_ok(health), 60, OPERATOR)

    serving_cert, serving_key = aggregation.serving_pair(METRICS_SERVER, NAMESPACE)
    processes.start(METRICS_SERVER, [
        str(binaries["keda-adapter"]),
        "--bind-address=127.0.0.1", f"--secure-port={port['metrics_server']}",
        f"--tls-cert-file={serving_cert}", f"--tls-private-key-file={serving_key}",
        f"--cert-dir={grpc_dir}",
        f"--authentication-kubeconfig={server_kc}", f"--authorization-kubeconfig={server_kc}",
        f"--lister-kubeconfig={server_kc}",
        f"--metrics-service-address=127.0.0.1:{port['grpc']}",
        f"--port={port['metrics_server_metrics']}", "--zap-log-level=info",
    ], env={**env, "KUBECONFIG": str(server_kc)})
    try:
        aggregation.register(*EXTERNAL_METRICS, METRICS_SERVER, NAMESPACE,
                             port["metrics_server"])
    except TimeoutError as error:
        tail = processes.log_path(METRICS_SERVER).read_text()[-3000:]
        raise RuntimeError(f"{error}\n{METRICS_SERVER} log tail:\n{tail}") from error
    for name in PROCESSES:
        pid = processes.recorded().get(name)
        if pid is None or not processes.alive(pid):
            raise RuntimeError(f"{name} exited:\n{processes.log_path(name).read_text()[-3000:]}")
    build.log(f"KEDA up, serving {'/'.join(EXTERNAL_METRICS)}, in "
              f"{time.monotonic() - started:.1f}s")
