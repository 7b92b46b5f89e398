"""What GitOps tools say of a DeepSeekDeployment: the Argo CD health check (docs/argocd/
health.lua, run in Lua 5.1 as Argo CD's gopher-lua runs it, through ``lupa``) and kstatus
(the ``sigs.k8s.io/cli-utils`` library that kpt and Flux use, through the Go program
e2e/cluster/kstatus built by e2e/cluster/build.py).

Status snapshots are real DeepSeekDeployments captured from the local control plane by
e2e/test_status_snapshots.py (``make status-snapshots`` rewrites the committed copies in
tests/data/status-snapshots/); tests/test_gitops_health.py checks them without a cluster.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lupa import lua51

from e2e.cluster import build, paths

ROOT = Path(__file__).resolve().parent.parent
HEALTH_LUA = ROOT / "docs" / "argocd" / "health.lua"
SNAPSHOTS = ROOT / "tests" / "data" / "status-snapshots"

# Snapshot name -> (Argo CD health status, kstatus status) it must get. "new" is a
# DeepSeekDeployment the operator has not written a status for: it reads as the CRD's
# status default (api.crd.STATUS_DEFAULT, observedGeneration 0); without it kstatus would
# have nothing to go by and say Current (cli-utils status.Compute: "the absence of any
# known conditions means the resource is current").
EXPECTED: dict[str, tuple[str, str]] = {
    "new": ("Progressing", "InProgress"),
    "progressing": ("Progressing", "InProgress"),
    "ready": ("Healthy", "Current"),
    "generation-not-observed": ("Progressing", "InProgress"),
    "degraded-partly-ready": ("Progressing", "InProgress"),
    "degraded-stalled-serving": ("Degraded", "Failed"),
    "stalled": ("Degraded", "Failed"),
}


def snapshot(obj: dict[str, Any]) -> dict[str, Any]:
    """A DeepSeekDeployment as read from the API, without managedFields (noise here)."""
    out = json.loads(json.dumps(obj))
    out["metadata"].pop("managedFields", None)
    return dict(out)


def _to_lua(runtime: Any, value: Any) -> Any:
    """A JSON value as Lua values: objects and arrays become tables (arrays 1-based)."""
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def argocd_health(obj: dict[str, Any], script: Path = HEALTH_LUA) -> tuple[str, str]:
    """(hs.status, hs.message) of the Argo CD health check for ``obj`` (an API dict)."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals()["obj"] = _to_lua(runtime, obj)
    hs = runtime.execute(script.read_text())
    return str(hs["status"]), str(hs["message"])


def kstatus(objs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(status, message) that kstatus computes for each object, in order.

    Builds (once, cached) the kstatus program against the pinned cli-utils version.
    Raises subprocess.CalledProcessError when the program fails on an object.
    """
    program = build.build_kstatus(paths.versions()["cli-utils"])
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, obj in enumerate(objs):
            path = Path(tmp) / f"{i}.json"
            path.write_text(json.dumps(obj))
            files.append(str(path))
        out = subprocess.run([str(program), *files], capture_output=True, text=True,
                             check=True).stdout
    verdicts = [json.loads(line) for line in out.splitlines()]
    assert [v["file"] for v in verdicts] == files
    return [(str(v["status"]), str(v["message"])) for v in verdicts]
