"""The main job (`make demo`): a local control plane, the operator, the samples reconciled.

Brings the control plane up (or reuses it), installs the CRDs and RBAC, starts the operator
as its ServiceAccount, applies every sample of manifests/samples/ (and the ones under
samples/refused/, which the operator must refuse) into namespace ``demo``, waits until each
one is Ready, Stalled, or waiting on a reason the cluster cannot fix (no matching GPUs),
and prints ``kubectl get dsd`` with the children and each sample's conditions. Then one
allowed and one denied call to the distill-qwen-7b sample through the gateway
(`e2e.gateway_rig.demo_calls`, the OpenAI stand-in as its engine), with their audit lines.
It exits 1 unless every showcase sample is Ready and every refused one Stalled.

It then waits for Ctrl-C when run in a terminal (explore with the printed KUBECONFIG), or
tears down at once when not interactive or with ``--teardown``. ``--keep`` returns at once
and leaves the control plane and the operator running: the operator's PID is recorded in
the control plane's state directory beside the others, so ``make cluster-down``
(``python -m e2e.cluster down``) stops it too.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

from e2e.cluster import build, controlplane, paths, processes
from e2e.gateway_rig import demo_calls
from e2e.kube import api_client
from e2e.operator_process import REPO, OperatorProcess, install_manifests

NAMESPACE = "demo"
OPERATOR = "operator"  # the operator's name among the control plane's recorded processes
SAMPLES = REPO / "manifests" / "samples"
# The sample the demo calls through the gateway (its access binds web/chat-frontend).
GATEWAY_SAMPLE = "distill-qwen-7b"


def _kubectl(kubectl: Path, kubeconfig: Path, *args: str, stdin: str | None = None,
             check: bool = True) -> str:
    result = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), *args],
                            input=stdin, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _samples() -> list[Path]:
    return sorted(SAMPLES.glob("*.yaml")) + sorted((SAMPLES / "refused").glob("*.yaml"))


def expected_outcomes() -> dict[str, str]:
    """What each sample must end as, by name: every showcase sample Ready (the local
    control plane has its GPUs, the LeaderWorkerSet controller and KEDA), every sample
    under refused/ Stalled."""
    def name(path: Path) -> str:
        return str(yaml.safe_load(path.read_text())["metadata"]["name"])
    return {**{name(p): "Ready" for p in SAMPLES.glob("*.yaml")},
            **{name(p): "Stalled" for p in (SAMPLES / "refused").glob("*.yaml")}}


def _settled(obj: dict[str, Any]) -> str | None:
    """A one-word outcome once a sample has settled, else None."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return None
    conds = {c["type"]: c for c in status.get("conditions") or []}
    if conds.get("Ready", {}).get("status") == "True":
        return "Ready"
    if conds.get("Stalled", {}).get("status") == "True":
        return "Stalled"
    # Unschedulable only counts once storage and cache are done: before that, the scheduler
    # may just be waiting for the claim to bind.
    cache_done = all(conds.get(t, {}).get("status") == "True"
                     for t in ("StorageReady", "ModelCached"))
    if cache_done and conds.get("Scheduled", {}).get("status") == "False":
        return "Unschedulable"
    return None


def run(teardown: bool, keep: bool, timeout: float) -> int:
    """Run the demo; returns the exit code (1 when a sample did not end as
    ``expected_outcomes`` says, e.g. did not settle in time)."""
    started = time.monotonic()
    binaries = build.build_all()
    kubectl = binaries["kubectl"]
    admin = controlplane.up()
    install_manifests(kubectl, admin)
    kept = processes.recorded().get(OPERATOR)
    if kept is not None:  # left running by an earlier `--keep`: one operator at a time
        print(f"[demo] stopping the operator an earlier run kept (PID {kept})", flush=True)
        processes.stop(OPERATOR, kept)
    operator = OperatorProcess(controlplane.kubeconfig_path("operator"),
                               processes.log_path(OPERATOR))
    operator.start()
    assert operator.proc is not None  # start() returned, so the process runs
    # Recorded like the control plane's own processes: `python -m e2e.cluster down` stops
    # it even if this process dies before its `finally`.
    processes.record(OPERATOR, operator.proc.pid)
    print(f"[demo] operator running (PID {operator.proc.pid}, log: {operator.log_path}) "
          f"with KUBECONFIG={operator.kubeconfig}", flush=True)
    try:
        _kubectl(kubectl, admin, "create", "namespace", NAMESPACE, check=False)
        for sample in _samples():
            out = _kubectl(kubectl, admin, "apply", "-n", NAMESPACE, "-f", str(sample),
                           check=False)
            print(f"[demo] {sample.relative_to(REPO)}: {out.strip() or 'refused by the API'}",
                  flush=True)
        outcomes = _wait(kubectl, admin, timeout)
        print()
        print(_kubectl(kubectl, admin, "get", "dsd", "-n", NAMESPACE, "-o", "wide"))
        print(_kubectl(kubectl, admin, "get", "deployments,jobs,pvc,svc,hpa,configmaps,"
                       "roles", "-n", NAMESPACE, "-l", "app.kubernetes.io/managed-by="
                       "deepseek-operator"))
        _report(kubectl, admin)
        if outcomes.get(GATEWAY_SAMPLE) == "Ready":
            for line in demo_calls(api_client(admin), NAMESPACE, GATEWAY_SAMPLE,
                                   paths.state_dir() / "demo-gateway"):
                print(line, flush=True)
        print(f"[demo] settled in {time.monotonic() - started:.0f}s: "
              + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
        wrong = {k: v for k, v in outcomes.items() if expected_outcomes().get(k) != v}
        if wrong:
            print("[demo] NOT as expected (showcase samples end Ready, refused/ ones "
                  "Stalled): " + ", ".join(f"{k}={v}" for k, v in sorted(wrong.items())),
                  flush=True)
        if keep:
            print(f"[demo] kept running: the control plane and the operator (PID "
                  f"{operator.proc.pid}, log: {operator.log_path})")
            print(f"export KUBECONFIG={admin}")
            print(f"[demo] stop both: {_down_command()}", flush=True)
        elif sys.stdin.isatty() and not teardown:
            print(f"[demo] explore: export KUBECONFIG={admin}; kubectl get dsd -n {NAMESPACE}")
            print("[demo] Ctrl-C to stop the operator and the control plane", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print()
        return 1 if wrong else 0
    finally:
        if not keep:
            operator.stop()
            controlplane.down()


def _down_command() -> str:
    """The shell command that stops the control plane this demo used (and its operator):
    it names the state directory when the environment moved it."""
    moved = any(os.environ.get(v) for v in ("DEEPSEEK_OPERATOR_STATE", "DEEPSEEK_OPERATOR_CACHE"))
    state = f"DEEPSEEK_OPERATOR_STATE={shlex.quote(str(paths.state_dir()))} " if moved else ""
    return f"{state}make cluster-down"


def _wait(kubectl: Path, admin: Path, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    outcomes: dict[str, str] = {}
    while True:
        items = yaml.safe_load(_kubectl(kubectl, admin, "get", "dsd", "-n", NAMESPACE,
                                        "-o", "yaml"))["items"]
        outcomes = {i["metadata"]["name"]: _settled(i) or "unsettled" for i in items}
        if all(v != "unsettled" for v in outcomes.values()) or time.monotonic() > deadline:
            return outcomes
        time.sleep(1)


def _report(kubectl: Path, admin: Path) -> None:
    items = yaml.safe_load(_kubectl(kubectl, admin, "get", "dsd", "-n", NAMESPACE,
                                    "-o", "yaml"))["items"]
    for item in items:
        print(f"{item['metadata']['name']}:")
        for cond in (item.get("status") or {}).get("conditions") or []:
            line = f"{cond['type']:<16} {cond['status']:<7} {cond['reason']}: {cond['message']}"
            print(textwrap.fill(line, width=110, initial_indent="  ",
                                subsequent_indent=" " * 27))


def main(argv: list[str] | None = None) -> int:
    """Parse flags and run the demo."""
    parser = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__)
    end = parser.add_mutually_exclusive_group()
    end.add_argument("--teardown", action="store_true",
                     help="stop everything as soon as the samples settled")
    end.add_argument("--keep", action="store_true",
                     help="return at once, leaving the control plane and the operator "
                          "running (`make cluster-down` stops both)")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds to wait for the samples to settle")
    args = parser.parse_args(argv)
    return run(args.teardown, args.keep, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
