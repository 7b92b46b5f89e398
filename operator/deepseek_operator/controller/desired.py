"""The desired children of one reconcile: the rendered objects, adjusted to what is live.

Rendering knows only the spec. A few rules need the observed children too, and they all
live here, in one pure function (``desired_state``) with a case-table test
(tests/test_desired.py); the plan (``controller.plan``) then compares its result with the
observed children, and the executor makes the writes. The rules:

1. **Kinds the cluster does not serve** (no LeaderWorkerSet or KEDA CRD) are left out and
   reported, so status can say what to install.
2. **A download Job older than its claim** filled an earlier claim of the same name (one
   deleted by hand since): it is left out, so the plan deletes it and the next reconcile
   creates it again for the new, empty claim (for an existingClaim, once the Job has
   succeeded: such a claim may be created after the Job, which then waits for it).
3. **Hold the workload until cached** on a single-writer claim (ReadWriteOnce,
   ReadWriteOncePod): a serving pod started first would hold the volume and the download
   could never mount it.
4. **Never shrink the claim**: Kubernetes refuses to lower a claim's request, and the
   larger cache still holds the smaller weights.
5. **Hold the download until the claim fits**: a new Job waits while its Bound claim is
   smaller than asked (an expansion in progress) or than the weights.
6. **Never delete data**: every observed claim is kept.
7. **Never take a serving model down for a workload that cannot replace it**: when the
   workload kind changes (Deployment <-> LeaderWorkerSet), the old workload is kept until
   the new one has all its replicas ready (make before break); when the new kind is not
   served at all, the old workload is kept untouched.
8. **Replace an empty claim, never a filled one**: a claim's storage class and access
   modes cannot change after creation. When the spec asks for others (or for the cluster
   default class after a named one), a claim that never bound (it holds no data) is
   deleted, and the next reconcile creates it as asked; a Bound claim is left as it is,
   and ``claim_conflict`` says what to do (a Bound claim keeps its class when the spec
   leaves the class to the default).
9. **A claim being deleted takes its download Job along** (the operator's claim or the
   one spec.storage.existingClaim names): the Job's finished pod would hold the claim
   forever (PVC protection); the Job comes back with the new claim.
10. **Create-only fields belong to people once created**: a child annotated
   ``render.CREATE_ONLY_ANNOTATION`` (the gateway policy ConfigMap, whose ``data`` the
   holders of system:configure edit) is wanted in full only while it does not exist; once
   observed, the fields the annotation lists are left out of the desired object, so the
   plan never finds them drifted and no apply touches them. The executor creates such an
   object with a plain create, not an apply, so the operator's apply never owns those
   fields (an apply that left out fields it owned would delete them).
11. **A failed download Job stays as it failed**: it is neither patched nor deleted, so
   its deadline and its pods' messages still say why it failed after a spec edit that
   keeps its name (its pod template); deleting it (what ModelCached says to do) starts
   the download again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.api.spec import SINGLE_WRITER_ACCESS_MODES
from deepseek_operator.catalog import checkpoint_bytes
from deepseek_operator.controller.diff import owned_fields
from deepseek_operator.controller.plan import ObjectKey
from deepseek_operator.controller.predicates import (
    claim_bound,
    claim_shortfall,
    claim_storage,
    job_failed,
    job_succeeded,
    workload_counts,
)
from deepseek_operator.controller.quantity import quantity_less
from deepseek_operator.render import (
    CREATE_ONLY_ANNOTATION,
    WORKLOAD_API_VERSIONS,
    creates_model_cache,
    names,
    needs_download,
)

Children = Mapping[ObjectKey, dict[str, Any]]


@dataclass(frozen=True)
class DesiredState:
    """What one reconcile should make true.

    ``objects``: the children to apply. ``keep``: observed children the plan must not
    delete although they are not in ``objects``. ``missing_apis``: kinds the spec needs that
    the cluster does not serve, as ``"LeaderWorkerSet (leaderworkerset.x-k8s.io/v1)"``.
    ``outdated_job``: a download Job left out because it filled an earlier claim.
    ``kept_workload``: an observed workload kept serving while its replacement cannot
    (rule 7), None otherwise. ``claim_conflict``: why the spec cannot be applied to the
    Bound model cache claim (rule 8), with the way out; None when it can. ``failed_job``:
    the failed download Job left as it is (rule 11; also in ``keep``), None otherwise.
    """

    objects: list[dict[str, Any]]
    keep: list[ObjectKey] = field(default_factory=list)
    missing_apis: list[str] = field(default_factory=list)
    outdated_job: ObjectKey | None = None
    kept_workload: ObjectKey | None = None
    claim_conflict: str | None = None
    failed_job: ObjectKey | None = None


def child(observed: Children, kind: str, name: str) -> dict[str, Any] | None:
    """The observed child of this kind and name, if any."""
    return next((o for k, o in observed.items() if k.kind == kind and k.name == name), None)


def desired_state(dsd: DeepSeekDeployment, rendered: list[dict[str, Any]],
                  observed: Children, *, served: Callable[[str, str], bool],
                  given_claim: Mapping[str, Any] | None = None,
                  field_manager: str = "") -> DesiredState:
    """Apply the rules of this module to ``rendered`` (``render(dsd, settings)``).

    ``observed``: the live children by key. ``served(apiVersion, kind)``: whether the
    cluster serves a kind. ``given_claim``: the claim named by storage.existingClaim or a
    pvc:// uri (not a child: the operator never writes it), None otherwise or when absent.
    ``field_manager``: the operator's, to tell a claim's class it set from a default.
    """
    missing = sorted({f"{o['kind']} ({o['apiVersion']})" for o in rendered
                      if not served(o["apiVersion"], o["kind"])})
    objects = [o for o in rendered if served(o["apiVersion"], o["kind"])]
    # The download Job's name hashes its pod template: take it from the rendered Job.
    job_name = next((o["metadata"]["name"] for o in rendered if o["kind"] == "Job"), None)
    outdated = download_for_an_older_claim(dsd, observed, job_name, given_claim)
    if outdated is not None:
        objects = [o for o in objects if ObjectKey.of(o) != outdated]
    current = {k: o for k, o in observed.items() if k != outdated}
    objects = _hold_workload_until_cached(dsd, objects, current, job_name)
    objects = [_never_shrink_claim(o, observed) for o in objects]
    claim = child(observed, "PersistentVolumeClaim", names.model_cache_claim(dsd))
    objects = _hold_download_until_the_claim_fits(dsd, objects, observed, job_name,
                                                  claim or given_claim)
    keep = [k for k in observed if k.kind == "PersistentVolumeClaim"]
    if (claim or given_claim or {}).get("metadata", {}).get("deletionTimestamp"):
        # Rule 9: the claim (ours, or the one the spec names) is being deleted (by hand, to
        # start over): its download Job's finished pod would hold it forever (PVC
        # protection), so the Job goes too and comes back with the new claim.
        objects = [o for o in objects if o["kind"] != "Job"]
    conflict = None
    rendered_claim = next((o for o in objects if o["kind"] == "PersistentVolumeClaim"), None)
    if rendered_claim is not None and claim is not None:
        rendered_claim = _keep_bound_default_class(
            rendered_claim, claim, dsd.spec.storage.storage_class_name)
        objects = [rendered_claim if o["kind"] == "PersistentVolumeClaim" else o
                   for o in objects]
        changes = immutable_claim_changes(rendered_claim, claim, field_manager)
        if changes and not claim_bound(claim):
            # Rule 8: it never bound, so it holds nothing: the plan deletes it, the deletion's
            # event brings the next reconcile, which creates it as the spec asks.
            objects = [o for o in objects if o is not rendered_claim]
            keep = [k for k in keep if k != ObjectKey.of(claim)]
        elif changes:
            conflict = (f"the model cache claim {claim['metadata']['name']} is Bound and a "
                        f"claim cannot change {' or '.join(changes)} after creation: set "
                        "spec.storage back, or delete the claim (the operator creates it as "
                        "the spec asks and downloads the weights again)")
    objects = [_leave_created_fields(o, observed) for o in objects]
    failed = _failed_download(observed, job_name, outdated)
    if failed is not None and not any(o["kind"] == "Job" for o in objects):
        failed = None  # held or going (rules 5 and 9): nothing to keep
    if failed is not None:
        objects = [o for o in objects if o["kind"] != "Job"]  # rule 11
        keep.append(failed)
    kept_workload = _serving_workload_to_keep(dsd, rendered, objects, observed)
    if kept_workload is not None:
        keep.append(kept_workload)
    return DesiredState(objects=objects, keep=keep, missing_apis=missing,
                        outdated_job=outdated, kept_workload=kept_workload,
                        claim_conflict=conflict, failed_job=failed)


def _failed_download(observed: Children, job_name: str | None,
                     outdated: ObjectKey | None) -> ObjectKey | None:
    """Rule 11: the observed download Job of the rendered name when it failed (and did not
    fill an earlier claim, rule 2); None otherwise."""
    key = next((k for k in observed if k.kind == "Job" and k.name == job_name), None)
    if key is None or key == outdated or not job_failed(observed[key]):
        return None
    return key


def immutable_claim_changes(desired: Mapping[str, Any], live: Mapping[str, Any],
                            field_manager: str) -> list[str]:
    """The immutable fields of a claim that ``desired`` sets to other values than ``live``
    has, each as ``"storageClassName (fast-ssd -> standard)"``; a class the desired claim
    leaves out is ``the cluster default``."""
    changes = []
    for field_name in ("storageClassName", "accessModes"):
        wanted = (desired.get("spec") or {}).get(field_name)
        have = (live.get("spec") or {}).get(field_name)
        if wanted is None and field_name == "storageClassName" and have is not None:
            # A class the admission plugin filled in is the default already; one the
            # operator set (its field manager owns it) was the spec's, now dropped.
            if "f:storageClassName" in owned_fields(dict(live), field_manager).get(
                    "f:spec", {}):
                changes.append(f"storageClassName ({have} -> the cluster default)")
        elif wanted is not None and have is not None and wanted != have:
            changes.append(f"{field_name} ({_words(have)} -> {_words(wanted)})")
    return changes


def _keep_bound_default_class(desired: dict[str, Any], live: Mapping[str, Any],
                              spec_class: str) -> dict[str, Any]:
    """A desired claim whose spec leaves the class to a default (``spec_class`` empty: the
    operator's ``--storage-class`` or the cluster's), for a Bound claim that has a class: a
    copy that keeps the live class (a default filled it in, an earlier default or the spec
    asked for it; a claim cannot change class either way, and a changed operator default
    must not strand a filled cache)."""
    have = (live.get("spec") or {}).get("storageClassName")
    if spec_class or have is None or not claim_bound(live):
        return desired
    kept = copy.deepcopy(desired)
    kept["spec"]["storageClassName"] = have
    return kept


def _words(value: Any) -> str:
    return ", ".join(value) if isinstance(value, list) else str(value)


def download_for_an_older_claim(dsd: DeepSeekDeployment, observed: Children,
                                job_name: str | None,
                                given_claim: Mapping[str, Any] | None = None
                                ) -> ObjectKey | None:
    """The download Job (``job_name``) when it was created before the model cache claim
    it should fill.

    Then it filled an earlier claim of the same name, one deleted by hand since: the new
    claim is empty, and the Job (Complete, say) must run again. The operator creates the
    claim before the Job, so a Job that is older than its claim is always such a leftover.
    A claim the spec names (``given_claim``: existingClaim) may also be created after the
    Job, whose pod then waits for it: such a Job counts only once it has succeeded.
    Creation times have a resolution of one second; a claim recreated within the second
    of the Job's creation goes unnoticed.
    """
    if job_name is None or not needs_download(dsd):
        return None
    owned = creates_model_cache(dsd)
    claim = child(observed, "PersistentVolumeClaim", names.model_cache_claim(dsd)) \
        if owned else given_claim
    job = child(observed, "Job", job_name)
    if claim is None or job is None or not (owned or job_succeeded(job)):
        return None
    claim_created = claim["metadata"].get("creationTimestamp") or ""
    job_created = job["metadata"].get("creationTimestamp") or ""
    return ObjectKey.of(job) if job_created and claim_created > job_created else None


def _is_workload(key: ObjectKey, dsd: DeepSeekDeployment) -> bool:
    return key.kind in WORKLOAD_API_VERSIONS and key.name == names.workload(dsd)


def _hold_workload_until_cached(dsd: DeepSeekDeployment, objects: list[dict[str, Any]],
                                observed: Children,
                                job_name: str | None) -> list[dict[str, Any]]:
    """Rule 3: leave a new workload out while a single-writer cache is being filled; an
    existing workload is left alone."""
    if dsd.spec.storage.access_mode not in SINGLE_WRITER_ACCESS_MODES or job_name is None:
        return objects
    if any(_is_workload(k, dsd) for k in observed):
        return objects
    job = child(observed, "Job", job_name)
    if job is not None and job_succeeded(job):
        return objects
    return [o for o in objects if o["kind"] not in WORKLOAD_API_VERSIONS]


def create_only_fields(obj: Mapping[str, Any]) -> list[str]:
    """The top-level fields ``obj`` wants written only when it is created (its
    CREATE_ONLY_ANNOTATION, comma-separated), in order; empty for other objects."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    listed = str(annotations.get(CREATE_ONLY_ANNOTATION, ""))
    return [name.strip() for name in listed.split(",") if name.strip()]


def _leave_created_fields(desired: dict[str, Any], observed: Children) -> dict[str, Any]:
    """Rule 10: ``desired`` itself while it does not exist; once observed, a copy without
    its create-only fields."""
    fields = create_only_fields(desired)
    if not fields or ObjectKey.of(desired) not in observed:
        return desired
    return {key: value for key, value in desired.items() if key not in fields}


def _never_shrink_claim(desired: dict[str, Any], observed: Children) -> dict[str, Any]:
    """Rule 4: ``desired`` itself, except for a claim that already requests more storage:
    then a copy that keeps the live request."""
    if desired["kind"] != "PersistentVolumeClaim":
        return desired
    live_request, _ = claim_storage(observed.get(ObjectKey.of(desired)))
    wanted = desired["spec"]["resources"]["requests"]["storage"]
    if not live_request or not quantity_less(wanted, live_request):
        return desired
    kept = copy.deepcopy(desired)
    kept["spec"]["resources"]["requests"]["storage"] = live_request
    return kept


def _hold_download_until_the_claim_fits(
        dsd: DeepSeekDeployment, objects: list[dict[str, Any]], observed: Children,
        job_name: str | None, claim: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Rule 5: leave a new download Job out while its Bound claim is smaller than asked or
    than the weights. A Job that already exists is left alone. A claim that is not Bound
    yet does not hold the Job: with WaitForFirstConsumer binding the Job's pod is what
    makes it bind."""
    if job_name is None or child(observed, "Job", job_name) is not None:
        return objects
    if not claim_bound(claim) or claim is None:
        return objects
    if claim_shortfall(claim, checkpoint_bytes(dsd.spec)) is None:
        return objects
    return [o for o in objects
            if not (o["kind"] == "Job" and o["metadata"]["name"] == job_name)]


def _serving_workload_to_keep(dsd: DeepSeekDeployment, rendered: list[dict[str, Any]],
                              objects: list[dict[str, Any]],
                              observed: Children) -> ObjectKey | None:
    """Rule 7: the observed workload of another kind than the one wanted, while the wanted
    one is not fully ready (or cannot be created at all); None when there is nothing to
    keep."""
    wanted = next((ObjectKey.of(o) for o in rendered if _is_workload(ObjectKey.of(o), dsd)),
                  None)
    if wanted is None:
        return None
    others = [k for k in observed if _is_workload(k, dsd) and k != wanted]
    if not others:
        return None
    old = others[0]
    if not any(ObjectKey.of(o) == wanted for o in objects):
        return old  # the new kind is not served (or is held): the old one keeps serving
    new = observed.get(wanted)
    want = int(((new or {}).get("spec") or {}).get("replicas") or 0)
    _, ready, rolled_out = workload_counts(new)
    if new is not None and rolled_out and ready >= want:
        return None  # the replacement serves: the plan deletes the old workload
    return old
