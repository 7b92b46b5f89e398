"""Names of the objects rendered for a DeepSeekDeployment, for rendering and the controller.

Every child lives in the custom resource's namespace. `<name>` is metadata.name (at most 40
characters, so each name below fits the 63-character limit of Service and label values).
"""

from ..api import DeepSeekDeployment
from .download import download_job
from .source import model_cache_claim

__all__ = [
    "autoscaler",
    "download_job",
    "engine_key_access",
    "gateway_policy_config_map",
    "model_cache_claim",
    "network_policy",
    "pod_monitor",
    "rbac_config_map",
    "role",
    "runtime_config_map",
    "service",
    "service_account",
    "workload",
]


def workload(dsd: DeepSeekDeployment) -> str:
    """The Deployment or LeaderWorkerSet: `<name>`."""
    return dsd.metadata.name


def service(dsd: DeepSeekDeployment) -> str:
    """The Service of the OpenAI-compatible API: `<name>`."""
    return dsd.metadata.name


def autoscaler(dsd: DeepSeekDeployment) -> str:
    """The HorizontalPodAutoscaler or KEDA ScaledObject: `<name>`."""
    return dsd.metadata.name


def pod_monitor(dsd: DeepSeekDeployment) -> str:
    """The PodMonitor: `<name>`."""
    return dsd.metadata.name


def service_account(dsd: DeepSeekDeployment) -> str:
    """The ServiceAccount of the engine pods: `<name>`."""
    return dsd.metadata.name


def rbac_config_map(dsd: DeepSeekDeployment) -> str:
    """The ConfigMap holding permissions.yaml: `<name>-rbac`."""
    return f"{dsd.metadata.name}-rbac"


def runtime_config_map(dsd: DeepSeekDeployment) -> str:
    """The ConfigMap holding the effective engine configuration: `<name>-runtime`."""
    return f"{dsd.metadata.name}-runtime"


def role(dsd: DeepSeekDeployment, role_name: str) -> str:
    """The Role and RoleBinding of access role `role_name` (a key of spec.access.roles):
    `<name>-<role>`."""
    return f"{dsd.metadata.name}-{role_name}"


def gateway_policy_config_map(dsd: DeepSeekDeployment) -> str:
    """The ConfigMap holding the gateway policy (policy.yaml), whose data belongs to the
    holders of system:configure: `<name>-gateway-policy`."""
    return f"{dsd.metadata.name}-gateway-policy"


def network_policy(dsd: DeepSeekDeployment) -> str:
    """The NetworkPolicy that admits only the gateway, the metrics scraper and the
    deployment's own pods to its engine pods: `<name>-engine`."""
    return f"{dsd.metadata.name}-engine"


def engine_key_access(dsd: DeepSeekDeployment) -> str:
    """`<name>.engine-api-key`: the Role and RoleBinding letting the gateway read the
    engine's API key Secret. The `.` keeps it apart from every `<name>-<role>` of
    spec.access (role names have no `.`)."""
    return f"{dsd.metadata.name}.engine-api-key"
