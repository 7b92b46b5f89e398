"""Which DeepSeekDeployment a request's `model` names, and what the gateway needs of it.

Pure: `Target.from_object` reads a DeepSeekDeployment as the apiserver returns it (through
the api layer's parser, so defaults are the CRD's), `RouteTable` maps served model names to
targets. The watch that fills the table is in `watch.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..api import DeepSeekDeployment, InvalidSpecError, parse_deployment
from .engine_auth import KeyRef

QUERY_PERMISSION = "model:query"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class Grant:
    """One spec.access binding of a role holding model:query: who it names."""

    role: str
    users: frozenset[str]
    groups: frozenset[str]


@dataclass(frozen=True)
class Target:
    """A DeepSeekDeployment as the gateway routes to it."""

    namespace: str
    name: str
    served_name: str
    port: int
    ready_replicas: int
    max_concurrent_sequences: int
    grants: tuple[Grant, ...] = ()
    api_key: KeyRef | None = None  # spec.engine.apiKeySecret: the engine wants this key

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name)."""
        return (self.namespace, self.name)

    @property
    def capacity(self) -> int:
        """Requests the ready replicas take at once: readyReplicas x maxConcurrentSequences
        (0 while no replica is ready)."""
        return self.ready_replicas * self.max_concurrent_sequences

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Target:
        """Read a DeepSeekDeployment dict (from a list or watch).

        Raises:
            InvalidSpecError: the object does not parse as the API defines it.
        """
        dsd = parse_deployment(obj)
        status = obj.get("status") or {}
        ready = status.get("readyReplicas") if isinstance(status, Mapping) else None
        return cls(
            namespace=dsd.metadata.namespace,
            name=dsd.metadata.name,
            served_name=dsd.spec.model.served_name or dsd.spec.model.name,
            port=dsd.spec.service.port,
            ready_replicas=ready if isinstance(ready, int) and ready > 0 else 0,
            max_concurrent_sequences=dsd.spec.gpu.max_concurrent_sequences,
            grants=query_grants(dsd),
            api_key=(KeyRef(key.name, key.key)
                     if (key := dsd.spec.engine.api_key_secret) is not None else None),
        )


def reconciled(obj: Mapping[str, Any]) -> bool:
    """Whether the operator reconciled the object's current spec without a stall:
    status.observedGeneration equals metadata.generation and condition Stalled is not True.

    A refused spec change (Stalled, e.g. InvalidSpec) leaves the old engine serving, so its
    spec then does not describe what serves; neither does a spec the operator has not seen.
    """
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if not isinstance(metadata, Mapping) or not isinstance(status, Mapping):
        return False
    generation = metadata.get("generation")
    observed = status.get("observedGeneration")
    if not isinstance(generation, int) or observed != generation:
        return False
    conditions = status.get("conditions") or []
    if not isinstance(conditions, list):
        return False
    return not any(isinstance(c, Mapping) and c.get("type") == "Stalled"
                   and c.get("status") == "True" for c in conditions)


def query_grants(dsd: DeepSeekDeployment) -> tuple[Grant, ...]:
    """The bindings of spec.access whose role holds model:query, in spec order, with their
    subjects as the authenticator names them (a ServiceAccount as
    `system:serviceaccount:NS:NAME`, its namespace defaulting to the deployment's)."""
    grants = []
    for binding in dsd.spec.access.bindings:
        if QUERY_PERMISSION not in dsd.spec.access.roles.get(binding.role, []):
            continue
        users = set()
        groups = set()
        for subject in binding.subjects:
            if subject.kind == "User":
                users.add(subject.name)
            elif subject.kind == "Group":
                groups.add(subject.name)
            else:
                namespace = subject.namespace or dsd.metadata.namespace
                users.add(f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{subject.name}")
        grants.append(Grant(binding.role, frozenset(users), frozenset(groups)))
    return tuple(grants)


def granting_role(target: Target, user: str, groups: Iterable[str]) -> str | None:
    """The first spec.access role holding model:query that names `user` or one of
    `groups`, or None (the permission then comes from RBAC the operator did not render,
    e.g. a cluster-wide role)."""
    group_set = set(groups)
    for grant in target.grants:
        if user in grant.users or group_set & grant.groups:
            return grant.role
    return None


class RouteTable:
    """The DeepSeekDeployments in reach, by (namespace, name) and by served model name.

    Not thread-safe: the watch thread hands changes to the event loop, which alone writes
    and reads it.
    """

    def __init__(self) -> None:
        self._targets: dict[tuple[str, str], Target] = {}
        self._by_model: dict[str, set[tuple[str, str]]] = {}

    def __len__(self) -> int:
        return len(self._targets)

    def upsert(self, target: Target) -> Target | None:
        """Add or replace `target`; return the version it replaced, if any."""
        old = self._targets.get(target.key)
        if old is not None:
            self._forget_model(old)
        self._targets[target.key] = target
        self._by_model.setdefault(target.served_name, set()).add(target.key)
        return old

    def remove(self, namespace: str, name: str) -> Target | None:
        """Drop a deployment; return what was dropped, if anything."""
        old = self._targets.pop((namespace, name), None)
        if old is not None:
            self._forget_model(old)
        return old

    def replace_all(self, targets: Iterable[Target]) -> None:
        """Make the table exactly `targets` (after a relist)."""
        self._targets.clear()
        self._by_model.clear()
        for target in targets:
            self.upsert(target)

    def get(self, namespace: str, name: str) -> Target | None:
        """The deployment `namespace/name`, if in reach."""
        return self._targets.get((namespace, name))

    def candidates(self, model: str) -> list[Target]:
        """Every deployment serving `model` under that name, sorted by namespace and name
        (more than one is a conflict the caller must report, never a coin toss)."""
        return sorted((self._targets[key] for key in self._by_model.get(model, ())),
                      key=lambda t: t.key)

    def all(self) -> list[Target]:
        """Every deployment, sorted by served name, namespace and name."""
        return sorted(self._targets.values(), key=lambda t: (t.served_name, *t.key))

    def _forget_model(self, target: Target) -> None:
        keys = self._by_model.get(target.served_name)
        if keys is not None:
            keys.discard(target.key)
            if not keys:
                del self._by_model[target.served_name]


__all__ = ["Grant", "InvalidSpecError", "RouteTable", "Target", "granting_role",
           "query_grants", "reconciled"]
