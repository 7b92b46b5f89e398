"""Build the control-plane binaries from the Go module proxy, once per pinned version.

No Docker engine and no download site exist on our machines, so nothing prebuilt can be
fetched. Each component is built from its Go module:

* Kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl): the
  ``k8s.io/kubernetes`` go.mod replaces every staging module with ``./staging/...``, which
  ``go install`` refuses. A small wrapper module requires ``k8s.io/kubernetes`` and
  replaces each staging module (read from that very go.mod) with its published
  ``v0.<minor>.<patch>`` version.
* etcd: the server's go.mod also has replace lines, so it gets a wrapper module too.
* kwok and helm: plain ``go install module/cmd@version``; helm with the ``-X`` flags its
  release build sets (its version, and the Kubernetes version ``helm template`` assumes).
* the LeaderWorkerSet controller: e2e/cluster/lws.py (a wrapper module too).
* two small Go programs of ours that tests run: ``kstatus-check`` (e2e/cluster/kstatus,
  the kstatus library of sigs.k8s.io/cli-utils) and ``promql-selectors``
  (e2e/cluster/promql, Prometheus' PromQL parser), each in a wrapper module requiring
  the pinned library.
* prometheus-adapter (the custom metrics API of mode hpa), in a wrapper module too.

Binaries land in ``<cache>/bin/<component>-<version>/``; a ``.complete`` marker makes the
next run skip the build. A rebuild happens only when versions.yaml changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from e2e.cluster import lws, paths

KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
_MARKER = ".complete"


def log(message: str) -> None:
    """Print one progress line to stderr (stdout is kept for machine-readable output)."""
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOFLAGS", "-buildvcs=false")
    # A wrapper module never names a toolchain; the machine's Go (1.26) builds all of it.
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def _run(cmd: list[str], cwd: Path) -> None:
    started = time.monotonic()
    log(f"$ {' '.join(cmd)}")
    subprocess.run(cmd, cwd=cwd, env=_go_env(), check=True)
    log(f"  done in {time.monotonic() - started:.0f}s")


def _module_gomod(module_at_version: str, workdir: Path) -> str:
    """Text of a module's go.mod as served by the module proxy."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", module_at_version],
        cwd=workdir, env=_go_env(), check=True, capture_output=True, text=True,
    ).stdout
    return Path(json.loads(out)["GoMod"]).read_text()


def staging_modules(kubernetes_gomod: str) -> list[str]:
    """Module paths that k8s.io/kubernetes' go.mod replaces with ./staging/ directories."""
    found = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", kubernetes_gomod, re.M)
    return sorted(set(found))


def kubernetes_wrapper_gomod(version: str, staging: list[str]) -> str:
    """go.mod of the wrapper module that builds Kubernetes ``version`` (e.g. ``v1.37.2``)."""
    staging_version = "v0." + version.removeprefix("v1.")
    lines = [
        "module deepseek-operator.local/kubernetes-tools",
        "",
        "go 1.26.0",
        "",
        f"require k8s.io/kubernetes {version}",
        "",
        "replace (",
        *(f"\t{m} => {m} {staging_version}" for m in staging),
        ")",
        "",
    ]
    return "\n".join(lines)


def _tools_go(packages: list[str]) -> str:
    imports = "\n".join(f'\t_ "{p}"' for p in packages)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def _wrapper(name: str, gomod: str, packages: list[str]) -> Path:
    src = paths.cache_root() / "src" / name
    src.mkdir(parents=True, exist_ok=True)
    if not (src / "go.mod").exists() or (src / "go.mod.in").read_text() != gomod:
        (src / "go.mod").write_text(gomod)
        (src / "go.mod.in").write_text(gomod)
        (src / "tools.go").write_text(_tools_go(packages))
        _run(["go", "mod", "tidy"], src)
    return src


def build_kubernetes(version: str) -> Path:
    """Build kube-apiserver, kube-controller-manager, kube-scheduler and kubectl.

    Returns the directory holding them. Raises subprocess.CalledProcessError when the Go
    build fails (its output is on stderr).
    """
    out = paths.bin_dir("kubernetes", version)
    if (out / _MARKER).exists():
        return out
    scratch = paths.cache_root() / "src"
    scratch.mkdir(parents=True, exist_ok=True)
    staging = staging_modules(_module_gomod(f"k8s.io/kubernetes@{version}", scratch))
    packages = [f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS]
    src = _wrapper(f"kubernetes-{version}", kubernetes_wrapper_gomod(version, staging), packages)
    major, minor = version.removeprefix("v").split(".")[:2]
    ldflags = " ".join([
        f"-X k8s.io/component-base/version.gitVersion={version}",
        f"-X k8s.io/component-base/version.gitMajor={major}",
        f"-X k8s.io/component-base/version.gitMinor={minor}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
        f"-X k8s.io/client-go/pkg/version.gitVersion={version}",
        f"-X k8s.io/client-go/pkg/version.gitMajor={major}",
        f"-X k8s.io/client-go/pkg/version.gitMinor={minor}",
        "-s -w",
    ])
    out.mkdir(parents=True, exist_ok=True)
    # One binary at a time: linking kube-apiserver alone takes a few GiB on 2 cores.
    for i, command in enumerate(KUBE_COMMANDS, 1):
        if (out / command).exists():
            continue
        log(f"building {command} {version} ({i}/{len(KUBE_COMMANDS)}); cold builds take minutes")
        _run(["go", "build", "-trimpath", "-pgo=off", "-ldflags", ldflags,
              "-o", str(out / f"{command}.tmp"), f"k8s.io/kubernetes/cmd/{command}"], src)
        (out / f"{command}.tmp").rename(out / command)
    (out / _MARKER).write_text(version)
    return out


def build_etcd(version: str) -> Path:
    """Build the etcd server; returns the directory holding ``etcd``."""
    out = paths.bin_dir("etcd", version)
    if (out / _MARKER).exists():
        return out
    gomod = "\n".join([
        "module deepseek-operator.local/etcd-tools", "", "go 1.26.0", "",
        f"require go.etcd.io/etcd/server/v3 {version}", "",
    ])
    src = _wrapper(f"etcd-{version}", gomod, ["go.etcd.io/etcd/server/v3"])
    out.mkdir(parents=True, exist_ok=True)
    log(f"building etcd {version}")
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w",
          "-o", str(out / "etcd"), "go.etcd.io/etcd/server/v3"], src)
    (out / _MARKER).write_text(version)
    return out


def _go_install(component: str, package: str, version: str,
                ldflags: Callable[[], list[str]] | None = None) -> Path:
    """``go install package@version`` into the component's bin directory, once.

    ``ldflags`` gives ``-X`` flags beyond ``-s -w``; the marker records that they were used,
    so a binary built without them is rebuilt once.
    """
    out = paths.bin_dir(component, version)
    recipe = version if ldflags is None else f"{version} with release -ldflags"
    marker = out / _MARKER
    if marker.is_file() and marker.read_text() == recipe:
        return out
    out.mkdir(parents=True, exist_ok=True)
    log(f"building {component} {version}")
    env_bin = {"GOBIN": str(out)}
    started = time.monotonic()
    flags = " ".join(["-s -w", *(ldflags() if ldflags is not None else [])])
    subprocess.run(["go", "install", "-trimpath", "-ldflags", flags, f"{package}@{version}"],
                   env={**_go_env(), **env_bin}, check=True, cwd=paths.cache_root())
    log(f"  done in {time.monotonic() - started:.0f}s")
    marker.write_text(recipe)
    return out


HELM_MODULE = "helm.sh/helm/v3"


def helm_ldflags(version: str, helm_gomod: str) -> list[str]:
    """The ``-X`` flags helm's release Makefile sets and a plain ``go install`` does not:
    the version ``helm version`` prints, and the Kubernetes version that ``helm template``
    and ``helm lint`` assume without ``--kube-version``: 1.N for the k8s.io/client-go
    v0.N.x that helm's go.mod requires (without them helm assumes 1.20, below our chart's
    ``kubeVersion``).

    Raises RuntimeError when ``helm_gomod`` requires no k8s.io/client-go.
    """
    found = re.search(r"^\s*k8s\.io/client-go v(\d+)\.(\d+)\.", helm_gomod, re.M)
    if found is None:
        raise RuntimeError(f"{HELM_MODULE}@{version}: go.mod requires no k8s.io/client-go")
    major, minor = int(found[1]) + 1, int(found[2])
    flags = [f"-X {HELM_MODULE}/internal/version.version={version}"]
    for package in ("pkg/chartutil", "pkg/lint/rules"):
        flags += [f"-X {HELM_MODULE}/{package}.k8sVersionMajor={major}",
                  f"-X {HELM_MODULE}/{package}.k8sVersionMinor={minor}"]
    return flags


def build_helm(version: str) -> Path:
    """Build helm as its release is built (see helm_ldflags); returns its directory."""
    return _go_install("helm", f"{HELM_MODULE}/cmd/helm", version, lambda: helm_ldflags(
        version, _module_gomod(f"{HELM_MODULE}@{version}", paths.cache_root())))


# kwok ships no built-in stages: it is told by Stage objects how simulated nodes and pods
# move through their lifecycle. We use the upstream "fast" stages from the pinned kwok module
# itself (nodes Ready at once with a 20 s heartbeat; pods Running and Ready once scheduled;
# Job pods Succeeded; deleted pods removed), so they always match the kwok version.
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat/node-heartbeat.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


def kwok_stages(version: str) -> str:
    """The kwok Stage documents (one YAML stream) from the kwok module at ``version``."""
    module_dir = _module_dir("sigs.k8s.io/kwok", version)
    return "---\n".join((module_dir / stage).read_text() for stage in KWOK_STAGES)


# The Prometheus Operator's PodMonitor CRD as it ships in the pinned module's example/
# directory (the one its install bundle is generated from), so the e2e tests exercise the
# operator's PodMonitor against the real schema.
PODMONITOR_CRD = "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml"


def podmonitor_crd(version: str) -> str:
    """The PodMonitor CustomResourceDefinition (YAML) from the prometheus-operator module at
    ``version``."""
    return (_module_dir("github.com/prometheus-operator/prometheus-operator", version)
            / PODMONITOR_CRD).read_text()


def _module_dir(module: str, version: str) -> Path:
    """Where ``go mod download`` unpacked ``module@version`` (downloaded on first use)."""
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"],
                         cwd=paths.cache_root(), env=_go_env(), check=True,
                         capture_output=True, text=True).stdout
    return Path(json.loads(out)["Dir"])


CHECKS_DIR = Path(__file__).resolve().parent


def _build_program(name: str, directory: str, requires: dict[str, str]) -> Path:
    """Build one small Go program of ours (``e2e/cluster/<directory>/main.go``) in a
    wrapper module in the cache that requires ``requires`` ({module: version}); ``go mod
    tidy`` resolves the rest from the module proxy. Returns the path of the binary.

    The marker records the versions and a hash of main.go, so a new pin or an edit of the
    program rebuilds it. Raises subprocess.CalledProcessError when the build fails.
    """
    program = (CHECKS_DIR / directory / "main.go").read_text()
    pins = " ".join(f"{module}@{version}" for module, version in sorted(requires.items()))
    recipe = f"{pins} {hashlib.sha256(program.encode()).hexdigest()[:16]}"
    out = paths.bin_dir(name, "-".join(v for _, v in sorted(requires.items())))
    marker = out / _MARKER
    if marker.is_file() and marker.read_text() == recipe and (out / name).exists():
        return out / name
    src = paths.cache_root() / "src" / f"{name}-{out.name}"
    src.mkdir(parents=True, exist_ok=True)
    (src / "main.go").write_text(program)
    gomod = "\n".join([
        f"module deepseek-operator.local/{name}", "", "go 1.26.0", "",
        *(f"require {module} {version}" for module, version in sorted(requires.items())), "",
    ])
    if not (src / "go.mod.in").exists() or (src / "go.mod.in").read_text() != gomod:
        (src / "go.mod").write_text(gomod)
        (src / "go.mod.in").write_text(gomod)
    log(f"building {name} against {pins}")
    _run(["go", "mod", "tidy"], src)
    out.mkdir(parents=True, exist_ok=True)
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / name), "."], src)
    marker.write_text(recipe)
    return out / name


def build_kstatus(version: str) -> Path:
    """``kstatus-check`` (e2e/cluster/kstatus): what the kstatus library of
    ``sigs.k8s.io/cli-utils`` ``version`` says of objects given as JSON files."""
    return _build_program("kstatus-check", "kstatus", {"sigs.k8s.io/cli-utils": version})


def build_promql(version: str) -> Path:
    """``promql-selectors`` (e2e/cluster/promql): PromQL parsed by the parser of
    ``github.com/prometheus/prometheus`` ``version`` (its Go module versions, v0.3xx.y for
    Prometheus 3.xx.y), with the metric names it selects."""
    return _build_program("promql-selectors", "promql",
                          {"github.com/prometheus/prometheus": version})


ADAPTER_MODULE = "sigs.k8s.io/prometheus-adapter"


def build_prometheus_adapter(version: str) -> Path:
    """prometheus-adapter ``version`` (its cmd/adapter, e.g. ``v0.12.0``), the custom
    metrics API the HPA of mode hpa reads (e2e/cluster/metrics_adapter.py starts it).
    Built in a wrapper module: ``go install module/cmd@version`` asks the module proxy
    for the module's version list, which the proxy refuses. Returns the binary's path."""
    out = paths.bin_dir("prometheus-adapter", version)
    binary = out / "prometheus-adapter"
    if (out / _MARKER).is_file() and (out / _MARKER).read_text() == version:
        return binary
    gomod = "\n".join(["module deepseek-operator.local/prometheus-adapter-tools", "",
                       "go 1.26.0", "", f"require {ADAPTER_MODULE} {version}", ""])
    src = _wrapper(f"prometheus-adapter-{version}", gomod, [f"{ADAPTER_MODULE}/cmd/adapter"])
    out.mkdir(parents=True, exist_ok=True)
    log(f"building prometheus-adapter {version}")
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary.with_suffix(".tmp")),
          f"{ADAPTER_MODULE}/cmd/adapter"], src)
    binary.with_suffix(".tmp").rename(binary)
    (out / _MARKER).write_text(version)
    return binary


def build_all() -> dict[str, Path]:
    """Build (or reuse) every component; returns {binary name: path}.

    Raises RuntimeError when Go is missing, subprocess.CalledProcessError when a build fails.
    """
    if shutil.which("go") is None:
        raise RuntimeError("Go is required to build the local control plane (go not on PATH)")
    paths.cache_root().mkdir(parents=True, exist_ok=True)
    v = paths.versions()
    started = time.monotonic()
    kube = build_kubernetes(v["kubernetes"])
    etcd = build_etcd(v["etcd"])
    kwok = _go_install("kwok", "sigs.k8s.io/kwok/cmd/kwok", v["kwok"])
    helm = build_helm(v["helm"])
    kstatus = build_kstatus(v["cli-utils"])
    promql = build_promql(v["prometheus"])
    adapter = build_prometheus_adapter(v["prometheus-adapter"])
    lws_manager = lws.build_lws(v["lws"])
    elapsed = time.monotonic() - started
    if elapsed > 5:
        log(f"all binaries ready in {elapsed:.0f}s")
    binaries = {c: kube / c for c in KUBE_COMMANDS}
    binaries.update(etcd=etcd / "etcd", kwok=kwok / "kwok", helm=helm / "helm")
    binaries.update({"kstatus-check": kstatus, "promql-selectors": promql,
                     "prometheus-adapter": adapter})
    from e2e.cluster import keda  # in its own module, which imports this one
    binaries.update(keda.build_keda(v["keda"]))
    binaries[lws.BINARY] = lws_manager
    return binaries


if __name__ == "__main__":
    for name, path in build_all().items():
        print(f"{name}\t{path}")
