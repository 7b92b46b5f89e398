"""Benchmark: N DeepSeekDeployments created at once, time until all are Ready.

Runs against the local control plane (brought up if needed) with the operator as a
subprocess, like the e2e tests. Reports wall time to all-Ready, the operator's reconciles
(from its own metrics) and the API requests it made (from the apiserver's audit log), per
DeepSeekDeployment. `make bench-reconcile` (N=50 by default; BENCH_N=... to change).
Extra simulated GPU nodes are registered so every replica fits, and removed afterwards.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from e2e.cluster import build, controlplane, paths
from e2e.kube import api_client, wait_for
from e2e.operator_process import OperatorProcess, install_manifests


def _cr(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "DeepSeekDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": "deepseek-r1-distill-qwen-1.5b", "maxModelLen": 8192},
                 "gpu": {"maxConcurrentSequences": 4}, "autoscaling": {"mode": "none"}},
    }


def _ready(obj: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _requests_by_verb(since: str) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for line in (paths.state_dir() / "audit.log").read_text().splitlines():
        entry = json.loads(line)
        if (entry["user"]["username"] == controlplane.OPERATOR_USER
                and entry["stage"] == "ResponseComplete"
                and entry["requestReceivedTimestamp"] >= since):
            counts[entry["verb"]] += 1
    return counts


def _metric(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix))


def run(n: int, timeout: float) -> dict[str, float]:
    """Create ``n`` DeepSeekDeployments at once; returns the measurements. A control plane
    started here is stopped at the end; one that was already running is left running."""
    was_running = controlplane.running()
    try:
        return _measure(n, timeout)
    finally:
        if not was_running:
            controlplane.down()


def _measure(n: int, timeout: float) -> dict[str, float]:
    kubeconfig = controlplane.up()
    install_manifests(build.build_all()["kubectl"], kubeconfig)
    api = api_client(kubeconfig)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    extra = Path(paths.state_dir() / "bench-nodes.yaml")
    extra.write_text(json.dumps({"nodes": [{
        "name": "bench-gpu", "count": (n + 7) // 8, "cpu": "96", "memory": "1Ti",
        "gpu": {"count": 8, "product": "NVIDIA-A100-SXM4-80GB", "memoryMiB": 81920}}]}))
    nodes = controlplane.node_manifests(extra)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    operator = OperatorProcess(controlplane.kubeconfig_path("operator"),
                               paths.state_dir() / "logs" / "operator-bench.log")
    for node in nodes:
        core.create_node(node)
    core.create_namespace({"metadata": {"name": namespace}})
    operator.start()
    try:
        wait_for("the namespace's default ServiceAccount",
                 lambda: core.list_namespaced_service_account(namespace).items, 30)
        since = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        before = operator.metrics()
        started = time.monotonic()
        for i in range(n):
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                   _cr(f"bench-{i:03d}"))
        created = time.monotonic() - started

        def all_ready() -> bool:
            items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                         PLURAL)["items"]
            return len(items) == n and all(_ready(o) for o in items)

        wait_for(f"{n} DeepSeekDeployments Ready", all_ready, timeout, interval=1)
        elapsed = time.monotonic() - started
        time.sleep(3)
        after = operator.metrics()
        requests = _requests_by_verb(since)
        reconciles = (_metric(after, "deepseek_operator_reconciles_total")
                      - _metric(before, "deepseek_operator_reconciles_total"))
        return {
            "deployments": n, "create_seconds": round(created, 1),
            "all_ready_seconds": round(elapsed, 1),
            "reconciles": reconciles, "reconciles_per_deployment": round(reconciles / n, 1),
            "api_reads": float(sum(v for k, v in requests.items() if k in ("get", "list"))),
            "api_writes": float(sum(v for k, v in requests.items()
                                    if k in ("create", "update", "patch", "delete"))),
        }
    finally:
        operator.stop()
        core.delete_namespace(namespace)
        for node in nodes:
            core.delete_node(node["metadata"]["name"])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(prog="python -m e2e.bench.reconcile", description=__doc__)
    parser.add_argument("-n", type=int, default=50, help="DeepSeekDeployments to create")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    result = run(args.n, args.timeout)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
