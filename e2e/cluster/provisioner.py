"""A tiny dynamic hostPath provisioner for the local control plane (test tooling only).

The controller manager's built-in hostPath provisioner offers ReadWriteOnce only, and the
operator's model cache asks for ReadWriteMany. This provisioner serves the ``standard``
StorageClass in every access mode: for each Pending claim that the PV controller has
handed to it (annotation ``volume.kubernetes.io/storage-provisioner``) it creates a
hostPath PersistentVolume pre-bound to the claim; for each Released volume of its own with
reclaim policy Delete it removes the directory and the volume.

A claim that names a StorageClass which does not exist is never handed to any provisioner,
so it stays Pending, as on a real cluster.

It reconciles by listing every second instead of watching: a test provisioner needs no
event plumbing, and a full list can never miss an event.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

PROVISIONER_NAME = "e2e.deepseek-operator.io/hostpath"
_ANNOTATION = "volume.kubernetes.io/storage-provisioner"
_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"

log = logging.getLogger("e2e-provisioner")


def volume_for_claim(claim: dict[str, Any], root: Path) -> dict[str, Any]:
    """The PersistentVolume (a dict) that satisfies ``claim`` with a hostPath under root."""
    meta, spec = claim["metadata"], claim["spec"]
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{meta['uid']}",
                     "annotations": {_PROVISIONED_BY: PROVISIONER_NAME}},
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec["accessModes"],
            "storageClassName": spec.get("storageClassName") or "",
            "persistentVolumeReclaimPolicy": "Delete",
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "hostPath": {"path": str(root / f"pvc-{meta['uid']}"), "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": meta["namespace"], "name": meta["name"],
                         "uid": meta["uid"]},
        },
    }


def reconcile_once(core: Any, root: Path) -> None:
    """Provision volumes for waiting claims and delete released volumes of ours."""
    from kubernetes.client import ApiException

    pvcs = core.api_client.sanitize_for_serialization(
        core.list_persistent_volume_claim_for_all_namespaces())["items"]
    pvs = core.api_client.sanitize_for_serialization(core.list_persistent_volume())["items"]
    existing = {pv["metadata"]["name"] for pv in pvs}
    for claim in pvcs:
        annotations = claim["metadata"].get("annotations") or {}
        if (annotations.get(_ANNOTATION) != PROVISIONER_NAME
                or claim["spec"].get("volumeName")
                or claim.get("status", {}).get("phase") != "Pending"):
            continue
        pv = volume_for_claim(claim, root)
        if pv["metadata"]["name"] in existing:
            continue
        Path(pv["spec"]["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
        try:
            core.create_persistent_volume(pv)
            log.info("provisioned %s for %s/%s", pv["metadata"]["name"],
                     claim["metadata"]["namespace"], claim["metadata"]["name"])
        except ApiException as exc:
            if exc.status != 409:
                raise
    for pv in pvs:
        annotations = pv["metadata"].get("annotations") or {}
        if (annotations.get(_PROVISIONED_BY) == PROVISIONER_NAME
                and pv.get("status", {}).get("phase") == "Released"
                and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete"):
            shutil.rmtree(pv["spec"]["hostPath"]["path"], ignore_errors=True)
            try:
                core.delete_persistent_volume(pv["metadata"]["name"])
                log.info("deleted released %s", pv["metadata"]["name"])
            except ApiException as exc:
                if exc.status != 404:
                    raise


def main() -> None:
    """Entry point: ``python -m e2e.cluster.provisioner --kubeconfig K --root DIR``."""
    from kubernetes import client, config

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--root", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config.load_kube_config(args.kubeconfig)  # type: ignore[no-untyped-call]
    core = client.CoreV1Api()
    stopping = False

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    while not stopping:
        try:
            reconcile_once(core, args.root)
        except Exception:  # keep serving: the apiserver may be restarting
            log.exception("reconcile failed")
        time.sleep(1.0)


if __name__ == "__main__":
    main()
