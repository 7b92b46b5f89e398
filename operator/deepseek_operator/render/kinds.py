"""The kinds of object a DeepSeekDeployment owns, declared once.

Everything that needs the list derives it from ``CHILD_KINDS``: the kinds ``render`` may
emit, the controller's apply order and child watches (one kopf watch per kind, so a hand
edit to any child is repaired at once), and the workload kinds with their API versions.
The order is the apply order: identity and storage first, the workload after what it
mounts and runs as (and the NetworkPolicy that guards its pods), then what points at the
workload.
"""

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class ChildKind:
    """One kind of child object.

    ``api_version``: group/version as in a manifest (``apps/v1``). ``kind``: the Kind.
    ``plural``: the resource name (for watches and RBAC). ``workload``: True for the kinds
    that run the serving pods (one of them exists per DeepSeekDeployment).
    """

    api_version: str
    kind: str
    plural: str
    workload: bool = False


CHILD_KINDS: Final[tuple[ChildKind, ...]] = (
    ChildKind("v1", "ServiceAccount", "serviceaccounts"),
    ChildKind("v1", "ConfigMap", "configmaps"),
    ChildKind("rbac.authorization.k8s.io/v1", "Role", "roles"),
    ChildKind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    ChildKind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    ChildKind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ChildKind("batch/v1", "Job", "jobs"),
    ChildKind("apps/v1", "Deployment", "deployments", workload=True),
    ChildKind("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "leaderworkersets",
              workload=True),
    ChildKind("v1", "Service", "services"),
    ChildKind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    ChildKind("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"),
    ChildKind("monitoring.coreos.com/v1", "PodMonitor", "podmonitors"),
)

APPLY_ORDER: Final[dict[str, int]] = {c.kind: i for i, c in enumerate(CHILD_KINDS)}
"""Kind -> position in the apply order."""

WORKLOAD_API_VERSIONS: Final[dict[str, str]] = {
    c.kind: c.api_version for c in CHILD_KINDS if c.workload}
"""Workload kind -> apiVersion (``Deployment`` -> ``apps/v1``, ``LeaderWorkerSet`` ->
``leaderworkerset.x-k8s.io/v1``)."""
