"""Reconcile one DeepSeekDeployment: render, plan, apply, observe, compute status.

Plain functions over a ``Cluster`` (the only API caller), so tests call them directly and
kopf handlers stay thin. A reconcile with nothing to change makes zero writes: the plan is
empty and the computed status equals the stored one.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiException, StorageV1Api

from deepseek_operator.api.errors import InvalidSpecError
from deepseek_operator.api.resource import DeepSeekDeployment, parse_deployment
from deepseek_operator.api.spec import SINGLE_WRITER_ACCESS_MODES
from deepseek_operator.api.status import DeepSeekDeploymentStatus
from deepseek_operator.catalog import checkpoint_bytes
from deepseek_operator.controller.cluster import FIELD_MANAGER, ApplyError, Cluster
from deepseek_operator.controller.plan import ObjectKey, Plan, calculate_plan
from deepseek_operator.controller.quantity import quantity_less
from deepseek_operator.controller.sizing_status import sizing_status
from deepseek_operator.controller.status import (
    REASON_APPLY_FAILED,
    REASON_INVALID_SPEC,
    REASON_NAME_CONFLICT,
    WAITING_FOR_OBJECT,
    Observed,
    claim_shortfall,
    claim_storage,
    compute_status,
    job_failed,
    job_succeeded,
    stalled_status,
    transitions,
    with_missing_apis,
)
from deepseek_operator.render import (
    WORKLOAD_API_VERSIONS,
    RenderSettings,
    children_selector,
    creates_model_cache,
    endpoint,
    names,
    needs_download,
    pod_selector,
    render,
    workload_replicas,
)
from deepseek_operator.render.source import model_cache_claim

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the DeepSeekDeployment (type Normal or Warning)."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """What one reconcile did and found.

    ``status``: the status to store, or None when it equals the stored one (no write).
    ``writes``: one line per child write. ``events``: Events to post. ``stalled``: the spec
    can never work as written (kopf.PermanentError territory).
    """

    status: dict[str, Any] | None
    writes: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    stalled: bool = False
    message: str = ""


def _previous_status(body: Mapping[str, Any]) -> DeepSeekDeploymentStatus | None:
    raw = body.get("status")
    if not raw:
        return None
    try:
        return DeepSeekDeploymentStatus.model_validate(dict(raw))
    except ValueError:
        log.warning("ignoring unreadable status of %s", body["metadata"].get("name"))
        return None


def status_dict(status: DeepSeekDeploymentStatus) -> dict[str, Any]:
    """The wire form (camelCase, no nulls) of a status model."""
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def _condition_events(before: DeepSeekDeploymentStatus | None,
                      after: DeepSeekDeploymentStatus) -> list[Event]:
    events = []
    for cond in transitions(before, after):
        if before is None and cond.status == "Unknown":
            continue
        bad = (cond.type == "Ready" and cond.status == "False" and before is not None) or (
            cond.type == "Stalled" and cond.status == "True") or (
            cond.type not in ("Ready", "Progressing", "Stalled") and cond.status == "False")
        events.append(Event("Warning" if bad else "Normal", cond.reason,
                            f"{cond.type}={cond.status}: {cond.message}"))
    return events


def _finish(body: Mapping[str, Any], previous: DeepSeekDeploymentStatus | None,
            status: DeepSeekDeploymentStatus, writes: list[str], stalled: bool = False,
            message: str = "") -> Outcome:
    new = status_dict(status)
    old = status_dict(previous) if previous else None
    if old is not None and new != old:
        # A JSON merge patch keeps keys it does not mention: null removes the ones that
        # no longer apply (e.g. the operator autoscaler's block after a switch to hpa).
        new = {**{key: None for key in old if key not in new}, **new}
    events = [Event("Normal", "Applied", "; ".join(writes))] if writes else []
    events += _condition_events(previous, status)
    return Outcome(status=None if new == old else new, writes=writes, events=events,
                   stalled=stalled, message=message)


def _storage_class_missing(cluster: Cluster, dsd: DeepSeekDeployment) -> str | None:
    wanted = dsd.spec.storage.storage_class_name
    if not wanted or dsd.spec.storage.existing_claim:
        return None
    try:
        StorageV1Api(cluster.api).read_storage_class(wanted)
    except ApiException as exc:
        if exc.status == 404:
            return wanted
        raise
    return None


def reconcile(body: Mapping[str, Any], cluster: Cluster, settings: RenderSettings,
              now: str) -> Outcome:
    """Bring the children of one DeepSeekDeployment (``body``, as from the API) to its spec.

    Returns the Outcome; raises ApplyError (controller.cluster) when a write fails and
    ApiException when a read fails — both transient from the caller's point of view.
    """
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = int(meta.get("generation", 0))
    previous = _previous_status(body)
    base = previous or DeepSeekDeploymentStatus()

    settings = dataclasses.replace(
        settings, pod_monitor=cluster.served("monitoring.coreos.com/v1", "PodMonitor"),
        hpa_tolerance=cluster.hpa_tolerance_supported())
    try:
        dsd = parse_deployment(body)
        desired = render(dsd, settings)
    except InvalidSpecError as exc:
        status = stalled_status(generation=generation, reason=REASON_INVALID_SPEC,
                                message=str(exc), previous=previous, now=now, base=base)
        return _finish(body, previous, status, [], stalled=True, message=str(exc))

    missing = sorted({f"{o['kind']} ({o['apiVersion']})" for o in desired
                      if not cluster.served(o["apiVersion"], o["kind"])})
    desired = [o for o in desired if cluster.served(o["apiVersion"], o["kind"])]
    observed = cluster.observe(namespace, children_selector(name))
    # The download Job's name hashes its pod template: take it from the rendered Job.
    job_name = next((o["metadata"]["name"] for o in desired if o["kind"] == "Job"), None)
    claim_name = model_cache_claim(dsd)
    # existingClaim or a pvc:// uri: not ours, so not among the children; the operator
    # never writes it, so one read serves the whole reconcile.
    given_claim = None if creates_model_cache(dsd) else cluster.read(
        ObjectKey("v1", "PersistentVolumeClaim", namespace, claim_name))
    outdated = _download_for_an_older_claim(dsd, observed, job_name, claim_name)
    if outdated is not None:
        # Deleted by this plan (observed, ours, not desired), created again by the next
        # reconcile, which the deletion's event triggers.
        log.info("%s/%s: the model cache claim is newer than %s, downloading again",
                 namespace, name, outdated)
        desired = [o for o in desired if ObjectKey.of(o) != outdated]
    desired = _hold_workload_until_cached(
        dsd, desired, {k: o for k, o in observed.items() if k != outdated}, job_name)
    desired = [_never_shrink_claim(o, observed) for o in desired]
    desired = _hold_download_until_the_claim_fits(
        dsd, desired, observed, job_name,
        _child(observed, "PersistentVolumeClaim", claim_name) or given_claim)
    keep = [k for k in observed if k.kind == "PersistentVolumeClaim"]  # never delete data
    plan = calculate_plan(desired, observed, keep=keep, field_manager=FIELD_MANAGER)
    foreign = _foreign_objects(cluster, plan, str(meta.get("uid", "")))
    if foreign:
        message = (f"{'; '.join(foreign)}: the operator does not take over objects it did "
                   "not create (it would change them and delete them with this "
                   "DeepSeekDeployment); rename or delete them, or give this "
                   "DeepSeekDeployment another name")
        status = stalled_status(generation=generation, reason=REASON_NAME_CONFLICT,
                                message=message, previous=previous, now=now, base=base,
                                waiting=WAITING_FOR_OBJECT)
        return _finish(body, previous, status, [], stalled=True, message=message)
    try:
        writes = cluster.execute(plan)
    except ApplyError as exc:
        if exc.status in (409, 429) or exc.status >= 500:
            raise  # a conflict or an overloaded apiserver: retried with backoff
        # The API refuses the write (e.g. a hand edit made the desired object invalid):
        # retrying cannot help, say so instead of reporting the last good state.
        message = f"{exc}; {_apply_hint(exc)}"
        status = stalled_status(generation=generation, reason=REASON_APPLY_FAILED,
                                message=message, previous=previous, now=now, base=base,
                                waiting=WAITING_FOR_OBJECT)
        return _finish(body, previous, status, [], stalled=True, message=message)
    if writes:
        log.info("%s/%s: %s", namespace, name, "; ".join(writes))
        observed = cluster.observe(namespace, children_selector(name))

    def child(kind: str, child_name: str) -> dict[str, Any] | None:
        return _child(observed, kind, child_name)

    claim = child("PersistentVolumeClaim", claim_name) or given_claim
    workload = next((w for kind in WORKLOAD_API_VERSIONS
                     if (w := child(kind, names.workload(dsd))) is not None), None)
    autoscaler = child("HorizontalPodAutoscaler", names.autoscaler(dsd)) or child(
        "ScaledObject", names.autoscaler(dsd))
    pods = cluster.list_objects("v1", "Pod", namespace, pod_selector(name))
    replicas = workload_replicas(dsd)
    desired_replicas = replicas if replicas is not None else int(
        ((workload or {}).get("spec") or {}).get("replicas") or 0)
    job = child("Job", job_name) if job_name else None
    if job is not None and _download_for_an_older_claim(
            dsd, observed, job_name, claim_name) is not None:
        job = None  # it filled an earlier claim; the next reconcile replaces it
    job_pods = _pods_of_running_job(cluster, namespace, job)
    snapshot = Observed(
        claim=claim, job=job, job_pods=job_pods, workload=workload, pods=pods,
        claim_name=claim_name, spec_replicas=dsd.spec.replicas,
        download_bytes=checkpoint_bytes(dsd.spec) if needs_download(dsd) else None,
        desired_replicas=desired_replicas, needs_download=needs_download(dsd),
        storage_class_missing=_storage_class_missing(cluster, dsd), autoscaler=autoscaler)
    base = base.model_copy(update={"sizing": sizing_status(dsd)})
    if dsd.spec.autoscaling.mode != "operator":
        base = base.model_copy(update={"autoscaling": None})  # another owner decides
    status = compute_status(generation=generation, mode=dsd.spec.autoscaling.mode,
                            observed=snapshot, previous=previous, now=now,
                            selector=pod_selector(name), endpoint=endpoint(dsd, settings),
                            base=base)
    if missing:
        status = with_missing_apis(status, missing, previous=previous, now=now)
    return _finish(body, previous, status, writes)


def _hold_download_until_the_claim_fits(
        dsd: DeepSeekDeployment, desired: list[dict[str, Any]],
        observed: Mapping[ObjectKey, dict[str, Any]], job_name: str | None,
        claim: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Leave a new download Job (``job_name``) out while its Bound claim is smaller than it
    was asked to be (an expansion in progress) or than the weights: the download would
    fill the volume and fail, or leave a partial cache. A Job that already exists is left
    alone. A claim that is not Bound yet does not hold the Job: with WaitForFirstConsumer
    binding the Job's pod is what makes it bind."""
    if job_name is None or _child(observed, "Job", job_name) is not None:
        return desired
    if claim is None or (claim.get("status") or {}).get("phase") != "Bound":
        return desired
    if claim_shortfall(claim, checkpoint_bytes(dsd.spec)) is None:
        return desired
    return [o for o in desired
            if not (o["kind"] == "Job" and o["metadata"]["name"] == job_name)]


def _foreign_objects(cluster: Cluster, plan: Plan, uid: str) -> list[str]:
    """Objects the plan would create that already exist and are not this custom
    resource's: same name, created by someone else. Children are listed by the operator's
    labels, so an existing object missing from that list is either foreign or one of ours
    whose labels were removed by hand; the owner reference tells them apart. One read per
    object to create, which happens once in a child's life."""
    found = []
    for change in plan.apply:
        if not change.created:
            continue
        live = cluster.read(change.key)
        if live is None:
            continue
        owners = (live.get("metadata") or {}).get("ownerReferences") or []
        if not any(owner.get("uid") == uid for owner in owners):
            found.append(f"{change.key} exists and is not owned by this DeepSeekDeployment")
    return found


def _apply_hint(exc: ApplyError) -> str:
    """What to do about a write the API refused, by the object's kind."""
    if exc.key.kind == "PersistentVolumeClaim":
        return ("the model cache claim cannot take this change (a claim grows only when its "
                "StorageClass allows volume expansion): set spec.storage.size or spec.model "
                "back, or delete the claim to start over with an empty one")
    return ("if the object was edited by hand, delete it and the operator creates it again; "
            "otherwise change the spec")


def _never_shrink_claim(desired: dict[str, Any],
                        observed: Mapping[ObjectKey, dict[str, Any]]) -> dict[str, Any]:
    """``desired`` itself, except for a claim that already requests more storage: then a
    copy that keeps the live request. Kubernetes refuses to shrink a claim (the request may
    not go below the capacity), and the larger cache still holds the smaller weights, so a
    change to a smaller model keeps its cache instead of failing to apply."""
    if desired["kind"] != "PersistentVolumeClaim":
        return desired
    live_request, _ = claim_storage(observed.get(ObjectKey.of(desired)))
    wanted = desired["spec"]["resources"]["requests"]["storage"]
    if not live_request or not quantity_less(wanted, live_request):
        return desired
    kept = copy.deepcopy(desired)
    kept["spec"]["resources"]["requests"]["storage"] = live_request
    return kept


def _pods_of_running_job(cluster: Cluster, namespace: str,
                         job: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The pods of a download Job that has not finished (to say why it does not start:
    a missing credentials Secret, an image that cannot be pulled); [] otherwise, so a
    finished Job costs no read."""
    if job is None or job_succeeded(dict(job)) or job_failed(dict(job)):
        return []
    selector = f"batch.kubernetes.io/job-name={job['metadata']['name']}"
    return cluster.list_objects("v1", "Pod", namespace, selector)


def _download_for_an_older_claim(dsd: DeepSeekDeployment,
                                 observed: Mapping[ObjectKey, dict[str, Any]],
                                 job_name: str | None, claim_name: str) -> ObjectKey | None:
    """The download Job (``job_name``) when it was created before the model cache claim
    it should fill.

    Then it filled an earlier claim of the same name, one deleted by hand since: the new
    claim is empty, and the Job (Complete, say) must run again. The operator creates the
    claim before the Job, so a Job that is older than its claim is always such a leftover.
    Creation times have a resolution of one second; a claim recreated within the second
    of the Job's creation goes unnoticed.
    """
    if not creates_model_cache(dsd) or job_name is None:
        return None
    claim = _child(observed, "PersistentVolumeClaim", claim_name)
    job = _child(observed, "Job", job_name)
    if claim is None or job is None:
        return None
    claim_created = claim["metadata"].get("creationTimestamp") or ""
    job_created = job["metadata"].get("creationTimestamp") or ""
    return ObjectKey.of(job) if job_created and claim_created > job_created else None


def _hold_workload_until_cached(dsd: DeepSeekDeployment, desired: list[dict[str, Any]],
                                observed: Mapping[ObjectKey, dict[str, Any]],
                                job_name: str | None) -> list[dict[str, Any]]:
    """Leave a new workload out while a single-writer cache is still being filled.

    A ReadWriteOnce volume attaches to one node (ReadWriteOncePod to one pod): a serving
    pod that started first, waiting for the download marker, would hold the volume and
    the download Job could never mount it. So with those access modes the workload is
    created only once the Job has completed; an existing workload is left alone.
    """
    if dsd.spec.storage.access_mode not in SINGLE_WRITER_ACCESS_MODES or job_name is None:
        return desired
    if any(k.kind in WORKLOAD_API_VERSIONS and k.name == names.workload(dsd) for k in observed):
        return desired
    job = _child(observed, "Job", job_name)
    if job is not None and job_succeeded(job):
        return desired
    return [o for o in desired if o["kind"] not in WORKLOAD_API_VERSIONS]


def _child(observed: Mapping[ObjectKey, dict[str, Any]], kind: str,
           name: str) -> dict[str, Any] | None:
    """The observed child of this kind and name, if any."""
    return next((o for k, o in observed.items() if k.kind == kind and k.name == name), None)
