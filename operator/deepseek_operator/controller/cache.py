"""What the operator has seen of its children, kept current from watch streams.

controller-runtime serves every read from informer caches fed by watches; this is the same
shape for kopf. kopf index handlers (controller/handlers.py) put every object of a child
kind (and the pods, and the StorageClasses) here as its watch delivers it, and the
deletion events take it out again. kopf runs index handlers for the initial listing of
every watched kind before any other handler, so a reconcile never sees a half-filled
cache. Objects are grouped by their owner, the ``deepseek-operator.io/deployment`` label,
so a reconcile's reads cost the same however many other objects its namespace holds.

The executor also stores what the API returned for each write: a reconcile that wrote
sees its own writes without waiting for the watch event (which may come later and
carries the same or a newer state).

Only what a reconcile reads is kept, as compressed compact JSON: the managedFields
entries of other field managers and kubectl's last-applied annotation are dropped
(together about half of a typical object), and the rest, compressed, takes a small
fraction of the memory of parsed dicts, which keeps the cache small with thousands of
children.

Thread-safe: kopf runs the index handlers, and the Reconciler reads, in worker threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepseek_operator.controller.packed import pack, unpack
from deepseek_operator.controller.plan import FIELD_MANAGER, ObjectKey
from deepseek_operator.render import DEPLOYMENT_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE

Owner = tuple[str, str]  # (namespace, DeepSeekDeployment name)


def owner_of(obj: Mapping[str, Any]) -> Owner | None:
    """The (namespace, name) of the DeepSeekDeployment an object belongs to, by the labels
    the operator stamps (``children_selector``); None for an object without them."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = labels.get(DEPLOYMENT_LABEL)
    if not name or labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
        return None
    return meta.get("namespace") or "", name


_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _packed(obj: Mapping[str, Any]) -> bytes:
    """``obj`` as zlib-compressed compact JSON, without what no reconcile reads: other
    field managers' managedFields entries (the plan reads only the operator's,
    controller/diff.py) and kubectl's last-applied-configuration annotation.

    Children are kept as compressed text, not dicts: a parsed object takes several times
    its JSON size in Python objects (about 30 KiB for a Deployment), and every read copied
    it anyway; ``json.loads`` makes that copy faster than ``copy.deepcopy`` did. zlib at
    its fastest level shrinks the JSON of a child several-fold (repeated keys and labels)
    and costs microseconds per read.
    """
    meta = dict(obj.get("metadata") or {})
    if meta.get("managedFields"):
        meta["managedFields"] = [entry for entry in meta["managedFields"]
                                 if entry.get("manager") == FIELD_MANAGER]
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping) and _LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != _LAST_APPLIED}
    return pack({**obj, "metadata": meta})


@dataclass
class ChildCache:
    """Children (every kind the operator owns, and pods) by owner; the owner references of
    every object of a child kind; StorageClass names and provisioners."""

    _by_owner: dict[Owner, dict[ObjectKey, bytes]] = field(default_factory=dict)  # _packed
    _owners: dict[ObjectKey, Owner] = field(default_factory=dict)
    # Every object of a child kind, ours or not, with the uids of its owner references: a
    # name the operator is about to create may be taken by an object it does not own.
    _owner_uids: dict[ObjectKey, frozenset[str]] = field(default_factory=dict)
    _storage_classes: dict[str, str] = field(default_factory=dict)  # name: provisioner
    # Objects that are in the way of a child (NameConflict), and whose child they block.
    _waiting: dict[ObjectKey, Owner] = field(default_factory=dict)
    _stored_at: dict[ObjectKey, float] = field(default_factory=dict)  # time.monotonic()
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self, obj: Mapping[str, Any]) -> None:
        """Keep ``obj`` (a dict with apiVersion, kind and metadata) as the latest state of
        its object. An object without the operator's labels (or whose labels were removed
        since) is not a child: it is dropped."""
        key = ObjectKey.of(obj)
        uids = frozenset(str(ref.get("uid", "")) for ref in
                         (obj.get("metadata") or {}).get("ownerReferences") or [])
        if key.kind != "Pod":
            with self._lock:
                self._owner_uids[key] = uids
        owner = owner_of(obj)
        if owner is None:
            with self._lock:
                previous = self._owners.pop(key, None)
                if previous is not None:
                    self._drop(previous, key)
            return
        kept = _packed(obj)
        with self._lock:
            self._stored_at[key] = time.monotonic()
            previous = self._owners.get(key)
            if previous is not None and previous != owner:  # its label was changed
                self._drop(previous, key)
            self._by_owner.setdefault(owner, {})[key] = kept
            self._owners[key] = owner

    def forget(self, obj: Mapping[str, Any]) -> Owner | None:
        """Drop a deleted object (by its key; a missing one is fine). Returns the owner
        that waited for it to go (``wait_for_name``), if any."""
        key = ObjectKey.of(obj)
        self.forget_key(key)
        with self._lock:
            return self._waiting.pop(key, None)

    def wait_for_name(self, key: ObjectKey, owner: Owner) -> None:
        """Note that the object ``key`` (not a child) blocks a child of ``owner``: its
        deletion is reported by ``forget``, so that owner reconciles at once."""
        with self._lock:
            self._waiting[key] = owner

    def forget_key(self, key: ObjectKey) -> None:
        """Drop one object by key (deleted; a missing one is fine)."""
        with self._lock:
            self._owner_uids.pop(key, None)
            self._stored_at.pop(key, None)
            owner = self._owners.pop(key, None)
            if owner is not None:
                self._drop(owner, key)

    def _drop(self, owner: Owner, key: ObjectKey) -> None:
        children = self._by_owner.get(owner)
        if children is not None:
            children.pop(key, None)
            if not children:
                del self._by_owner[owner]

    def children(self, owner: Owner, kinds: frozenset[str] | None = None,
                 labels: Mapping[str, str] | None = None) -> dict[ObjectKey, dict[str, Any]]:
        """Copies of the objects of ``owner``, by key: all of them, or those of ``kinds``
        whose labels include ``labels``."""
        with self._lock:
            found = list((self._by_owner.get(owner) or {}).items())
        out = {}
        for key, packed in found:
            if kinds is not None and key.kind not in kinds:
                continue
            obj: dict[str, Any] = unpack(packed)
            have = (obj.get("metadata") or {}).get("labels") or {}
            if labels and any(have.get(k) != v for k, v in labels.items()):
                continue
            out[key] = obj
        return out

    def purge(self, kind: str, present: set[ObjectKey], listed_at: float) -> set[Owner]:
        """Drop the children of ``kind`` that a fresh list (``present``: every key it
        returned; ``listed_at``: time.monotonic() when the list was requested) did not
        return and that were stored before it: objects deleted while a watch was down
        (after a 410 Gone, kopf lists again but sends no DELETED events). Children stored
        since arrived through the watch and are kept. Returns the owners that lost one."""
        lost: set[Owner] = set()
        with self._lock:
            stale = [key for key, owner in self._owners.items()
                     if key.kind == kind and key not in present
                     and self._stored_at.get(key, 0.0) < listed_at]
            for key in stale:
                owner = self._owners.pop(key)
                self._owner_uids.pop(key, None)
                self._stored_at.pop(key, None)
                self._drop(owner, key)
                lost.add(owner)
        return lost

    def owner_uids(self, key: ObjectKey) -> frozenset[str] | None:
        """The owner-reference uids of the object ``key`` (any object of a child kind, not
        only the operator's), or None when no such object exists."""
        with self._lock:
            return self._owner_uids.get(key)

    def owners(self) -> int:
        """How many owners have objects here (for the operator's metrics)."""
        with self._lock:
            return len(self._by_owner)

    def store_storage_class(self, name: str, provisioner: str = "") -> None:
        """Note a StorageClass that exists, and its provisioner ("" when not known)."""
        with self._lock:
            self._storage_classes[name] = provisioner

    def forget_storage_class(self, name: str) -> None:
        """Note a StorageClass that was deleted."""
        with self._lock:
            self._storage_classes.pop(name, None)

    def storage_class_exists(self, name: str) -> bool:
        """True when a StorageClass of this name was seen and not deleted since."""
        with self._lock:
            return name in self._storage_classes

    def storage_provisioner(self, name: str) -> str:
        """The provisioner of the StorageClass ``name``, "" when unknown or absent."""
        with self._lock:
            return self._storage_classes.get(name, "")
