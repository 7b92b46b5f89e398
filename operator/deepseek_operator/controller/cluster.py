"""The one place the controller talks to the Kubernetes API.

Reads: the children of a DeepSeekDeployment (every kind in ``render.CHILD_KINDS``), their
pods and the StorageClasses come from the watch-fed ``ChildCache`` (controller/cache.py),
so they cost no API call; the DeepSeekDeployment itself and single objects that are not
children (an existing claim, an object in the way of a child) are read from the API.
Writes: server-side apply with field manager ``deepseek-operator`` and force on conflicts
(we own what we render), except the first write of a child with create-only fields
(controller/desired.py rule 10), which is a plain create; deletes; and the custom
resource's status (same field manager). What the API returns for a write goes into the
cache at once.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import urllib3
from kubernetes import client
from kubernetes.client import ApiException
from kubernetes.dynamic.exceptions import NotFoundError

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.controller.cache import ChildCache, Owner
from deepseek_operator.controller.plan import (
    FIELD_MANAGER,
    HANDOVER_FIELD_MANAGER,
    Change,
    ObjectKey,
    Plan,
)
from deepseek_operator.kubeapi import Resources
from deepseek_operator.render import (
    APPLY_ORDER,
    CHILD_KINDS,
    CREATE_ONLY_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
)

_CHILD_KIND_NAMES = frozenset(c.kind for c in CHILD_KINDS)

_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff]")
log = logging.getLogger(__name__)

def supports_hpa_tolerance(major: str, minor: str) -> bool:
    """Whether an apiserver of this version serves the HPA's ``behavior.*.tolerance`` by
    default (1.35 and later). Versions as /version reports them; distributions add
    suffixes such as ``"35+"``, which are ignored; an unreadable version counts as new."""
    try:
        return (int(major.rstrip("+")), int(minor.rstrip("+"))) >= (1, 35)
    except ValueError:
        return True


class ApplyError(Exception):
    """An API call for one child failed; the message names the object and the API's reason.
    ``status``: the HTTP status; ``refused``: retrying the same body cannot succeed (a
    conflict, throttling or an overloaded apiserver can); ``immutable``: the API refused
    a change of a field that cannot change after creation (its "field is immutable")."""

    def __init__(self, key: ObjectKey, verb: str, exc: ApiException) -> None:
        self.key, self.status = key, int(exc.status or 0)
        self.immutable = self.status == 422 and "field is immutable" in str(exc.body or "")
        message = _api_message(exc)
        # Server-side apply answers 500 for a field the schema does not know (a typo in a
        # free-form part of the spec): the same body fails every time, so it is a refusal.
        # An apply creates a missing object, so its 404 means the kind is no longer served
        # (its CRD deleted since discovery found it): a retry looks the kind up again.
        retried = (409, 429, 404) if verb == "applying" else (409, 429)
        self.refused = (400 <= self.status < 500 and self.status not in retried) or (
            "field not declared in schema" in message)
        super().__init__(f"{verb} {key}: {exc.status} {exc.reason}: {message}")


def _api_message(exc: ApiException) -> str:
    """The API's own message, first line only: the apiserver appends a Go struct diff on
    further lines for immutable fields, which helps no reader of a condition."""
    try:
        message = str(json.loads(exc.body or "").get("message", exc.body))
    except (TypeError, ValueError, AttributeError):
        message = str(exc.body)
    return message.strip().splitlines()[0] if message.strip() else ""


LOG_TIMEOUT_SECONDS = 5.0
"""Longest wait for a download pod's log (pods/log goes through the node's kubelet)."""
CLAIM_EVENTS_LIMIT = 50
"""Most Events read about one claim (the apiserver merges repeats of one reason into one
Event with a count, so a Pending claim has a handful)."""
CLAIM_EVENTS_REFRESH_SECONDS = 15.0
"""A claim's Events are listed at most this often at first (the claim timer's interval):
every reconcile of a waiting claim in between, from its child events, reuses the last
answer, so a slow provisioner under load costs one list per claim per interval, not one
per reconcile. The interval doubles after each list of the same claim, up to
CLAIM_EVENTS_REFRESH_MAX_SECONDS: a provisioner says why it waits in its first Events, and
a thousand claims waiting at once (a namespace created in one apply) would otherwise list
Events every 15 s each."""
CLAIM_EVENTS_REFRESH_MAX_SECONDS = 120.0
"""Longest interval between two lists of one waiting claim's Events."""


@dataclass
class Cluster:
    """Reads children from ``cache``; writes them through the DynamicClient (thread-safe
    resource lookup)."""

    api: client.ApiClient
    cache: ChildCache

    def __post_init__(self) -> None:
        self.resources = Resources(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self._hpa_tolerance: bool | None = None
        # claim uid -> (monotonic time of the last list, seconds until the next, its
        # answer); see claim_events.
        self._claim_events: dict[
            str, tuple[float, float, tuple[list[dict[str, Any]] | None, str]]] = {}
        self._claim_events_lock = threading.Lock()

    def hpa_tolerance_supported(self) -> bool:
        """True when the apiserver is Kubernetes >= 1.35 (see
        ``RenderSettings.hpa_tolerance``); asked once per operator process. An apiserver
        whose version cannot be read counts as new enough."""
        if self._hpa_tolerance is None:
            info = client.VersionApi(self.api).get_code()
            self._hpa_tolerance = supports_hpa_tolerance(info.major, info.minor)
        return self._hpa_tolerance

    def served(self, api_version: str, kind: str) -> bool:
        """True when the API server serves this kind (e.g. its CRD is installed)."""
        return self.resources.get(api_version, kind) is not None

    def observe(self, owner: Owner) -> dict[ObjectKey, dict[str, Any]]:
        """The children of ``owner`` (namespace, DeepSeekDeployment name), by key, as dicts
        (from the cache; kinds the cluster does not serve have none)."""
        return self.cache.children(owner, kinds=_CHILD_KIND_NAMES)

    def pods(self, owner: Owner, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The pods of ``owner`` whose labels include ``labels`` (from the cache)."""
        return list(self.cache.children(owner, kinds=frozenset({"Pod"}), labels=labels).values())

    def read(self, key: ObjectKey) -> dict[str, Any] | None:
        """One object as a dict from the API, or None when it does not exist (then any
        cached copy is dropped too)."""
        resource = self.resources.require(key.api_version, key.kind)
        try:
            found = resource.get(name=key.name, namespace=key.namespace or None)
        except NotFoundError:
            self.cache.forget_key(key)
            return None
        return dict(found.to_dict())

    def relist(self, namespaces: Sequence[str] = ()) -> set[Owner]:
        """List every served child kind (and the operator's pods) by the operator's label,
        cluster-wide, or in each of ``namespaces`` when given (an operator that watches
        only those, with the chart's namespaced RBAC), and purge the cache of children a
        watch never reported gone (``ChildCache.purge``). Returns the owners that lost a
        child, to reconcile them. Raises ApiException when a list fails."""
        lost: set[Owner] = set()
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
        for api_version, kind in [*((c.api_version, c.kind) for c in CHILD_KINDS),
                                  ("v1", "Pod")]:
            resource = self.resources.get(api_version, kind)
            if resource is None:
                continue
            listed_at = time.monotonic()
            if namespaces:
                items = [item for namespace in namespaces for item in resource.get(
                    label_selector=selector, namespace=namespace).items]
            else:
                items = resource.get(label_selector=selector).items
            present = {ObjectKey(api_version, kind, item.metadata.namespace or "",
                                 item.metadata.name) for item in items}
            lost |= self.cache.purge(kind, present, listed_at)
        return lost

    def owner_uids(self, key: ObjectKey) -> frozenset[str] | None:
        """The owner-reference uids of the object ``key``, None when it does not exist
        (from the cache, which sees every object of a child kind)."""
        return self.cache.owner_uids(key)

    def wait_for_name(self, key: ObjectKey, owner: Owner) -> None:
        """Note that ``owner`` (namespace, DeepSeekDeployment name) waits for the object
        ``key``, which is not its own, to go (``ChildCache.waiting_for``)."""
        self.cache.wait_for_name(key, owner)

    def storage_class_exists(self, name: str) -> bool:
        """True when the cluster has a StorageClass of this name (from the cache)."""
        return self.cache.storage_class_exists(name)

    def download_log(self, namespace: str, pod: str, tail_lines: int) -> tuple[str | None, str]:
        """The last ``tail_lines`` lines of the download container of ``pod`` through
        ``pods/log`` (controller/progress.py reads its progress lines), as (text, "") or,
        when the API cannot give it (no kubelet answering, no permission), (None, why).
        Waits at most LOG_TIMEOUT_SECONDS: a reconcile must not hang on a node."""
        try:
            text = client.CoreV1Api(self.api).read_namespaced_pod_log(
                pod, namespace, container="download", tail_lines=tail_lines,
                _request_timeout=LOG_TIMEOUT_SECONDS)
        except ApiException as exc:
            return None, f"pods/log of {pod}: {exc.status} {exc.reason}"
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            return None, f"pods/log of {pod}: {type(exc).__name__}"
        return str(text), ""

    def claim_events(self, namespace: str, name: str,
                     uid: str) -> tuple[list[dict[str, Any]] | None, str]:
        """The Events about one PersistentVolumeClaim (core/v1 dicts), read only for a
        claim that is not Bound (controller/claim_events.py says why it waits), as
        (events, "") or, when the API refuses (no permission), (None, why).

        One bounded list by field selector (involvedObject kind, name and uid: the
        apiserver filters; at most CLAIM_EVENTS_LIMIT), not a watch: claims are Pending
        rarely and briefly, and a watch of every claim's Events would cost a stream and
        its memory for the operator's whole life. Waits at most LOG_TIMEOUT_SECONDS.
        Until the refresh interval of this claim (by ``uid``) has passed since its last
        list, that answer is returned again without a request; the interval starts at
        CLAIM_EVENTS_REFRESH_SECONDS and doubles with each list, up to
        CLAIM_EVENTS_REFRESH_MAX_SECONDS."""
        now = time.monotonic()
        with self._claim_events_lock:
            # Drop answers of claims that bound or went (no reconcile asks for them again).
            for stale in [k for k, (at, _, _) in self._claim_events.items()
                          if now - at >= 4 * CLAIM_EVENTS_REFRESH_MAX_SECONDS]:
                del self._claim_events[stale]
            last = self._claim_events.get(uid)
        if last is not None and now - last[0] < last[1]:
            return last[2]
        answer = self._list_claim_events(namespace, name, uid)
        interval = CLAIM_EVENTS_REFRESH_SECONDS if last is None else min(
            2 * last[1], CLAIM_EVENTS_REFRESH_MAX_SECONDS)
        with self._claim_events_lock:
            self._claim_events[uid] = (now, interval, answer)
        return answer

    def _list_claim_events(self, namespace: str, name: str,
                           uid: str) -> tuple[list[dict[str, Any]] | None, str]:
        selector = (f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={name},"
                    f"involvedObject.uid={uid}")
        try:
            # resourceVersion "0": any recent state will do, so the apiserver answers from
            # its watch cache instead of reading every Event of the namespace from etcd
            # to filter them (field selectors on Events are not indexed).
            found = client.CoreV1Api(self.api).list_namespaced_event(
                namespace, field_selector=selector, limit=CLAIM_EVENTS_LIMIT,
                resource_version="0", _request_timeout=LOG_TIMEOUT_SECONDS)
        except ApiException as exc:
            return None, f"events of {name}: {exc.status} {exc.reason}"
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            return None, f"events of {name}: {type(exc).__name__}"
        plain: dict[str, Any] = self.api.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
        return [dict(item) for item in plain.get("items") or []], ""

    def storage_provisioner(self, name: str) -> str:
        """The provisioner of the StorageClass ``name`` (from the cache), "" when unknown."""
        return self.cache.storage_provisioner(name)

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The DeepSeekDeployment as stored, or None when it is gone."""
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                           name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj if isinstance(obj, dict) else None

    def write_status(self, namespace: str, name: str,
                     status: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the DeepSeekDeployment's ``.status`` (keys set to None are removed)
        with field manager ``deepseek-operator``; returns the object as stored after the
        write. A DeepSeekDeployment deleted meanwhile is no error (there is nothing left to
        report on): None. Raises ApiException."""
        try:
            stored = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status},
                field_manager=FIELD_MANAGER)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None
        return cast(dict[str, Any], stored)

    def apply(self, obj: dict[str, Any],
              field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply one object (as ``field_manager``, forcing conflicts); returns
        the object as stored. Raises ApplyError."""
        key = ObjectKey.of(obj)
        resource = self.resources.require(key.api_version, key.kind)
        # The body goes as UTF-8 JSON text (JSON is YAML): the client would json.dumps a dict
        # with ASCII escapes, and the apiserver's YAML decoder refuses the surrogate pairs
        # that a character outside the Basic Multilingual Plane (an emoji) becomes.
        # The YAML decoder also refuses C1 control characters and the Unicode line
        # separators, which JSON leaves raw: escape those (they only occur inside strings).
        text = _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}",
                                json.dumps(obj, ensure_ascii=False)).encode()
        try:
            result = resource.server_side_apply(
                body=text, name=key.name, namespace=key.namespace or None,
                field_manager=field_manager, force_conflicts=True)
        except ApiException as exc:
            if exc.status == 404:  # the kind is gone (see ApplyError): ask discovery again
                self.resources.forget(key.api_version, key.kind)
            raise ApplyError(key, "applying", exc) from exc
        stored = dict(result.to_dict())
        self.cache.store(stored)
        return stored

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create one object (POST, field manager ``deepseek-operator``, operation Update):
        the fields it sets are not owned by the operator's applies, so later applies that
        leave them out do not remove them. Returns the object as stored. Raises ApplyError
        (409 when it exists already: retried, the next reconcile sees it)."""
        key = ObjectKey.of(obj)
        resource = self.resources.require(key.api_version, key.kind)
        try:
            result = resource.create(body=obj, namespace=key.namespace or None,
                                     field_manager=FIELD_MANAGER)
        except ApiException as exc:
            raise ApplyError(key, "creating", exc) from exc
        stored = dict(result.to_dict())
        self.cache.store(stored)
        return stored

    def delete(self, key: ObjectKey) -> None:
        """Delete one object (background propagation); a missing object is fine."""
        resource = self.resources.require(key.api_version, key.kind)
        try:
            resource.delete(name=key.name, namespace=key.namespace or None,
                            body={"propagationPolicy": "Background"})
        except NotFoundError:
            pass
        except ApiException as exc:
            raise ApplyError(key, "deleting", exc) from exc
        self.cache.forget_key(key)

    def execute(self, plan: Plan) -> list[str]:
        """Make the plan's writes, in dependency order; returns one line per write.

        A Job whose pod template changed cannot be patched (the field is immutable), so it
        is deleted and created again. Raises ApplyError on the first failing write.
        """
        done: list[str] = []
        for change in sorted(plan.apply, key=lambda c: APPLY_ORDER.get(c.key.kind, 99)):
            done.append(self._apply_change(change))
        for key in plan.delete:
            self.delete(key)
            done.append(f"deleted {key}")
        return done

    def check_pod_templates(self, lws: dict[str, Any]) -> None:
        """Have the apiserver validate a LeaderWorkerSet's leader and worker pod templates,
        each as the template of a dry-run Deployment (``dryRun=All``, nothing is stored).

        The LeaderWorkerSet CRD's schema accepts pod templates that Kubernetes' own pod
        validation refuses; the LWS controller then fails to create its StatefulSets and
        says so only in its log and a ``FailedCreate`` event without the reason, and the
        LeaderWorkerSet never gets a status. A Deployment's template goes through the same
        pod-template validation as a StatefulSet's, and the operator may create
        Deployments. Raises ApplyError (refused) naming the field when a template is
        refused (422); other errors are left to the apply that follows.
        """
        key = ObjectKey.of(lws)
        group = (lws.get("spec") or {}).get("leaderWorkerTemplate") or {}
        apps = client.AppsV1Api(self.api)
        for role in ("leaderTemplate", "workerTemplate"):
            template = group.get(role)
            if not template:
                continue
            labels = (template.get("metadata") or {}).get("labels") or {"check": "pod-template"}
            meta = {**(template.get("metadata") or {}), "labels": labels}
            body: Any = {"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"generateName": f"{key.name[:50]}-"},
                         "spec": {"selector": {"matchLabels": labels},
                                  "template": {**template, "metadata": meta}}}
            try:
                apps.create_namespaced_deployment(key.namespace, body, dry_run="All",
                                                  field_manager=FIELD_MANAGER)
            except ApiException as exc:
                if exc.status == 422:
                    raise ApplyError(key, f"checking spec.leaderWorkerTemplate.{role} "
                                     "(as a dry-run Deployment) of", exc) from exc
                log.warning("checking the pod templates of %s: %s %s", key, exc.status,
                            exc.reason)

    def _apply_change(self, change: Change) -> str:
        if change.created and CREATE_ONLY_ANNOTATION in (
                change.desired["metadata"].get("annotations") or {}):
            self.create(change.desired)
            return f"created {change.key}"
        if change.key.kind == "LeaderWorkerSet":
            self.check_pod_templates(change.desired)
        if change.handover is not None:
            self.apply(change.handover, field_manager=HANDOVER_FIELD_MANAGER)
        try:
            self.apply(change.desired)
        except ApplyError as exc:
            # Only a change of the Job's immutable fields is made by a new Job; any other
            # refusal (an invalid value) must not delete a running or finished download.
            if not (exc.immutable and change.key.kind == "Job"):
                raise
            self.delete(change.key)
            self.apply(change.desired)
            return f"recreated {change.key} (immutable fields changed)"
        if change.created:
            return f"created {change.key}"
        return f"updated {change.key} ({', '.join(change.drifted[:5])})"

