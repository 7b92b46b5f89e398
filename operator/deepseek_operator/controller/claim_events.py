"""Why a model-cache claim stays Pending, in the provisioner's own words (pure).

A claim that does not bind says nothing about it in its own status: the reason is in the
Events posted about it (``kubectl describe pvc``): the PV controller's
``ExternalProvisioning`` (waiting for an external provisioner) and ``WaitForFirstConsumer``,
and the provisioner's ``ProvisioningFailed`` with its error. ``pending_claim_message``
turns those Events (core/v1 dicts, as ``Cluster.claim_events`` reads them) into the
StorageReady message, with a hint when the claim asks for ReadWriteMany, which most
default StorageClasses of cloud clusters cannot provision.

Event text is written by other components and may carry anything they put in an error
(a URL with credentials, a token in a driver's request dump): ``sanitize`` drops control
characters, masks what looks like a secret, and bounds the length, and only the newest
few distinct reasons are shown. Counts and timestamps are left out, so a repeated Event
does not change the message (and so writes no status).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from deepseek_operator.controller.cache import owner_of

MAX_REASONS: Final = 3
"""Distinct Event reasons shown at most (the newest; warnings when there are any)."""
MAX_EVENT_CHARS: Final = 300
"""Characters kept of one Event's message."""

# Provisioners whose volumes one node mounts at a time (ReadWriteOnce, ReadWriteOncePod;
# some also ReadOnlyMany). Sources: the access modes each driver's documentation lists
# (AWS EBS CSI driver, GCE PD CSI driver, Azure Disk CSI driver, Rancher local-path
# provisioner, OpenStack Cinder CSI, DigitalOcean CSI) and the in-tree plugins they replaced.
SINGLE_NODE_PROVISIONERS: Final = frozenset({
    "ebs.csi.aws.com", "kubernetes.io/aws-ebs",
    "pd.csi.storage.gke.io", "kubernetes.io/gce-pd",
    "disk.csi.azure.com", "kubernetes.io/azure-disk",
    "rancher.io/local-path",
    "cinder.csi.openstack.org", "kubernetes.io/cinder",
    "dobs.csi.digitalocean.com",
})
RWX_EXAMPLES: Final = "AWS EFS, GKE Filestore, Azure Files, NFS or CephFS"
"""Examples of classes that provision ReadWriteMany, for hints."""

# Reasons the PV controller and provisioners post on a claim that says why it waits.
_WAITING_REASONS: Final = frozenset({"ExternalProvisioning", "WaitForFirstConsumer",
                                     "Provisioning", "WaitForPodScheduled",
                                     "FailedBinding"})

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b([\w.-]*(?:password|passwd|secret|token|apikey|api[_-]key|access[_-]?key|"
    r"credential|authorization|auth)[\w.-]*)([\"']?\s*[=:]\s*[\"']?)"
    r"(?:bearer\s+|basic\s+)?[^\s,;\"'})\]]+")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[a-z0-9._~+/=-]{8,}")
# Long unbroken runs of key-like characters (tokens, keys, signatures); resource names
# with dashes, uids (8-4-4-4-12) and paths are shorter between separators.
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_OPAQUE = re.compile(r"(?<![\w/.-])[A-Za-z0-9+/_=]{32,}(?![\w/.-])")
REDACTED: Final = "[redacted]"


def sanitize(text: str, limit: int = MAX_EVENT_CHARS) -> str:
    """``text`` (an Event message) made safe to copy into a status: control characters
    and line breaks become spaces, runs of whitespace one space; URL credentials,
    ``key=value`` pairs whose key names a secret, bearer/basic credentials, AWS access
    key ids and long key-like strings become ``[redacted]``; at most ``limit``
    characters (a cut one ends with ``...``)."""
    text = _CONTROL.sub(" ", text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _AWS_KEY_ID.sub(REDACTED, text)
    text = _OPAQUE.sub(REDACTED, text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _when(event: Mapping[str, Any]) -> str:
    """The Event's latest time as RFC 3339 text (sorts as time), "" when it has none."""
    series = event.get("series") or {}
    return str(series.get("lastObservedTime") or event.get("lastTimestamp")
               or event.get("eventTime") or (event.get("metadata") or {}).get(
                   "creationTimestamp") or "")


def claim_reasons(events: Iterable[Mapping[str, Any]], claim_uid: str = "") -> list[
        tuple[str, str, str]]:
    """The distinct reasons of the Events about a claim, as (type, reason, sanitized
    message), newest first: the warnings when there are any (a failure says more than the
    PV controller's "waiting for the provisioner"), else the waiting reasons; at most
    MAX_REASONS. Events of another
    object (another uid, when ``claim_uid`` is given) are skipped; of one reason only the
    newest counts."""
    mine = [e for e in events if not claim_uid
            or (e.get("involvedObject") or {}).get("uid") in (None, "", claim_uid)]
    mine.sort(key=_when, reverse=True)
    seen: dict[str, tuple[str, str, str]] = {}
    for event in mine:
        reason = sanitize(str(event.get("reason") or ""), 64)
        if not reason or reason in seen:
            continue
        if event.get("type") != "Warning" and reason not in _WAITING_REASONS:
            continue
        seen[reason] = (str(event.get("type") or "Normal"), reason,
                        sanitize(str(event.get("note") or event.get("message") or "")))
    warnings = [t for t in seen.values() if t[0] == "Warning"]
    return (warnings or list(seen.values()))[:MAX_REASONS]


def access_mode_hint(access_modes: Iterable[str], storage_class: str, provisioner: str,
                     failed: bool, operators_claim: bool = True) -> str:
    """What to do when a ReadWriteMany claim does not bind, or "" when no hint fits (the
    claim does not ask for ReadWriteMany, or neither a failure was reported nor the
    class's provisioner is known to provision single-node volumes only).

    ``storage_class``: the claim's class ("" when none); ``provisioner``: that class's
    provisioner ("" when unknown); ``failed``: a Warning Event was posted on the claim;
    ``operators_claim``: the operator made the claim from spec.storage (else it was given,
    by spec.storage.existingClaim or a pvc:// uri, and is never changed by the operator)."""
    if "ReadWriteMany" not in set(access_modes):
        return ""
    single_node = provisioner in SINGLE_NODE_PROVISIONERS
    if not (failed or single_node):
        return ""
    named = f'StorageClass "{storage_class}"' if storage_class else "the default StorageClass"
    if single_node:
        why = (f"{named} (provisioner {provisioner}) provisions ReadWriteOnce volumes only, "
               "and the claim asks for ReadWriteMany")
    else:
        why = f"{named} may not support ReadWriteMany, which the claim asks for"
    if not operators_claim:
        return (f"{why}: the claim is given (spec.storage.existingClaim or a pvc:// uri), so "
                "the operator does not change it: give a claim of a class that provisions "
                f"ReadWriteMany ({RWX_EXAMPLES}), or a ReadWriteOnce claim for one replica")
    return (f"{why}: set spec.storage.accessMode ReadWriteOnce with replicas 1 and "
            "autoscaling.maxReplicas 1 (or autoscaling.mode none): one pod mounts the "
            "cache; or set spec.storage.storageClassName to a class that provisions "
            f"ReadWriteMany ({RWX_EXAMPLES}). The claim never bound, so it holds no data: "
            "the operator replaces it as the spec asks")


def pending_claim_message(claim: Mapping[str, Any], events: Sequence[Mapping[str, Any]] | None,
                          events_error: str = "", provisioner: str = "") -> str:
    """The StorageReady message of a claim that is not Bound.

    ``claim``: the PersistentVolumeClaim (dict); ``events``: the Events about it (None when
    not read), ``events_error``: why they could not be read; ``provisioner``: the
    provisioner of the claim's StorageClass, "" when unknown. Shape: ``PersistentVolumeClaim
    NAME is PHASE: REASON: MESSAGE; REASON: MESSAGE. HINT``."""
    meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
    phase = (claim.get("status") or {}).get("phase") or "Pending"
    text = f"PersistentVolumeClaim {meta.get('name', '')} is {phase}"
    reasons = claim_reasons(events or [], str(meta.get("uid") or ""))
    if reasons:
        text += ": " + "; ".join(f"{reason}: {message.rstrip('.')}" if message else reason
                                 for _, reason, message in reasons)
    elif events_error:
        text += f" (its events could not be read: {sanitize(events_error, 120)})"
    elif events is not None:
        text += ": no events about it yet (kubectl describe pvc shows them when they come)"
    hint = access_mode_hint(spec.get("accessModes") or [], str(spec.get("storageClassName")
                            or ""), provisioner, any(t == "Warning" for t, _, _ in reasons),
                            operators_claim=owner_of(claim) is not None)
    if hint:
        text += f". {hint[0].upper()}{hint[1:]}"
    return text
