"""`deepseek-operator status NAME`: one DeepSeekDeployment's pipeline at a glance.

Claim, download (with a progress bar while it runs), workload replicas, scaling decision
and endpoint, one line each, from the object's status (the conditions say the same in
more words). `pipeline_text` is pure (a stored object in, text out); `fetch` reads the
object through the Kubernetes API (kubeconfig or in-cluster credentials).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

from .api import DeepSeekDeploymentStatus
from .api.constants import GROUP, PLURAL, VERSION
from .controller.reconcile import PROGRESS_REASONS

BAR_WIDTH: Final = 30
GIB: Final = 2**30
MIB: Final = 2**20
MARKS: Final = {"True": "ok", "False": "..", "Unknown": ".."}


def progress_bar(percent: float, width: int = BAR_WIDTH) -> str:
    """``[#####-----]`` with ``width`` cells, ``percent`` (0-100) of them filled."""
    filled = max(0, min(width, round(width * percent / 100)))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes
                                                    else f"{secs}s")


def _mark(status: str, reason: str) -> str:
    if status == "False" and reason not in PROGRESS_REASONS:
        return "!!"
    return MARKS.get(status, "..")


def pipeline_text(obj: Mapping[str, Any]) -> str:
    """The pipeline view of a stored DeepSeekDeployment (a dict as the API returns it).

    One line per stage, marked ``ok`` (done), ``..`` (on its way) or ``!!`` (a problem),
    then the condition's reason and message. A stalled deployment (Stalled=True) gets a
    ``stalled`` line with why, and the stages it never reached say they are blocked rather
    than "not reported yet". Raises pydantic's ValidationError for a status that is not the
    operator's.
    """
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = DeepSeekDeploymentStatus.model_validate(obj.get("status") or {})
    conds = {c.type: c for c in status.conditions}
    lines = [f"{meta.get('namespace', '')}/{meta.get('name', '')}: "
             f"{status.phase or 'not reconciled yet'} (model "
             f"{(spec.get('model') or {}).get('name', '?')})"]

    stall = conds.get("Stalled")
    blocked = f"blocked: stalled by {stall.reason}" if stall and stall.status == "True" else ""
    if stall is not None and blocked:
        lines.append(f"{'stalled':<9} !!  {stall.reason}: {stall.message}")

    def stage(label: str, cond_type: str, detail: str = "") -> None:
        cond = conds.get(cond_type)
        if cond is None:
            lines.append(f"{label:<9} !!  {blocked}" if blocked
                         else f"{label:<9} ..  not reported yet")
            return
        lines.append(f"{label:<9} {_mark(cond.status, cond.reason)}  {cond.reason}: "
                     f"{detail or cond.message}")

    stage("claim", "StorageReady")
    cache = status.model_cache
    running = conds.get("ModelCached")
    if running is not None and running.reason == "Downloading" and cache is not None \
            and cache.bytes_present is not None:  # the figures follow on their own line
        stage("download", "ModelCached", running.message.split(": ", 1)[0])
    else:
        stage("download", "ModelCached")
    if cache is not None and cache.bytes_present is not None:
        figures = f"{cache.bytes_present / GIB:.1f}"
        if cache.bytes_expected:
            figures += f" / {cache.bytes_expected / GIB:.1f}"
        figures += " GiB"
        if cache.bytes_per_second is not None:
            figures += f"  {cache.bytes_per_second / MIB:.1f} MiB/s"
        if cache.eta_seconds is not None:
            figures += f"  ETA {_duration(cache.eta_seconds)}"
        bar = (f"{progress_bar(cache.percent)} {cache.percent:5.1f} %  "
               if cache.percent is not None else "")
        lines.append(f"{'':<9}     {bar}{figures}")
    ready, desired = status.ready_replicas or 0, status.desired_replicas or 0
    stage("workload", "Ready", f"{ready}/{desired} replicas ready ({status.replicas or 0} "
          "exist)")
    scaler = status.autoscaling
    decision = ""
    if scaler is not None and scaler.desired_replicas is not None:
        qps = "" if scaler.observed_qps is None else f" at {scaler.observed_qps:.2f} QPS"
        decision = f"{scaler.desired_replicas} replicas{qps}: {scaler.reason or ''}".rstrip(": ")
    mode = (spec.get("autoscaling") or {}).get("mode", "operator")
    lines.append(_scaling_line(mode, conds.get("AutoscalerReady"), decision, blocked))
    lines.append(f"{'endpoint':<9} {'ok' if status.endpoint else '..'}  "
                 f"{status.endpoint or 'none yet'}")
    return "\n".join(lines)


def _scaling_line(mode: str, cond: Any, decision: str, blocked: str) -> str:
    if cond is None:
        return (f"{'scaling':<9} !!  mode {mode}: {blocked}" if blocked
                else f"{'scaling':<9} ..  mode {mode}: not reported yet")
    return (f"{'scaling':<9} {_mark(cond.status, cond.reason)}  mode {mode}: "
            f"{decision or cond.message}")


def fetch(namespace: str, name: str) -> dict[str, Any] | None:
    """The DeepSeekDeployment ``namespace/name`` from the API (KUBECONFIG, ~/.kube/config or
    in-cluster credentials), None when it does not exist. Raises kubernetes'
    ConfigException without credentials and ApiException for other API errors."""
    from kubernetes import client, config
    from kubernetes.client import ApiException

    config.load_config()  # type: ignore[no-untyped-call]
    try:
        obj = client.CustomObjectsApi().get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return cast(dict[str, Any], obj)
