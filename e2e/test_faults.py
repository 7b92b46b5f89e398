"""Faults: the operator killed at random points, the apiserver and etcd restarted, watch
streams expired, a peered replica killed, another field manager fighting over owned
fields, and every child deleted by hand. After each the DeepSeekDeployments converge:
Ready with ``observedGeneration`` current, exactly the children their spec asks for (one
Job, claim and Deployment each), no claim lost, replicas as the spec says.

Times (convergence, takeover) are printed, not asserted; every wait has a generous
timeout so that a hang fails instead of running on.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.render import DEPLOYMENT_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from e2e.cluster import audit, controlplane, pki
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess
from e2e.test_controller import (
    create,
    extra_gpu_nodes,  # noqa: F401  (a fixture)
    small_model,
    utc_now,
)

SEED = 20261130
MAX_MODEL_LEN, EDITED_MAX_MODEL_LEN = 8192, 4096
# The children of small_model() in autoscaling mode none; a deleted one keeps its claim.
NONE_CHILDREN = Counter({"ServiceAccount": 1, "ConfigMap": 3, "NetworkPolicy": 1,
                         "PersistentVolumeClaim": 1, "Job": 1, "Deployment": 1, "Service": 1})
RETAINED = Counter({"PersistentVolumeClaim": 1})
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def _listers(kube: client.ApiClient) -> dict[str, Any]:
    """kind -> list function (namespace, label_selector) for every kind a test here
    expects the operator to create."""
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    rbac, batch = client.RbacAuthorizationV1Api(kube), client.BatchV1Api(kube)
    hpa = client.AutoscalingV2Api(kube)
    return {
        "ServiceAccount": core.list_namespaced_service_account,
        "ConfigMap": core.list_namespaced_config_map,
        "Role": rbac.list_namespaced_role,
        "RoleBinding": rbac.list_namespaced_role_binding,
        "NetworkPolicy": client.NetworkingV1Api(kube).list_namespaced_network_policy,
        "PersistentVolumeClaim": core.list_namespaced_persistent_volume_claim,
        "Job": batch.list_namespaced_job,
        "Deployment": apps.list_namespaced_deployment,
        "Service": core.list_namespaced_service,
        "HorizontalPodAutoscaler": hpa.list_namespaced_horizontal_pod_autoscaler,
    }


def children(kube: client.ApiClient, namespace: str) -> dict[str, list[Any]]:
    """The operator's children in ``namespace`` (every kind of ``_listers``), by the name of
    the DeepSeekDeployment they belong to (their label)."""
    found: dict[str, list[Any]] = {}
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
    for kind, lister in _listers(kube).items():
        for obj in lister(namespace, label_selector=selector).items:
            obj.kind = kind
            owner = (obj.metadata.labels or {}).get(DEPLOYMENT_LABEL, "")
            found.setdefault(owner, []).append(obj)
    return found


def _args(dep: Any) -> list[str]:
    container = dep.spec.template.spec.containers[0]
    return [*(container.command or []), *(container.args or [])]


def problems(kube: client.ApiClient, api: client.CustomObjectsApi, namespace: str,
             expected: dict[str, Counter[str]], max_model_len: dict[str, int],
             deleted: Mapping[str, bool] | None = None,
             unready_ok: AbstractSet[str] = frozenset()) -> list[str]:
    """What keeps ``namespace`` from having converged (empty when it has): the
    DeepSeekDeployments are exactly ``expected``'s names, each with observedGeneration
    current and (unless in ``unready_ok``) Ready, its Deployment running
    ``max_model_len`` with the spec's one replica, its children exactly
    ``expected[name]`` (kind -> count); a ``deleted`` one (name -> whether its claim
    existed when it was deleted) keeps that claim, and has no other child
    else; no other owner has children."""
    found: list[str] = []
    items = {o["metadata"]["name"]: o for o in api.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL)["items"]}
    if set(items) != set(expected):
        found.append(f"DeepSeekDeployments {sorted(items)} != {sorted(expected)}")
    for name, obj in sorted(items.items()):
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj["metadata"]["generation"]:
            found.append(f"{name}: observedGeneration {status.get('observedGeneration')} "
                         f"!= generation {obj['metadata']['generation']}")
        cond = {c["type"]: c for c in status.get("conditions") or []}
        if name not in unready_ok and (cond.get("Ready") or {}).get("status") != "True":
            found.append(f"{name}: Ready {(cond.get('Ready') or {}).get('reason')}")
    owned = children(kube, namespace)
    deleted = deleted or {}
    for name in sorted(set(owned) | set(expected) | set(deleted)):
        objs = owned.get(name, [])
        kinds = Counter(o.kind for o in objs)
        want = expected.get(name) or (RETAINED if deleted.get(name) else Counter())
        if name in deleted and not deleted[name] and kinds == RETAINED:
            want = RETAINED  # created between the test's look and its delete: kept too
        if kinds != want:
            found.append(f"{name}: children {dict(kinds)} != {dict(want)}")
        terminating = [f"{o.kind}/{o.metadata.name}" for o in objs
                       if o.metadata.deletion_timestamp]
        if terminating:
            found.append(f"{name}: terminating {terminating}")
        for dep in (o for o in objs if o.kind == "Deployment" and name in max_model_len):
            args = _args(dep)
            length = args[args.index("--max-model-len") + 1] if "--max-model-len" in args \
                else None
            if length != str(max_model_len[name]):
                found.append(f"{name}: Deployment --max-model-len {length}, "
                             f"want {max_model_len[name]}")
            if dep.spec.replicas != 1:
                found.append(f"{name}: Deployment replicas {dep.spec.replicas}, spec says 1")
    return found


def wait_converged(kube: client.ApiClient, api: client.CustomObjectsApi, namespace: str,
                   expected: dict[str, Counter[str]], max_model_len: dict[str, int],
                   deleted: Mapping[str, bool] | None = None, timeout: float = 180,
                   unready_ok: AbstractSet[str] = frozenset()) -> float:
    """Wait until ``problems`` finds none; returns the seconds it took. Raises
    TimeoutError with the problems last seen."""
    started = time.monotonic()
    last: list[str] = []
    while True:
        last = problems(kube, api, namespace, expected, max_model_len, deleted, unready_ok)
        if not last:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{namespace} not converged after {timeout:.0f}s: {last}")
        time.sleep(1)


def audit_writes(namespace: str | None, since: str,
                 group: str | None = None) -> list[tuple[str, str, str]]:
    """(verb, resource, name) of the operator's writes (``group``: only by the client
    certificates with this group) since an RFC 3339 time, in ``namespace`` (None: all)."""
    writes = []
    for entry in audit.operator_entries(since):
        ref = entry.get("objectRef") or {}
        if (entry["verb"] in WRITE_VERBS
                and (group is None or group in entry["user"].get("groups", []))
                and (namespace is None or ref.get("namespace") == namespace)):
            writes.append((entry["verb"], audit.resource_of(entry), ref.get("name", "")))
    return writes


def _ready_small(name: str, gpu_type: str = "A100-40GB", **spec: Any) -> dict[str, Any]:
    body = small_model(name, **spec)
    body["spec"]["gpu"]["type"] = gpu_type
    return body


# --- 1. the operator SIGKILLed at random points ------------------------------------------


def test_operator_killed_at_random_points_converges(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        operator: OperatorProcess, extra_gpu_nodes: int) -> None:  # noqa: F811
    """30 DeepSeekDeployments created, 10 edited (maxModelLen, which changes the
    Deployment), 8 deleted, while the operator is SIGKILLed 8 times at seeded random
    points (some actions land while it is down) and started again. Afterwards: converged
    (see ``problems``), the deleted ones' claims kept (those that existed: a deletion may
    come before the operator created it). Expected: convergence within a
    minute or two of the last start (timeout 300 s)."""
    rng = random.Random(SEED)
    names = [f"k-{i:02d}" for i in range(30)]
    edited = set(rng.sample(names, 10))
    deleted = set(rng.sample(sorted(set(names) - edited), 8))
    later = [("edit", n) for n in sorted(edited)] + [("delete", n) for n in sorted(deleted)]
    rng.shuffle(later)
    actions = [("create", n) for n in names] + later
    # One kill in each eighth of the actions, so that it always finds the operator running.
    step = len(actions) // 8
    kill_at = {step * j + rng.randint(1, 2) for j in range(8)}
    patch = {"spec": {"model": {"maxModelLen": EDITED_MAX_MODEL_LEN}}}
    kills, running, down_for = [], True, 0  # down_for: actions done while it is down
    core = client.CoreV1Api(kube)
    claims: dict[str, bool] = {}  # deleted name -> its claim existed when it was deleted
    for i, (verb, name) in enumerate(actions):
        if i in kill_at:
            time.sleep(rng.uniform(0.1, 3.0))  # the operator is working on what came before
            operator.kill()
            kills.append(i)
            running, down_for = False, rng.randint(0, 3)
        if not running and down_for == 0:
            operator.start()
            running = True
        down_for = max(0, down_for - 1)
        if verb == "create":
            create(dsd_api, namespace, _ready_small(name, gpu_type=""))
        elif verb == "edit":
            dsd_api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                   patch)
        else:
            def claim(name: str = name) -> bool:
                return bool(core.list_namespaced_persistent_volume_claim(
                    namespace, field_selector=f"metadata.name={name}-model-cache").items)

            # Most deletions come after the operator made the claim (a claim to lose), the
            # others whenever they come (maybe before it reconciled the new object at all).
            if running and rng.random() < 0.75:
                wait_for(f"{name}'s claim", claim, 120)
            claims[name] = claim()
            dsd_api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    if not running:
        operator.start()
    remaining = [n for n in names if n not in deleted]
    took = wait_converged(
        kube, dsd_api, namespace, dict.fromkeys(remaining, NONE_CHILDREN),
        {n: EDITED_MAX_MODEL_LEN if n in edited else MAX_MODEL_LEN for n in remaining},
        claims, timeout=300)
    print(f"\nseed {SEED}: {len(actions)} actions, SIGKILL before actions {kills}; "
          f"converged {took:.1f}s after the last start; {sum(claims.values())} of "
          f"{len(claims)} deleted ones had a claim, kept")


# --- 2. kube-apiserver and etcd restarted mid-reconcile ----------------------------------


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restart_mid_reconcile_converges(
        component: str, kube: client.ApiClient, dsd_api: client.CustomObjectsApi,
        namespace: str, operator: OperatorProcess) -> None:
    """Six DeepSeekDeployments created, then ``component`` restarted (same ports,
    certificates and data) while they are being reconciled: all converge afterwards and
    the operator keeps running (timeout 180 s after the restart)."""
    names = [f"cp-{i}" for i in range(6)]
    for name in names:
        create(dsd_api, namespace, _ready_small(name))
    time.sleep(0.5)
    down = controlplane.restart(component)
    took = wait_converged(kube, dsd_api, namespace, dict.fromkeys(names, NONE_CHILDREN),
                          dict.fromkeys(names, MAX_MODEL_LEN))
    print(f"\n{component} unavailable {down:.1f}s; converged {took:.1f}s after it was back")
    assert operator.proc is not None and operator.proc.poll() is None, operator.log_tail()


# --- 3. watch streams expired (410 Gone) -------------------------------------------------


# The relisting operator's interval (`run --relist-seconds`; 600 s by default).
RELIST_SECONDS = 10  # the shortest the settings allow (settings.MIN_PERIOD_SECONDS)


@pytest.fixture
def frozen(operator: OperatorProcess, tmp_path: Path) -> Iterator[OperatorProcess]:
    """An operator that relists every RELIST_SECONDS, instead of the session's (restarted
    afterwards), to be frozen (SIGSTOP) by the test; always continued and stopped."""
    operator.stop()
    relisting = OperatorProcess(controlplane.kubeconfig_path("operator"),
                                tmp_path / "relisting.log",
                                ["--relist-seconds", str(RELIST_SECONDS)])
    try:
        relisting.start()
        yield relisting
    finally:
        if relisting.proc is not None:
            os.kill(relisting.proc.pid, signal.SIGCONT)
        relisting.stop()
        operator.start()


def test_expired_watches_relist_and_repair_the_gap(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        frozen: OperatorProcess) -> None:
    """The operator frozen (SIGSTOP: it keeps its watches' resourceVersions); the apiserver
    restarted (its watch cache starts anew); a child deleted and another changed by hand;
    etcd compacted to its current revision. So every watch resumed from an old
    resourceVersion gets 410 Gone and kopf re-lists, with no DELETED event for the
    Service. Continued, the operator must recreate the deleted Service (found by its
    periodic relist, every RELIST_SECONDS here) and revert the changed ConfigMap (from
    the re-listed object); timeout 30 s."""
    create(dsd_api, namespace, _ready_small("gap"))
    wait_converged(kube, dsd_api, namespace, {"gap": NONE_CHILDREN}, {"gap": MAX_MODEL_LEN},
                   timeout=90)
    core = client.CoreV1Api(kube)
    service_uid = core.read_namespaced_service("gap", namespace).metadata.uid
    log_before = len(frozen.log_path.read_bytes())
    assert frozen.proc is not None
    os.kill(frozen.proc.pid, signal.SIGSTOP)
    # The restart closes the operator's watch connections first: the changes below come
    # on none of them (an event sent before the restart would wait in its socket buffer).
    controlplane.restart("kube-apiserver")
    core.delete_namespaced_service("gap", namespace)
    core.patch_namespaced_config_map("gap-runtime", namespace,
                                     {"data": {"runtime.yaml": "changed in the gap"}})
    controlplane.compact_etcd()
    os.kill(frozen.proc.pid, signal.SIGCONT)
    continued = time.monotonic()

    def repaired() -> bool:
        data = core.read_namespaced_config_map("gap-runtime", namespace).data or {}
        try:
            service = core.read_namespaced_service("gap", namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return False
        return service.metadata.uid != service_uid and \
            data.get("runtime.yaml") != "changed in the gap"

    try:
        wait_for("the Service recreated and the ConfigMap reverted", repaired, 30)
    finally:
        log = frozen.log_path.read_bytes()[log_before:].decode(errors="replace")
        restarts = log.count("Restarting the watch-stream")
        print(f"\nwatch streams restarted after 410 Gone: {restarts}; repaired "
              f"{time.monotonic() - continued:.1f}s after the operator was continued")
    assert restarts, "no watch got 410 Gone: the test did not make the gap it is about"
    wait_converged(kube, dsd_api, namespace, {"gap": NONE_CHILDREN}, {"gap": MAX_MODEL_LEN})


# --- 4. two peered replicas, the active one killed -----------------------------------------

PEERING = "e2e-faults"
STANDBY_GROUP = "e2e:standby"


@pytest.fixture
def active_and_standby(kube: client.ApiClient, operator: OperatorProcess,
                       tmp_path: Path) -> Iterator[tuple[OperatorProcess, OperatorProcess]]:
    """Two operators in one kopf peering instead of the session's standalone one (restarted
    afterwards). The standby starts first (kopf's priority is the start time, so the newer
    one is active) and authenticates with a certificate that adds group STANDBY_GROUP to
    the operator's user name: same permissions, told apart in the audit log."""
    custom = client.CustomObjectsApi(kube)
    custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", {
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
        "metadata": {"name": PEERING}})
    operator.stop()
    operator_identity = next(c for c in pki.CLIENTS if c.file_stem == "operator")
    standby_kubeconfig = controlplane.client_kubeconfig(pki.ClientIdentity(
        "operator-standby", operator_identity.user,
        (*operator_identity.groups, STANDBY_GROUP)))
    standby = OperatorProcess(standby_kubeconfig, tmp_path / "standby.log",
                              ["--peering", PEERING])
    active = OperatorProcess(controlplane.kubeconfig_path("operator"), tmp_path / "active.log",
                             ["--peering", PEERING])
    try:
        standby.start()
        time.sleep(1.5)  # distinct start times give distinct priorities
        active.start()
        yield active, standby
    finally:
        active.stop()
        standby.stop()
        custom.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)
        operator.start()


def test_standby_takes_over_when_the_active_replica_is_killed(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        active_and_standby: tuple[OperatorProcess, OperatorProcess]) -> None:
    """While both run, the standby (paused) makes no write in the test namespace (audit
    log); the active one SIGKILLed, the standby resumes and reconciles a DeepSeekDeployment
    created after the kill. Expected: it takes over once the dead peer's record expires
    (kopf's peering lifetime, 60 s); timeout 180 s."""
    active, standby = active_and_standby
    wait_for("the standby to pause in favour of the active replica",
             lambda: "Pausing operations in favour of" in standby.log_tail(200_000), 30)
    since = utc_now()
    create(dsd_api, namespace, _ready_small("before"))
    wait_converged(kube, dsd_api, namespace, {"before": NONE_CHILDREN},
                   {"before": MAX_MODEL_LEN}, timeout=90)
    # The active replica's writes on "before"'s children and status are in the log; the
    # standby's would be there too (a double write) if it acted while paused.
    by_active = audit_writes(namespace, since)
    by_standby = audit_writes(namespace, since, group=STANDBY_GROUP)
    assert by_active, "the active replica's writes are missing from the audit log"
    assert by_standby == [], by_standby

    killed = time.monotonic()
    active.kill()
    create(dsd_api, namespace, _ready_small("after"))
    wait_for("the standby to resume", lambda: "Resuming operations after the pause"
             in standby.log_tail(500_000), 180)
    resumed = time.monotonic() - killed
    both = {"before": NONE_CHILDREN, "after": NONE_CHILDREN}
    took = wait_converged(kube, dsd_api, namespace, both, dict.fromkeys(both, MAX_MODEL_LEN))
    print(f"\nstandby resumed {resumed:.1f}s after the active replica was killed; the new "
          f"DeepSeekDeployment converged {took:.1f}s later")
    assert audit_writes(namespace, since, group=STANDBY_GROUP), "the standby never wrote"


# --- 5. another field manager changing owned fields -------------------------------------


def _kubectl(kubectl: Path, kubeconfig: Path, *args: str, stdin: str | None = None) -> None:
    subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), *args], input=stdin,
                   capture_output=True, text=True, check=True, timeout=60)


def test_another_field_manager_is_repaired_without_an_apply_war(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        kubectl: Path, kubeconfig: Path) -> None:
    """An intruder takes the Deployment's replicas by server-side apply (forcing the
    conflict) and patches the Service's targetPort: both are set back, with at most 3
    operator writes to the two objects over 30 s (no apply war)."""
    create(dsd_api, namespace, _ready_small("owned"))
    wait_converged(kube, dsd_api, namespace, {"owned": NONE_CHILDREN},
                   {"owned": MAX_MODEL_LEN}, timeout=90)
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    port = core.read_namespaced_service("owned", namespace).spec.ports[0]
    time.sleep(2)
    since = utc_now()
    _kubectl(kubectl, kubeconfig, "apply", "--server-side", "--field-manager=intruder",
             "--force-conflicts", "-f", "-", stdin=yaml.safe_dump({
                 "apiVersion": "apps/v1", "kind": "Deployment",
                 "metadata": {"name": "owned", "namespace": namespace},
                 "spec": {"replicas": 3}}))
    _kubectl(kubectl, kubeconfig, "-n", namespace, "patch", "service", "owned",
             "--field-manager=intruder", "-p",
             json.dumps({"spec": {"ports": [{"port": port.port, "targetPort": 9999}]}}))
    wait_for("the intruder's changes undone", lambda: (
        apps.read_namespaced_deployment("owned", namespace).spec.replicas == 1
        and core.read_namespaced_service("owned", namespace).spec.ports[0].target_port
        == port.target_port), 30)
    time.sleep(30)
    writes = [w for w in audit_writes(namespace, since)
              if w[1] in ("deployments", "services")]
    print(f"\noperator writes to the Deployment and Service in 30 s: {writes}")
    assert 2 <= len(writes) <= 3, writes
    wait_converged(kube, dsd_api, namespace, {"owned": NONE_CHILDREN},
                   {"owned": MAX_MODEL_LEN}, timeout=30)


# --- 6. every child deleted by hand ------------------------------------------------------

ACCESS = {"bindings": [{"role": "user", "subjects": [{"kind": "Group", "name": "ml-users"}]}]}
ACCESS_CHILDREN = NONE_CHILDREN + Counter({"Role": 1, "RoleBinding": 1})
HPA_CHILDREN = NONE_CHILDREN + Counter({"HorizontalPodAutoscaler": 1})


def test_every_child_deleted_by_hand_is_recreated(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        kubectl: Path, kubeconfig: Path) -> None:
    """Each child of a mode-none DeepSeekDeployment with access bindings (ServiceAccount,
    the three ConfigMaps, NetworkPolicy, Role, RoleBinding, Job, Deployment, Service, and
    last the claim, whose pods are deleted too so that it can go) and the
    HorizontalPodAutoscaler of a mode-hpa one, deleted by hand, is recreated (a new uid;
    timeout 60 s each) and both converge again; the claim's download Job runs again; the
    Deployment never leaves the spec's one replica. (The mode-hpa one need not be Ready: no
    metrics adapter serves its HPA.)"""
    create(dsd_api, namespace, _ready_small("del", access=ACCESS))
    create(dsd_api, namespace, _ready_small("hpa", autoscaling={"mode": "hpa"}))
    expected = {"del": ACCESS_CHILDREN, "hpa": HPA_CHILDREN}
    lengths = dict.fromkeys(expected, MAX_MODEL_LEN)
    wait_converged(kube, dsd_api, namespace, expected, lengths, unready_ok={"hpa"},
                   timeout=90)
    targets = [("del", "ServiceAccount", "del"), ("del", "ConfigMap", "del-rbac"),
               ("del", "ConfigMap", "del-runtime"), ("del", "ConfigMap", "del-gateway-policy"),
               ("del", "NetworkPolicy", "del-engine"), ("del", "Role", "del-user"),
               ("del", "RoleBinding", "del-user"), ("del", "Job", None),
               ("del", "Deployment", "del"), ("del", "Service", "del"),
               ("hpa", "HorizontalPodAutoscaler", "hpa"),
               ("del", "PersistentVolumeClaim", "del-model-cache")]
    times = []
    for owner, kind, wanted in targets:
        old = _find(kube, namespace, owner, kind, wanted)
        job = _find(kube, namespace, owner, "Job", None)
        _kubectl(kubectl, kubeconfig, "-n", namespace, "delete", kind.lower(),
                 old.metadata.name, "--wait=false")
        if kind == "PersistentVolumeClaim":  # PVC protection holds it while pods mount it
            _kubectl(kubectl, kubeconfig, "-n", namespace, "delete", "pods", "-l",
                     f"{DEPLOYMENT_LABEL}={owner}", "--wait=false")
        replicas: set[int] = set()

        def recreated(kind: str = kind, owner: str = owner, old: Any = old,
                      replicas: set[int] = replicas) -> bool:
            new = _find(kube, namespace, owner, kind, old.metadata.name, missing_ok=True)
            # After the child: a Deployment recreated between the two reads is seen.
            serving = _find(kube, namespace, "del", "Deployment", "del", missing_ok=True)
            if serving is not None:
                replicas.add(serving.spec.replicas)
            return new is not None and new.metadata.uid != old.metadata.uid

        started = time.monotonic()
        wait_for(f"{kind} {old.metadata.name} recreated", recreated, 60, interval=0.5)
        times.append(f"{kind} {time.monotonic() - started:.1f}s")
        wait_converged(kube, dsd_api, namespace, expected, lengths, unready_ok={"hpa"},
                       timeout=90)
        assert replicas == {1}, f"{kind}: the Deployment's replicas went through {replicas}"
        if kind == "PersistentVolumeClaim":
            new_job = _find(kube, namespace, owner, "Job", None)
            assert new_job.metadata.uid != job.metadata.uid, "the download did not run again"
    print(f"\nrecreated after a delete by hand: {', '.join(times)}")


def _find(kube: client.ApiClient, namespace: str, owner: str, kind: str, name: str | None,
          missing_ok: bool = False) -> Any:
    """The child of ``owner`` of ``kind`` (named ``name``, or the only one when None)."""
    found = [o for o in children(kube, namespace).get(owner, [])
             if o.kind == kind and (name is None or o.metadata.name == name)]
    if missing_ok and not found:
        return None
    assert len(found) == 1, f"{owner}: {kind} {name}: {[o.metadata.name for o in found]}"
    return found[0]
