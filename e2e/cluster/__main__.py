"""CLI of the local control plane: ``python -m e2e.cluster up | down | status | env | build``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from e2e.cluster import build, controlplane


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build (once) and start the control plane, or reuse it")
    up.add_argument("--nodes", type=Path, default=os.environ.get("E2E_NODES_FILE"),
                    help="node-set YAML (default: e2e/cluster/nodes.yaml)")
    sub.add_parser("down", help="stop every process by PID and remove the state")
    sub.add_parser("status", help="print process and apiserver status as JSON")
    sub.add_parser("env", help="print shell exports for KUBECONFIG and PATH")
    sub.add_parser("build", help="build the binaries only")
    args = parser.parse_args(argv)

    if args.command == "up":
        print(controlplane.up(args.nodes))
    elif args.command == "down":
        controlplane.down()
    elif args.command == "status":
        state = controlplane.status()
        print(json.dumps(state, indent=2))
        return 0 if state["ready"] else 1
    elif args.command == "env":
        print("\n".join(controlplane.env_lines()))
    else:
        for name, path in build.build_all().items():
            print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
