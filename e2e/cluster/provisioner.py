"""A tiny dynamic hostPath provisioner for the local control plane (test tooling only).

The controller manager's built-in hostPath provisioner offers ReadWriteOnce only, and the
operator's model cache asks for ReadWriteMany. This provisioner serves the ``standard``
StorageClass in every access mode: for each Pending claim that the PV controller has
handed to it (annotation ``volume.kubernetes.io/storage-provisioner``) it creates a
hostPath PersistentVolume pre-bound to the claim; for each Released volume of its own with
reclaim policy Delete it removes the directory and the volume.

A claim that names a StorageClass which does not exist is never handed to any provisioner,
so it stays Pending, as on a real cluster.

A class may limit the access modes it provisions with the parameter
``supportedAccessModes`` (comma-separated, e.g. ``ReadWriteOnce,ReadWriteOncePod``, as the
block-storage CSI drivers of cloud providers do). A claim asking for another mode is
refused the way a real external provisioner refuses it: the claim stays Pending and a
Warning Event ``ProvisioningFailed`` with the reason is posted through the events API with
the claim as involvedObject, again (its count raised) while the claim waits.

It reconciles by listing every second instead of watching: a test provisioner needs no
event plumbing, and a full list can never miss an event.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

PROVISIONER_NAME = "e2e.deepseek-operator.io/hostpath"
_ANNOTATION = "volume.kubernetes.io/storage-provisioner"
_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
SUPPORTED_ACCESS_MODES = "supportedAccessModes"
"""StorageClass parameter: the access modes the class provisions (all when absent)."""
REFUSAL_REPEAT_SECONDS = 30.0
"""A refused claim's Event is posted again (its count raised) this often while it waits."""

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


def unsupported_modes(claim: dict[str, Any], storage_class: dict[str, Any] | None) -> list[str]:
    """The access modes ``claim`` asks for that its class does not provision (by the class's
    ``supportedAccessModes`` parameter; [] when the class has none, or is unknown)."""
    allowed = ((storage_class or {}).get("parameters") or {}).get(SUPPORTED_ACCESS_MODES)
    if not allowed:
        return []
    supported = {m.strip() for m in allowed.split(",") if m.strip()}
    return [m for m in claim["spec"].get("accessModes") or [] if m not in supported]


def refusal_message(class_name: str, unsupported: list[str], supported: str) -> str:
    """The ProvisioningFailed message, worded like an external provisioner's (its prefix)
    relaying a CSI driver's InvalidArgument."""
    return (f'failed to provision volume with StorageClass "{class_name}": rpc error: code = '
            f"InvalidArgument desc = access mode {', '.join(unsupported)} not supported: "
            f"this class provisions {supported} volumes only")


def record_refusal(core: Any, claim: dict[str, Any], message: str) -> None:
    """Post (or repeat, raising its count) the Warning Event ProvisioningFailed about
    ``claim`` through the core/v1 events API, as client-go's event recorder does for an
    external provisioner. Raises ApiException on other errors than a conflict."""
    from kubernetes.client import ApiException

    meta = claim["metadata"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = f"{meta['name']}.provisioning-failed-{meta['uid'][:8]}"
    try:
        event = core.read_namespaced_event(name, meta["namespace"])
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_event(meta["namespace"], {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                               "namespace": meta["namespace"], "name": meta["name"],
                               "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion", "")},
            "reason": "ProvisioningFailed", "message": message, "type": "Warning",
            "source": {"component": PROVISIONER_NAME},
            "reportingComponent": PROVISIONER_NAME, "reportingInstance": PROVISIONER_NAME,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        })
        return
    core.patch_namespaced_event(name, meta["namespace"], {
        "count": int(event.count or 1) + 1, "lastTimestamp": now, "message": message})


def reconcile_once(core: Any, root: Path, refused: dict[str, float] | None = None) -> None:
    """Provision volumes for waiting claims (or refuse those asking for an access mode
    their class lacks; ``refused``: claim uid -> time.monotonic() of its last Event) and
    delete released volumes of ours."""
    from kubernetes import client
    from kubernetes.client import ApiException

    refused = {} if refused is None else refused
    pvcs = core.api_client.sanitize_for_serialization(
        core.list_persistent_volume_claim_for_all_namespaces())["items"]
    pvs = core.api_client.sanitize_for_serialization(core.list_persistent_volume())["items"]
    classes = {c["metadata"]["name"]: c for c in core.api_client.sanitize_for_serialization(
        client.StorageV1Api(core.api_client).list_storage_class())["items"]}
    existing = {pv["metadata"]["name"] for pv in pvs}
    waiting = set()
    for claim in pvcs:
        annotations = claim["metadata"].get("annotations") or {}
        if (annotations.get(_ANNOTATION) != PROVISIONER_NAME
                or claim["spec"].get("volumeName")
                or claim.get("status", {}).get("phase") != "Pending"):
            continue
        class_name = claim["spec"].get("storageClassName") or ""
        unsupported = unsupported_modes(claim, classes.get(class_name))
        if unsupported:
            uid = claim["metadata"]["uid"]
            waiting.add(uid)
            if time.monotonic() - refused.get(uid, -REFUSAL_REPEAT_SECONDS) \
                    >= REFUSAL_REPEAT_SECONDS:
                supported = classes[class_name]["parameters"][SUPPORTED_ACCESS_MODES]
                record_refusal(core, claim, refusal_message(class_name, unsupported,
                                                            supported))
                refused[uid] = time.monotonic()
                log.info("refused %s/%s: %s not supported", claim["metadata"]["namespace"],
                         claim["metadata"]["name"], ", ".join(unsupported))
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
    for uid in set(refused) - waiting:  # bound, deleted or replaced since
        del refused[uid]
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
    refused: dict[str, float] = {}
    while not stopping:
        try:
            reconcile_once(core, args.root, refused)
        except Exception:  # keep serving: the apiserver may be restarting
            log.exception("reconcile failed")
        time.sleep(1.0)


if __name__ == "__main__":
    main()
