"""`render`: every child object of a DeepSeekDeployment, in apply order."""

from typing import Any

from ..api import DeepSeekDeployment, FieldIssue, InvalidSpecError
from ..catalog import size_deployment
from .access import rbac_config_map_manifest, role_manifests, service_account_manifest
from .autoscaling import hpa_manifest, qps_query, scaled_object_manifest
from .download import download_job_manifest
from .engine_key_access import engine_key_access_manifests
from .gateway_policy import gateway_policy_manifest
from .labels import adopt
from .monitoring import pod_monitor_manifest
from .network import network_policy_manifest
from .runtime import runtime_config, runtime_config_map_manifest
from .service import service_manifest
from .settings import RenderSettings
from .source import creates_model_cache, model_source, needs_download
from .storage import model_cache_manifest, retains_model_cache
from .workload import workload_manifest


def render(dsd: DeepSeekDeployment, settings: RenderSettings) -> list[dict[str, Any]]:
    """The desired children of `dsd` as manifests (see the package docstring for the
    contract). Order: ServiceAccount, ConfigMaps `<name>-rbac`, `<name>-runtime` and
    `<name>-gateway-policy`, Roles, RoleBindings (spec.access's, then the gateway's
    `<name>.engine-api-key`), NetworkPolicy `<name>-engine`, model-cache
    PVC, download Job, Deployment or LeaderWorkerSet, Service,
    HorizontalPodAutoscaler or ScaledObject, PodMonitor; each only when it applies.

    Raises InvalidSpecError (the catalog's UnknownNameError and SizingError included) naming
    the offending field, e.g. `spec.gpu.count` for a spec that does not fit.
    """
    if not dsd.metadata.namespace:
        raise InvalidSpecError(
            [FieldIssue("metadata.namespace", "required: the children live in the namespace")]
        )
    sizing = size_deployment(dsd.spec)
    if dsd.spec.autoscaling.mode in ("operator", "keda"):
        # Refuse a bad query override now, not when the autoscaler reads it.
        qps_query(dsd, settings.gateway)
    source = model_source(dsd)
    runtime = runtime_config(dsd, sizing, settings, source)
    objects = [
        adopt(service_account_manifest(dsd), dsd, "rbac"),
        adopt(rbac_config_map_manifest(dsd), dsd, "rbac"),
        adopt(runtime_config_map_manifest(dsd, runtime), dsd, "runtime"),
        adopt(gateway_policy_manifest(dsd, sizing, settings), dsd, "gateway-policy"),
        *(adopt(obj, dsd, "rbac") for obj in role_manifests(dsd)),
        *(adopt(obj, dsd, "rbac") for obj in engine_key_access_manifests(dsd, settings)),
        adopt(network_policy_manifest(dsd, settings), dsd, "network-policy"),
    ]
    if creates_model_cache(dsd):
        objects.append(
            adopt(model_cache_manifest(dsd, settings), dsd, "model-cache",
                  owned=not retains_model_cache(dsd))
        )
    if needs_download(dsd):
        objects.append(adopt(download_job_manifest(dsd, settings), dsd, "download"))
    objects.append(adopt(workload_manifest(dsd, sizing, settings, source, runtime), dsd, "server"))
    objects.append(adopt(service_manifest(dsd), dsd, "service"))
    mode = dsd.spec.autoscaling.mode
    if mode == "hpa":
        objects.append(adopt(hpa_manifest(dsd, sizing, settings.hpa_tolerance), dsd,
                             "autoscaler"))
    elif mode == "keda":
        objects.append(adopt(scaled_object_manifest(dsd, sizing, settings.gateway), dsd,
                             "autoscaler"))
    if settings.pod_monitor:
        objects.append(adopt(pod_monitor_manifest(dsd), dsd, "monitoring"))
    return objects
