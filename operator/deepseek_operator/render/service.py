"""The Service of the OpenAI-compatible API and the endpoint URL it gives."""

from typing import Any

from ..api import DeepSeekDeployment
from .labels import pod_selector_labels
from .names import service
from .settings import RenderSettings
from .templating import render_manifest


def endpoint(dsd: DeepSeekDeployment, settings: RenderSettings) -> str:
    """Base URL of the OpenAI-compatible API inside the cluster: the gateway's,
    `<settings.gateway_url>/v1`, when the operator knows it; else the engine Service's,
    `http://<service>.<namespace>.svc.<cluster domain>:<port>/v1`."""
    if settings.gateway_url:
        return f"{settings.gateway_url.rstrip('/')}/v1"
    return (
        f"http://{service(dsd)}.{dsd.metadata.namespace}.svc.{settings.cluster_domain}:"
        f"{dsd.spec.service.port}/v1"
    )


def service_manifest(dsd: DeepSeekDeployment) -> dict[str, Any]:
    """The Service (without labels and owner reference): port `http` from spec.service to
    the engine container's `http` port, selecting the serving pods."""
    return render_manifest(
        "service.yaml.j2",
        name=service(dsd),
        type=dsd.spec.service.type,
        selector=pod_selector_labels(dsd.metadata.name),
        port=dsd.spec.service.port,
    )
