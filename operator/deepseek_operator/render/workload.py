"""The serving workload: a Deployment when a replica fits one node, a LeaderWorkerSet
(leaderworkerset.x-k8s.io/v1) when it spans nodes, and who owns its replica count."""

from typing import Any, Final, Literal

from ..api import SINGLE_WRITER_ACCESS_MODES, DeepSeekDeployment
from ..catalog import SizingResult, size_deployment
from .labels import pod_selector_labels
from .names import workload
from .pod import pod_template, startup_budget_seconds
from .settings import RenderSettings
from .source import ModelSource
from .templating import render_manifest

WorkloadKind = Literal["Deployment", "LeaderWorkerSet"]

ROLLOUT_MARGIN_SECONDS: Final = 300
"""Added to the startup budget for the Deployment's progressDeadlineSeconds (scheduling,
image pull), so a slow model load is not reported as a failed rollout."""


LWS_ROLLING_UPDATE: Final = {"maxSurge": 0, "maxUnavailable": 1}
"""A LeaderWorkerSet's rolling update: one group at a time. The LWS controller (v0.8.0)
copies maxUnavailable into its leader StatefulSet, which Kubernetes refuses at 0
(``spec.updateStrategy.rollingUpdate.maxUnavailable: cannot be 0``; kubernetes-sigs/lws
issue 776), so the group is never created; and with maxUnavailable 1 it updates an old
group while a surge group starts, so a surge would cost a whole group of GPUs without
keeping one more group serving."""


def rolling_update(dsd: DeepSeekDeployment,
                   kind: WorkloadKind = "Deployment") -> dict[str, int]:
    """``maxSurge`` / ``maxUnavailable`` of the workload's rolling update.

    Make before break (1 / 0): a new pod must be Ready before an old one goes, so a change
    the cluster cannot place (a GPU type it lacks, no GPU free) leaves the old pods serving
    and the rollout waiting, instead of taking a replica down. A single-writer model cache
    (ReadWriteOnce, ReadWriteOncePod) attaches to one node or pod, where a surge pod could
    never mount it: then break before make (0 / 1), as the only way to roll. A
    LeaderWorkerSet always rolls one group at a time (LWS_ROLLING_UPDATE).
    """
    if kind == "LeaderWorkerSet":
        return dict(LWS_ROLLING_UPDATE)
    if dsd.spec.storage.access_mode in SINGLE_WRITER_ACCESS_MODES:
        return {"maxSurge": 0, "maxUnavailable": 1}
    return {"maxSurge": 1, "maxUnavailable": 0}


def workload_kind(dsd: DeepSeekDeployment, sizing: SizingResult | None = None) -> WorkloadKind:
    """`Deployment` when one replica fits one node, `LeaderWorkerSet` when it spans nodes.

    `sizing` is the result of `catalog.size_deployment(dsd.spec)`, computed when omitted
    (then raises what that raises: UnknownNameError, SizingError).
    """
    result = sizing if sizing is not None else size_deployment(dsd.spec)
    return "LeaderWorkerSet" if result.nodes_per_replica > 1 else "Deployment"


def workload_replicas(dsd: DeepSeekDeployment) -> int | None:
    """The replica count the operator writes into the workload, or None to leave it out.

    - autoscaling.mode `none`: spec.replicas.
    - `operator`: status.autoscaling.desiredReplicas (the operator's autoscaler decision)
      when set, else spec.replicas; either clamped to [minReplicas, maxReplicas], so a
      changed range applies at once.
    - `hpa`, `keda`: None. The HorizontalPodAutoscaler (KEDA's too) owns the count; with
      server-side apply, leaving the field out releases the operator's ownership of it.
    """
    autoscaling = dsd.spec.autoscaling
    if autoscaling.mode == "none":
        return dsd.spec.replicas
    if autoscaling.mode in ("hpa", "keda"):
        return None
    decided = dsd.status.autoscaling.desired_replicas if dsd.status.autoscaling else None
    wanted = decided if decided is not None else dsd.spec.replicas
    return max(autoscaling.min_replicas, min(autoscaling.max_replicas, wanted))


def workload_manifest(
    dsd: DeepSeekDeployment,
    sizing: SizingResult,
    settings: RenderSettings,
    source: ModelSource,
    runtime: dict[str, Any],
) -> dict[str, Any]:
    """The Deployment or LeaderWorkerSet (without labels and owner reference)."""
    name = workload(dsd)
    replicas = workload_replicas(dsd)
    if workload_kind(dsd, sizing) == "Deployment":
        return render_manifest(
            "deployment.yaml.j2",
            name=name,
            replicas=replicas,
            selector=pod_selector_labels(name),
            progress_deadline_seconds=startup_budget_seconds(sizing, settings)
            + ROLLOUT_MARGIN_SECONDS,
            rolling_update=rolling_update(dsd),
            pod_template=pod_template(dsd, sizing, settings, source, "single", runtime),
        )
    return render_manifest(
        "leaderworkerset.yaml.j2",
        name=name,
        replicas=replicas,
        size=sizing.nodes_per_replica,
        rolling_update=rolling_update(dsd, "LeaderWorkerSet"),
        leader_template=pod_template(dsd, sizing, settings, source, "leader", runtime),
        worker_template=pod_template(dsd, sizing, settings, source, "worker", runtime),
    )
