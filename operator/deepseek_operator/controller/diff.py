"""Decide whether a live object already matches its desired state, without any API call.

Server-side apply of an unchanged object is still a write request, so the reconciler asks
first: does every field we want appear, with the same value, in the live object? Fields the
API server or another controller added (defaults, status, other managers' fields) are
ignored. Lists of named objects (containers, env, volumes, ports) are keyed by name, as
server-side apply merges them: each wanted element must be there as wanted, and an element
another field manager added stays its own (an apply would not remove it, so counting it as
drift would apply again and again). Other lists (args, command) must match element for
element.

Some lists of named objects are atomic for the API (a RoleBinding's ``subjects``): an
apply replaces them whole, so there an extra live element is drift (a subject removed from
the spec, or added by hand, still has access) and they must match element for element.

The other direction matters too: a field the operator applied before and no longer wants
(the owner reference of a cache that is now retained, `replicas` once an HPA owns them)
stays until an apply without it releases it. ``removed_fields`` finds those from the
object's managedFields entry of our field manager.
"""

from __future__ import annotations

from typing import Any

from deepseek_operator.controller.quantity import same_quantity

_ATOMIC_LISTS = frozenset({"subjects"})
"""Keys of lists of named objects that the API replaces whole (RoleBinding.subjects has no
list-map keys in the RBAC schema)."""


def _same_list(desired: list[Any], live: Any) -> bool:
    """Element for element: same length, each desired element contained in the live one."""
    return (isinstance(live, list) and len(desired) == len(live)
            and all(is_subset(d, v) for d, v in zip(desired, live, strict=True)))


def _named(items: list[Any]) -> bool:
    """True for a non-empty list of objects that all have a ``name`` (an associative list
    keyed by name for server-side apply)."""
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _by_name(live: list[Any]) -> dict[Any, Any]:
    return {i.get("name"): i for i in live if isinstance(i, dict)}


def is_subset(desired: Any, live: Any) -> bool:
    """True when ``desired`` is contained in ``live``.

    Dicts: every desired key is in live with a contained value. Lists of named objects:
    every desired element contained in the live element of the same name (atomic ones,
    ``_ATOMIC_LISTS``, element for element). Other lists:
    same length and each element contained in the element at the same index. Scalars:
    equal, where a quantity string (``"100Gi"``, ``"1000m"``) equals its canonical form as
    the API server writes it.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and (_same_list(value, live[key])
                             if key in _ATOMIC_LISTS and isinstance(value, list)
                             else is_subset(value, live[key]))
            for key, value in desired.items())
    if isinstance(desired, list) and _named(desired):
        named = _by_name(live) if isinstance(live, list) else {}
        return isinstance(live, list) and all(
            d["name"] in named and is_subset(d, named[d["name"]]) for d in desired)
    if isinstance(desired, list):
        return _same_list(desired, live)
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
            elif key in _ATOMIC_LISTS and isinstance(value, list):
                out.extend([] if _same_list(value, live[key]) else [sub])
            else:
                out.extend(differences(value, live[key], sub))
        return out
    if isinstance(desired, list) and _named(desired):
        if not isinstance(live, list):
            return [path]
        named = _by_name(live)
        out = []
        for i, d in enumerate(desired):
            if d["name"] not in named:
                out.append(f"{path}[{i}]")
            else:
                out.extend(differences(d, named[d["name"]], f"{path}[{i}]"))
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
