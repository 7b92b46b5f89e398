"""Labels, selectors and ownership of every object rendered for a DeepSeekDeployment.

`adopt()` is the one helper that stamps them (like kopf's `adopt()`): namespace, the
recommended `app.kubernetes.io/*` labels plus `deepseek-operator.io/deployment`, and the
owner reference to the custom resource. Selectors are built from the same constants, so
what the controller lists is exactly what rendering labels.
"""

from typing import Any, Final, Literal

from ..api import API_VERSION, GROUP, KIND, DeepSeekDeployment

NAME_LABEL: Final = "app.kubernetes.io/name"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
PART_OF_LABEL: Final = "app.kubernetes.io/part-of"
DEPLOYMENT_LABEL: Final = f"{GROUP}/deployment"

APP_NAME: Final = "deepseek-deployment"
MANAGED_BY_VALUE: Final = "deepseek-operator"
PART_OF_VALUE: Final = "deepseek-operator"

Component = Literal[
    "model-cache",
    "download",
    "server",
    "server-worker",
    "service",
    "autoscaler",
    "rbac",
    "runtime",
    "monitoring",
    "network-policy",
    "gateway-policy",
]
"""`app.kubernetes.io/component` values. `server` marks the pods that serve the API (every
pod of a Deployment, the leader pods of a LeaderWorkerSet) and the workload itself;
`server-worker` the LeaderWorkerSet pods that only hold GPUs for a leader."""

SERVING_COMPONENT: Final[Component] = "server"


def children_selector(name: str) -> str:
    """Label selector of every object the operator renders for the DeepSeekDeployment `name`
    (pods included): `deepseek-operator.io/deployment=<name>,app.kubernetes.io/managed-by=
    deepseek-operator`."""
    return f"{DEPLOYMENT_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"


def pod_selector_labels(name: str) -> dict[str, str]:
    """Labels that select the serving pods of `name` (Deployment selector, Service selector)."""
    return {DEPLOYMENT_LABEL: name, COMPONENT_LABEL: SERVING_COMPONENT}


def worker_selector_labels(name: str) -> dict[str, str]:
    """Labels that select the LeaderWorkerSet worker pods of `name` (those that hold GPUs
    for a leader and serve no API)."""
    return {DEPLOYMENT_LABEL: name, COMPONENT_LABEL: "server-worker"}


def pod_selector(name: str) -> str:
    """Label selector of the serving pods of `name`, one per replica (for status.selector of
    the scale subresource): `deepseek-operator.io/deployment=<name>,
    app.kubernetes.io/component=server`. LeaderWorkerSet workers are not selected."""
    return ",".join(f"{key}={value}" for key, value in pod_selector_labels(name).items())


def labels_for(dsd: DeepSeekDeployment, component: Component) -> dict[str, str]:
    """The labels of an object (or pod template) of `dsd` in role `component`."""
    name = dsd.metadata.name
    return {
        NAME_LABEL: APP_NAME,
        INSTANCE_LABEL: name,
        COMPONENT_LABEL: component,
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        PART_OF_LABEL: PART_OF_VALUE,
        DEPLOYMENT_LABEL: name,
    }


def owner_reference(dsd: DeepSeekDeployment) -> dict[str, Any]:
    """The controller owner reference to `dsd` (needs metadata.uid)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": dsd.metadata.name,
        "uid": dsd.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def adopt(
    obj: dict[str, Any], dsd: DeepSeekDeployment, component: Component, *, owned: bool = True
) -> dict[str, Any]:
    """Stamp `obj` (a rendered manifest, changed in place and returned) as a child of `dsd`.

    Sets metadata.namespace to the custom resource's, merges `labels_for(dsd, component)`
    over the object's own labels, and, when `owned` and the custom resource has a uid (it
    has one when read from a cluster; a file given to `deepseek-operator render` may not),
    sets the controller owner reference so that deleting the custom resource deletes the
    object. `owned=False` is for objects that must outlive it (a retained model cache).
    """
    metadata = obj.setdefault("metadata", {})
    metadata["namespace"] = dsd.metadata.namespace
    metadata["labels"] = {**metadata.get("labels", {}), **labels_for(dsd, component)}
    if owned and dsd.metadata.uid:
        metadata["ownerReferences"] = [owner_reference(dsd)]
    return obj
