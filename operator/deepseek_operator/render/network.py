"""The `<name>-engine` NetworkPolicy: the engine pods admit only the gateway, the metrics
scraper and each other.

The engine checks no token and writes no audit line, so the gateway
(`deepseek-operator gateway`, pods labelled `app.kubernetes.io/name: deepseek-gateway`, in
any namespace) is the one way in for requests. Rules (ingress only; egress stays open,
the download Job needs the model hub):

- from gateway pods in any namespace, to the engine's `http` port;
- from the metrics scraper, to the `http` port (both engines serve /metrics there, so the
  scraper can reach the API too: NetworkPolicy filters by port, not by path). Selected by
  `RenderSettings.scraper_namespace_labels` (empty: every namespace) and
  `RenderSettings.scraper_pod_labels` (default `app.kubernetes.io/name: prometheus`);
- from the deployment's own pods, on every port (a LeaderWorkerSet's leader and workers
  talk NCCL and the engine's own RPC).

The policy selects every pod of the DeepSeekDeployment (serving pods, workers, the
download Job's pod). It is enforced only by a CNI plugin that implements NetworkPolicy
(Calico, Cilium, Antrea, ...); elsewhere it is stored and has no effect.
"""

from typing import Any, Final

from ..api import DeepSeekDeployment
from .labels import DEPLOYMENT_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, NAME_LABEL
from .names import network_policy
from .settings import RenderSettings
from .templating import render_manifest

GATEWAY_APP: Final = "deepseek-gateway"
"""`app.kubernetes.io/name` of the gateway's pods (the chart's Deployment sets it)."""


def network_policy_manifest(dsd: DeepSeekDeployment, settings: RenderSettings) -> dict[str, Any]:
    """The NetworkPolicy `<name>-engine` (without labels and owner reference)."""
    return render_manifest(
        "networkpolicy.yaml.j2",
        name=network_policy(dsd),
        pods={DEPLOYMENT_LABEL: dsd.metadata.name, MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        gateway={NAME_LABEL: GATEWAY_APP},
        scraper_namespaces=label_selector(settings.scraper_namespace_labels),
        scraper_pods=label_selector(settings.scraper_pod_labels),
    )


def label_selector(labels: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """A LabelSelector matching `labels`; `{}` (everything) for none. An empty matchLabels
    is left out, as the apiserver leaves it out of what it stores: a rendered one would
    read as drift on every reconcile."""
    return {"matchLabels": dict(labels)} if labels else {}
