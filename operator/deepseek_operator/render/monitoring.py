"""The PodMonitor (Prometheus Operator, monitoring.coreos.com/v1) of the serving pods, only
when `RenderSettings.pod_monitor` says its CRD exists. Both engines serve Prometheus
metrics on their HTTP port (SGLang with --enable-metrics, which the operator sets)."""

from typing import Any, Final

from ..api import DeepSeekDeployment
from .engine import METRICS_PATH
from .labels import pod_selector_labels
from .names import pod_monitor
from .templating import render_manifest

SCRAPE_INTERVAL: Final = "15s"


def pod_monitor_manifest(dsd: DeepSeekDeployment) -> dict[str, Any]:
    """The PodMonitor (without labels and owner reference)."""
    return render_manifest(
        "podmonitor.yaml.j2",
        name=pod_monitor(dsd),
        selector=pod_selector_labels(dsd.metadata.name),
        path=METRICS_PATH,
        interval=SCRAPE_INTERVAL,
    )
