"""Plan a reconcile: from desired and observed children, what to apply and what to delete.

Pure: takes plain dicts, returns a Plan. The executor (``controller.cluster``) is the only
place that calls the API, so "a no-op reconcile makes zero writes" is a property of this
function that unit tests can check (see tests/test_plan.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deepseek_operator.api import GROUP, KIND
from deepseek_operator.controller.diff import differences, owned_fields, removed_fields

FIELD_MANAGER = "deepseek-operator"
"""The operator's field manager: server-side apply of children and status writes."""

HANDOVER_FIELD_MANAGER = "deepseek-operator-handover"
"""Holds a workload's ``spec.replicas`` at its live value when the operator stops setting
it (``autoscaling.mode`` became ``hpa`` or ``keda``): a field its last manager releases is
reset to its default (1) by server-side apply, which would take serving replicas down
before the HPA acts. This is the handover the Kubernetes documentation gives for passing
``replicas`` to an HPA ("Server-Side Apply", "Transferring ownership")."""


@dataclass(frozen=True, order=True)
class ObjectKey:
    """Identity of a Kubernetes object: apiVersion, kind, namespace ("" if cluster-scoped), name."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectKey:
        """Key of an object dict (``apiVersion``, ``kind``, ``metadata.namespace|name``)."""
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else (
            f"{self.kind} {self.name}")


@dataclass(frozen=True)
class Change:
    """One object to apply and why: ``created`` or the paths that drifted."""

    desired: dict[str, Any]
    created: bool
    drifted: tuple[str, ...] = ()
    # Applied first, by HANDOVER_FIELD_MANAGER: the workload's live spec.replicas, when
    # ``desired`` stops setting it (see HANDOVER_FIELD_MANAGER).
    handover: dict[str, Any] | None = None

    @property
    def key(self) -> ObjectKey:
        """Key of the object to apply."""
        return ObjectKey.of(self.desired)


@dataclass(frozen=True)
class Plan:
    """Writes a reconcile has to make; empty when the cluster already matches."""

    apply: tuple[Change, ...] = ()
    delete: tuple[ObjectKey, ...] = ()
    unchanged: tuple[ObjectKey, ...] = field(default=())

    @property
    def empty(self) -> bool:
        """True when nothing is to be written."""
        return not self.apply and not self.delete


def controlled_elsewhere(live: Mapping[str, Any]) -> bool:
    """True when ``live`` has a controller owner reference to something other than a
    DeepSeekDeployment: an object another controller made and copied our labels onto,
    e.g. the HorizontalPodAutoscaler KEDA makes from a ScaledObject (KEDA copies the
    ScaledObject's labels to it, kedacore/keda controllers/keda/hpa.go). It is not ours
    to delete."""
    refs = (live.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("controller") and (
        ref.get("kind") != KIND or str(ref.get("apiVersion", "")).split("/")[0] != GROUP)
        for ref in refs)


def calculate_plan(desired: Iterable[dict[str, Any]],
                   observed: Mapping[ObjectKey, dict[str, Any]],
                   keep: Iterable[ObjectKey] = (), field_manager: str = "") -> Plan:
    """Compare desired children with the observed ones (listed by the operator's labels).

    ``desired``: rendered objects. ``observed``: live children by key. ``keep``: observed
    children that must survive even though not desired (a retained model cache).
    Returns a Plan: apply what is missing or differs (see ``diff.is_subset``); delete what
    is observed, labelled as ours, but no longer desired (e.g. the HPA after
    ``autoscaling.mode`` changed), unless another controller owns it
    (``controlled_elsewhere``). With ``field_manager``, a live object that still holds
    fields this manager applied before but no longer wants is applied again (to release
    them).
    """
    changes: list[Change] = []
    unchanged: list[ObjectKey] = []
    wanted: set[ObjectKey] = set()
    for obj in desired:
        key = ObjectKey.of(obj)
        wanted.add(key)
        live = observed.get(key)
        if live is None:
            changes.append(Change(obj, created=True))
            continue
        drift = differences(obj, live)
        released = removed_fields(obj, owned_fields(live, field_manager)) if field_manager \
            else []
        drift += [f"{p} (no longer wanted)" for p in released]
        if drift:
            changes.append(Change(obj, created=False, drifted=tuple(drift),
                                  handover=_replicas_handover(live, released)))
        else:
            unchanged.append(key)
    kept = set(keep)
    stale = sorted(k for k, live in observed.items()
                   if k not in wanted and k not in kept and not controlled_elsewhere(live))
    return Plan(apply=tuple(changes), delete=tuple(stale), unchanged=tuple(unchanged))


def _replicas_handover(live: Mapping[str, Any], released: list[str]) -> dict[str, Any] | None:
    """The apply that keeps ``live``'s spec.replicas when the operator releases it
    (``released``: paths it no longer sets), else None."""
    replicas = (live.get("spec") or {}).get("replicas")
    if "spec.replicas" not in released or replicas is None:
        return None
    meta = live["metadata"]
    return {"apiVersion": live["apiVersion"], "kind": live["kind"],
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "")},
            "spec": {"replicas": replicas}}
