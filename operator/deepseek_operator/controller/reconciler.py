"""The Reconciler: reconciles and autoscaler evaluations one at a time per
DeepSeekDeployment; the operator's one writer of ``.status``; Events posted.

kopf calls sync handlers from a thread pool, and one DeepSeekDeployment is reconciled from
several triggers (its own create/update/resume, the safety timer, events of its children).
A per-object lock serialises them and the autoscaler's evaluations. A trigger marks the
object dirty, then takes the lock if it is free; whoever holds the lock (a reconcile or an
evaluation) reconciles once more with a fresh read when it finds the object dirty after
letting go. So no trigger is lost, and bursts of child events collapse into one or two
reconciles instead of a queue.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deepseek_operator.api.conditions import rfc3339
from deepseek_operator.api.errors import InvalidSpecError
from deepseek_operator.api.resource import parse_deployment
from deepseek_operator.autoscaler.loop import Autoscaler, Tick
from deepseek_operator.controller import metrics
from deepseek_operator.controller.cluster import Cluster
from deepseek_operator.controller.debounce import Debouncer
from deepseek_operator.controller.diff import is_subset
from deepseek_operator.controller.packed import pack, unpack
from deepseek_operator.controller.reconcile import Outcome, reconcile
from deepseek_operator.render import RenderSettings

Key = tuple[str, str]
EventSink = Callable[[Mapping[str, Any], str, str, str], None]


# After the operator wrote an object's status, its watch copy (kopf's body, or the latest
# one remembered) is older than that write until the watch delivers the write's
# resourceVersion: until then a copy that does not show the write is replaced by what the
# write returned (or read from the API). A stale copy would compute the same transition
# again (a second status write and Event) and render the autoscaler's previous replica
# count. A watch that restarted (410 Gone) may skip that version: after this long the
# copy is taken as it is.
WRITE_SEEN_TIMEOUT_SECONDS = 60.0
SEEN_VERSIONS_KEPT = 4
# Status changes that are progress on the way (not a new generation, Ready, Stalled or a
# failure: reconcile.status_urgent) are coalesced: the first is written at least this
# long after the previous write, each further one PROGRESS_BACKOFF times longer than the
# one before (at most PROGRESS_WRITE_MAX_SECONDS), until an urgent write starts over. One
# change waiting is written by a reconcile at the end of the interval. Creating a
# deployment then costs three status writes (the first, one progress, Ready) when it
# takes under 40 s, and one more write per tripled interval when a busy cluster makes
# it slower, instead of one per step. A Ready deployment's progress (replica counts while
# it scales) is written PROGRESS_WRITE_SECONDS after the previous write, without backoff.
PROGRESS_WRITE_SECONDS = 10.0
PROGRESS_BACKOFF = 3.0
PROGRESS_WRITE_MAX_SECONDS = 60.0


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    dirty: bool = False
    written_at: float = float("-inf")  # time.monotonic() of our last status write
    written_patch: dict[str, Any] = field(default_factory=dict)  # what it wrote
    written_object: dict[str, Any] | None = None  # the object the API returned for it
    written_version: str = ""  # its resourceVersion
    write_seen: bool = False  # the watch delivered that resourceVersion
    # The latest resourceVersions the watch delivered: its event for a write may come
    # before the write's own response is handled.
    seen_versions: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=SEEN_VERSIONS_KEPT))
    progress_writes: int = 0  # coalesced status writes since the last urgent one

    def progress_interval(self) -> float:
        """Seconds the next coalesced (progress) status write waits after the last write."""
        return min(PROGRESS_WRITE_SECONDS * PROGRESS_BACKOFF ** self.progress_writes,
                   PROGRESS_WRITE_MAX_SECONDS)


def _beyond_status(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a DeepSeekDeployment, besides its status, a reconcile depends on."""
    meta = body["metadata"]
    return (meta.get("uid"), meta.get("generation"), meta.get("labels"),
            meta.get("annotations"), meta.get("deletionTimestamp"))


def claim_in_use(body: Mapping[str, Any]) -> str:
    """The claim a DeepSeekDeployment uses without owning it: spec.storage.existingClaim,
    else the claim of a ``pvc://CLAIM/PATH`` spec.model.uri; "" when it uses the cache
    claim the operator creates (a child: its events reconcile it already). Read from the
    raw object, which may be invalid (then whatever those fields hold)."""
    spec = body.get("spec") or {}
    storage, model = spec.get("storage") or {}, spec.get("model") or {}
    existing = storage.get("existingClaim") if isinstance(storage, Mapping) else None
    if isinstance(existing, str) and existing:
        return existing
    uri = model.get("uri") if isinstance(model, Mapping) else None
    if isinstance(uri, str) and uri.startswith("pvc://"):
        return next((part for part in uri[len("pvc://"):].split("/") if part), "")
    return ""


def _is_ready(body: Mapping[str, Any]) -> bool:
    """Whether the stored status of a DeepSeekDeployment says Ready=True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (body.get("status") or {}).get("conditions") or [])


def shows_status_patch(status: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> bool:
    """True when ``status`` (an object's ``.status``) already holds what the JSON merge
    patch ``patch`` wrote: every key set to None is absent, dicts hold the patch's keys,
    other values (lists are merge-patched whole) are contained (``diff.is_subset``)."""
    status = status or {}
    for key, value in patch.items():
        have = status.get(key)
        if value is None:
            if have is not None:
                return False
        elif isinstance(value, Mapping):
            if not shows_status_patch(have if isinstance(have, Mapping) else None, value):
                return False
        elif not is_subset(value, have):
            return False
    return True


@dataclass
class Reconciler:
    """Serialises reconciles and autoscaler evaluations per object; writes status.

    ``cluster``: the API reads and writes of the controller. ``autoscaler``: the operator's
    autoscaler (mode operator). ``post_event(body, type, reason, message)`` posts an Event
    on the custom resource (kopf.event in the operator; a list in tests). ``settings``:
    what rendering needs from the operator's configuration.
    """

    cluster: Cluster
    autoscaler: Autoscaler
    post_event: EventSink
    settings: RenderSettings
    _slots: dict[Key, _Slot] = field(default_factory=dict)
    _deferred: Debouncer = field(init=False)
    # The latest watched copy of each object, packed (compressed JSON: a parsed copy of
    # every DeepSeekDeployment would be most of the operator's memory with thousands),
    # and what of it besides status a reconcile depends on (``_beyond_status``).
    _latest: dict[Key, bytes] = field(default_factory=dict)
    _latest_marks: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    # Which deployment uses which claim it does not own (``claim_in_use``), so that the
    # events of that claim reconcile the deployment.
    _claims_in_use: dict[Key, str] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._deferred = Debouncer(self.trigger, delay_seconds=PROGRESS_WRITE_SECONDS,
                                   retry_seconds=PROGRESS_WRITE_SECONDS)

    def _slot(self, key: Key) -> _Slot:
        with self._guard:
            return self._slots.setdefault(key, _Slot())

    def managed_count(self) -> int:
        """Objects this reconciler has seen and not forgotten."""
        with self._guard:
            return len(self._slots)

    def forget(self, namespace: str, name: str) -> None:
        """Drop the bookkeeping of a deleted object."""
        with self._guard:
            self._slots.pop((namespace, name), None)
            self._latest.pop((namespace, name), None)
            self._latest_marks.pop((namespace, name), None)
            self._claims_in_use.pop((namespace, name), None)
        self.autoscaler.forget(namespace, name)
        metrics.forget_deployment(namespace, name)

    def latest_copies(self) -> list[dict[str, Any]]:
        """The latest watched copy of every DeepSeekDeployment held (for the metrics)."""
        with self._guard:
            packed = list(self._latest.values())
        return [unpack(item) for item in packed]

    def known(self) -> list[Key]:
        """(namespace, name) of every DeepSeekDeployment seen and not forgotten."""
        with self._guard:
            return sorted(set(self._slots) | set(self._latest))

    def users_of_claim(self, namespace: str, claim: str) -> list[str]:
        """Names of the DeepSeekDeployments in ``namespace`` that use the claim ``claim``
        without owning it (``claim_in_use``: existingClaim or a pvc:// uri)."""
        with self._guard:
            return sorted(name for (ns, name), used in self._claims_in_use.items()
                          if ns == namespace and used == claim)

    def watched(self, namespace: str, name: str) -> bool:
        """Whether the watch delivered this DeepSeekDeployment and not (yet) its deletion:
        its timers run only while this holds (controller/handlers.py)."""
        with self._guard:
            return (namespace, name) in self._latest

    def remember(self, body: Mapping[str, Any]) -> bool:
        """Keep the latest copy of a DeepSeekDeployment delivered by its watch (reconciles
        triggered without a body, by child events, start from it instead of an API read).

        Returns True when ``body`` differs from the copy it replaces in more than its
        status: the first sight of it, a new generation (spec), labels, annotations, or
        its deletion. A status write (ours) changes none of them, so it triggers no
        reconcile of its own.
        """
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        mark, packed = _beyond_status(body), pack(body)
        with self._guard:
            previous = self._latest_marks.get(key)
            self._latest[key], self._latest_marks[key] = packed, mark
            claim = claim_in_use(body)
            if claim:
                self._claims_in_use[key] = claim
            else:
                self._claims_in_use.pop(key, None)
            slot = self._slots.setdefault(key, _Slot())
            version = str(meta.get("resourceVersion") or "")
            slot.seen_versions.append(version)
            if slot.written_version and version == slot.written_version:
                slot.write_seen = True
        return previous is None or previous != mark

    def _current(self, namespace: str, name: str,
                 given: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The object to work from: ``given`` (kopf's copy) or the latest watched copy.

        Until the watch delivered this operator's last status write (its resourceVersion;
        at most WRITE_SEEN_TIMEOUT_SECONDS), a copy that does not show that write predates
        it: then the object the write returned is newer (only the operator writes status)
        and is used instead. Once the watch has delivered it, the copy is current, also
        when someone else changed the status since (a hand edit is overwritten by the
        reconcile). With no copy at all, or no returned object, it is read from the API.
        None when gone.
        """
        key = (namespace, name)
        slot = self._slot(key)
        with self._guard:
            pending = not slot.write_seen and \
                time.monotonic() - slot.written_at < WRITE_SEEN_TIMEOUT_SECONDS
            packed = self._latest.get(key)
            written, written_patch = slot.written_object, slot.written_patch
            if not pending:  # the returned object is needed only until the watch has it
                slot.written_object, slot.written_patch = None, {}
        copy = dict(given) if given is not None else (
            unpack(packed) if packed is not None else None)
        if copy is not None and (not pending or shows_status_patch(
                copy.get("status"), written_patch)):
            return copy
        if copy is not None and written is not None:
            return dict(written)
        return self.read(namespace, name)

    def _write_status(self, namespace: str, name: str, patch: dict[str, Any],
                      urgent: bool = True) -> None:
        """The operator's one writer of ``.status`` (merge patch, field manager
        deepseek-operator); remembers what it wrote and what the API returned, and counts
        coalesced (not ``urgent``) writes for the next one's interval."""
        slot = self._slot((namespace, name))
        stored = self.cluster.write_status(namespace, name, patch)
        with self._guard:
            slot.written_at = time.monotonic()
            slot.written_patch, slot.written_object = patch, stored
            slot.written_version = str(((stored or {}).get("metadata") or {}).get(
                "resourceVersion") or "")
            # Nothing to wait for without a version, or when the watch was quicker.
            slot.write_seen = (not slot.written_version
                               or slot.written_version in slot.seen_versions)
            slot.progress_writes = 0 if urgent else slot.progress_writes + 1

    def autoscale(self, namespace: str, name: str, lock_timeout: float = 30.0) -> Tick | None:
        """One evaluation of the operator's autoscaler when ``intervalSeconds`` have passed.

        Runs under the object's lock, so it never interleaves with a reconcile's status
        write. Returns the Tick, or None when not due, not in mode ``operator``, the spec is
        invalid (the reconcile reports that), or there is no workload yet. Writes the
        decision's status, and posts an Event on each scale and on each hand-set
        spec.replicas it overrides or holds. Kubernetes API errors propagate (the next
        tick retries).
        """
        slot = self._slot((namespace, name))
        if not slot.lock.acquire(timeout=lock_timeout):
            return None
        try:
            body = self._current(namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            try:
                dsd = parse_deployment(body)
            except InvalidSpecError:
                return None
            if dsd.spec.autoscaling.mode != "operator" or not self.autoscaler.due(
                    dsd, time.time()):
                return None
            tick = self.autoscaler.evaluate(
                dsd, body, lambda patch: self._write_status(namespace, name, patch))
        finally:
            slot.lock.release()
            if slot.dirty:
                self._reconcile_deferred(namespace, name)
        if tick is not None:
            metrics.AUTOSCALER_DECISIONS.labels(
                metrics="missing" if tick.qps is None else "ok").inc()
            desired = tick.decision.desired_replicas
            metrics.SCALE_DECISIONS.labels(
                namespace=namespace, deployment=name, cause=tick.decision.cause,
                direction="hold" if desired == tick.current_replicas else (
                    "up" if desired > tick.current_replicas else "down")).inc()
            self._post_tick_events(body, tick)
        return tick

    def _post_tick_events(self, body: Mapping[str, Any], tick: Tick) -> None:
        desired = tick.decision.desired_replicas
        if tick.capped_from is not None:
            low, high = tick.replica_range
            self.post_event(body, "Warning", "ScaleOutOfRange",
                            f"spec.replicas {tick.capped_from} set by hand is outside "
                            f"autoscaling.minReplicas..maxReplicas ({low}..{high}): the "
                            f"autoscaler took {min(max(tick.capped_from, low), high)}; "
                            "change the range to scale further")
        if tick.overridden is not None:
            self.post_event(body, "Normal", "ScaleOverridden",
                            f"spec.replicas {tick.overridden} was set by hand; in "
                            "autoscaling.mode operator the autoscaler owns the count and "
                            f"set it back to {desired} ({tick.decision.reason}); set "
                            "autoscaling.mode none to scale by hand")
        elif tick.qps is None and desired != tick.current_replicas:
            self.post_event(body, "Normal", "ScaledByHand",
                            f"metrics are missing, so spec.replicas {desired} set by hand "
                            "stands until they return")
        if desired != tick.current_replicas:
            direction = "up" if desired > tick.current_replicas else "down"
            metrics.SCALE_EVENTS.labels(direction=direction).inc()
            if tick.qps is not None:
                self.post_event(body, "Normal", "Scaled", tick.decision.reason)

    def read(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The DeepSeekDeployment as stored, or None when it is gone."""
        return self.cluster.read_deployment(namespace, name)

    def trigger(self, namespace: str, name: str,
                body: Mapping[str, Any] | None = None) -> Outcome | None:
        """Reconcile now, or leave it to the thread that holds this object's lock.

        Returns the last Outcome, or None when another thread took the work or the object
        is gone (or being deleted). Transient errors propagate (ApiException, ApplyError).
        """
        slot = self._slot((namespace, name))
        # Dirty first, then the lock: a holder checks dirty after letting go, so a trigger
        # that finds the lock taken is always picked up (by the holder, or by us again).
        slot.dirty = True
        outcome = None
        while slot.dirty:
            if not slot.lock.acquire(blocking=False):
                return outcome
            try:
                while slot.dirty:
                    slot.dirty = False
                    current = self._current(namespace, name, body)
                    body = None  # every further round starts from the latest copy
                    if current is None or current["metadata"].get("deletionTimestamp"):
                        return outcome
                    outcome = self._once(current)
            finally:
                slot.lock.release()
        return outcome

    def _reconcile_deferred(self, namespace: str, name: str) -> None:
        """Run the reconcile triggered while an autoscaler evaluation held the lock."""
        try:
            self.trigger(namespace, name)
        except Exception as exc:  # reported and retried, never lost
            self._deferred.failed(namespace, name, exc)

    def _once(self, body: Mapping[str, Any]) -> Outcome:
        meta = body["metadata"]
        started = time.monotonic()
        try:
            outcome = reconcile(body, self.cluster, self.settings, rfc3339())
        except Exception:
            metrics.RECONCILE_ERRORS.inc()
            metrics.DEPLOYMENT_RECONCILE_ERRORS.labels(
                namespace=meta["namespace"], deployment=meta["name"]).inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        result = "stalled" if outcome.stalled else (
            "changed" if outcome.writes or outcome.status else "noop")
        metrics.RECONCILES.labels(result=result).inc()
        metrics.DEPLOYMENT_RECONCILES.labels(
            namespace=meta["namespace"], deployment=meta["name"], result=result).inc()
        metrics.WRITES.inc(len(outcome.writes))
        events = outcome.events
        if outcome.status is not None:
            slot = self._slot((meta["namespace"], meta["name"]))
            since = time.monotonic() - slot.written_at
            # The backoff is for the way to Ready (start-up, a rollout, a download); a
            # Ready deployment's changes (replica counts while it scales) wait the base.
            interval = PROGRESS_WRITE_SECONDS if _is_ready(body) else slot.progress_interval()
            if outcome.urgent or since >= interval:
                self._write_status(meta["namespace"], meta["name"], outcome.status,
                                   urgent=outcome.urgent)
                events = events + outcome.status_events
            else:  # coalesced: a reconcile at the end of the interval writes it
                self._deferred.request(meta["namespace"], meta["name"], interval - since)
        for event in events:
            self.post_event(body, event.type, event.reason, event.message)
        return outcome
