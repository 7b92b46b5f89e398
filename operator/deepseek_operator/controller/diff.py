"""Decide whether a live object already matches its desired state, without any API call.

Server-side apply of an unchanged object is still a write request, so the reconciler asks
first: does every field we want appear, with the same value, in the live object? Fields the
API server or another controller added (defaults, status, other managers' fields) are
ignored. Lists must match element for element, because we own whole lists (containers,
args, env) and an extra element added by hand is drift.

The other direction matters too: a field the operator applied before and no longer wants
(the owner reference of a cache that is now retained, `replicas` once an HPA owns them)
stays until an apply without it releases it. ``removed_fields`` finds those from the
object's managedFields entry of our field manager.
"""

from __future__ import annotations

from typing import Any

from deepseek_operator.controller.quantity import same_quantity


def is_subset(desired: Any, live: Any) -> bool:
    """True when ``desired`` is contained in ``live``.

    Dicts: every desired key is in live with a contained value. Lists: same length and each
    element contained in the element at the same index. Scalars: equal, where a quantity
    string (``"100Gi"``, ``"1000m"``) equals its canonical form as the API server writes it.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and is_subset(value, live[key]) for key, value in desired.items())
    if isinstance(desired, list):
        return (isinstance(live, list) and len(desired) == len(live)
                and all(is_subset(d, v) for d, v in zip(desired, live, strict=True)))
    if desired == live:
        return True
    return isinstance(desired, str) and isinstance(live, str) and same_quantity(desired, live)


def differences(desired: Any, live: Any, path: str = "") -> list[str]:
    """Paths (``spec.template.spec.containers[0].image``) where live differs from desired.

    Used to say in logs and events what drifted; empty exactly when ``is_subset`` is True.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [path or "."]
        out: list[str] = []
        for key, value in desired.items():
            sub = f"{path}.{key}" if path else key
            if key not in live:
                out.append(sub)
            else:
                out.extend(differences(value, live[key], sub))
        return out
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return [path]
        out = []
        for i, (d, v) in enumerate(zip(desired, live, strict=True)):
            out.extend(differences(d, v, f"{path}[{i}]"))
        return out
    return [] if is_subset(desired, live) else [path]


def owned_fields(live: dict[str, Any], field_manager: str) -> dict[str, Any]:
    """The fieldsV1 tree that ``field_manager`` owns by server-side apply in ``live``."""
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == field_manager and entry.get("operation") == "Apply":
            fields = entry.get("fieldsV1") or entry.get("fields_v1") or {}
            return dict(fields)
    return {}


def removed_fields(desired: dict[str, Any], owned: dict[str, Any], path: str = "") -> list[str]:
    """Paths of fields in ``owned`` (a fieldsV1 tree) that ``desired`` no longer sets.

    Only map fields (``f:name``) are followed; list entries (``k:``, ``v:``, ``i:``) are
    left to ``is_subset``, which compares lists whole.
    """
    out: list[str] = []
    for key, sub in owned.items():
        if not key.startswith("f:"):
            continue
        name = key[2:]
        sub_path = f"{path}.{name}" if path else name
        if name not in desired:
            out.append(sub_path)
        elif isinstance(desired[name], dict) and isinstance(sub, dict):
            out.extend(removed_fields(desired[name], sub, sub_path))
    return out
