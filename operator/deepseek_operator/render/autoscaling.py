"""Request-rate autoscaling objects: the HorizontalPodAutoscaler (mode hpa), the KEDA
ScaledObject (mode keda), and the PromQL both the KEDA trigger and the operator's own
autoscaler read. Both scale to ceil(QPS / targetQPSPerReplica): an AverageValue target
divides the summed rate by the replica count.

Request counters (one increment per finished request): vLLM `vllm:request_success_total`
(vllm/v1/metrics/loggers.py), SGLang `sglang:num_requests_total` (docs: "Production
Metrics"). Serving pods are matched by name: `<name>-<hash>-<suffix>` (Deployment: the
ReplicaSet's pod-template-hash, at most 10 characters, and a 5-character random suffix) or
`<name>-<group>` (LeaderWorkerSet leaders, which run the API server; their workers are
`<name>-<group>-<index>`), a pattern that does not match the pods of a DeepSeekDeployment
whose name merely starts with `<name>-` (its leaders `<name>-x-0` have a 1-character tail).

Mode hpa reads the per-pod metric `HPA_METRIC` from the custom metrics API, which a
prometheus-adapter rule must expose, for example::

    - seriesQuery: >-
        {__name__=~"vllm:request_success_total|sglang:num_requests_total",
         namespace!="",pod!=""}
      resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
      name: {as: "deepseek_operator_requests_per_second"}
      metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'

With the gateway in front of every deployment (`RenderSettings.gateway`, `run --gateway`)
the default query reads the gateway instead: its counter of requests
(`GATEWAY_REQUESTS`, labels namespace and deployment, one increment per request it
received) as a rate, plus its gauge of requests held in the queue (`GATEWAY_QUEUED`), which
are waiting for a replica and counted nowhere else. So a request held for a deployment at
zero replicas reads as at least 1 and the policy brings one replica up. A series that is
missing reads as 0 while the other is present; with neither (no gateway scraped, or no
request ever seen) the query has no result and the autoscaler reports metrics as missing
and holds, as for the engine counters.

spec.autoscaling.prometheus.query replaces the default query. It may use the
placeholders `{namespace}` (the custom resource's namespace), `{name}` (its name) and
`{pod_regex}` (the serving-pod name pattern above); other `{identifier}` placeholders are
errors. PromQL label matchers such as `{job="x"}` are not placeholders.
"""

import re
from typing import Any, Final

from ..api import DeepSeekDeployment, FieldIssue, InvalidSpecError
from ..catalog import SizingResult
from .kinds import WORKLOAD_API_VERSIONS
from .labels import DEPLOYMENT_LABEL, MANAGED_BY_LABEL
from .names import autoscaler, workload
from .templating import render_manifest
from .workload import workload_kind

HPA_METRIC: Final = "deepseek_operator_requests_per_second"
"""Custom metric (requests/s of one pod) the HorizontalPodAutoscaler averages."""

REQUEST_COUNTERS: Final[dict[str, str]] = {
    "vllm": "vllm:request_success_total",
    "sglang": "sglang:num_requests_total",
}
"""Per-engine counter of finished requests."""

GATEWAY_REQUESTS: Final = "deepseek_gateway_requests_total"
"""The gateway's counter of requests received, per namespace and deployment."""
GATEWAY_QUEUED: Final = "deepseek_gateway_queued_requests"
"""The gateway's gauge of requests held waiting for a replica, per namespace and deployment."""

KEDA_FALLBACK_FAILURES: Final = 3
"""Failed metric reads (one per HPA sync, 15 s by default) before KEDA's fallback holds
the replica count: about 45 s, the first read that fails plus two retries."""

RATE_WINDOW: Final = "1m"
PLACEHOLDERS: Final = ("namespace", "name", "pod_regex")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_QUERY_FIELD = "spec.autoscaling.prometheus.query"
_TARGET_FIELD = "spec.autoscaling.targetQPSPerReplica"


def pod_name_regex(name: str) -> str:
    """RE2 pattern of the serving pods' names of the DeepSeekDeployment `name`."""
    return f"{name}-([0-9]+|[a-z0-9]{{1,10}}-[a-z0-9]{{5}})"


def gateway_qps_query(namespace: str, name: str) -> str:
    """PromQL for the demand on the DeepSeekDeployment `namespace`/`name` as the gateway
    sees it: requests/s received plus requests queued (module docstring), e.g.
    `(A + B) or A or B` with A = `sum(rate(deepseek_gateway_requests_total{namespace="ai",
    deployment="r1"}[1m]))` and B = `sum(deepseek_gateway_queued_requests{...})`."""
    matchers = f'{{namespace="{namespace}",deployment="{name}"}}'
    rate = f"sum(rate({GATEWAY_REQUESTS}{matchers}[{RATE_WINDOW}]))"
    queued = f"sum({GATEWAY_QUEUED}{matchers})"
    return f"({rate} + {queued}) or {rate} or {queued}"


def default_qps_query(dsd: DeepSeekDeployment, gateway: bool = False) -> str:
    """PromQL for the requests per second of `dsd`: with `gateway`, `gateway_qps_query`;
    otherwise over all its serving pods, e.g.
    `sum(rate(vllm:request_success_total{namespace="ai",pod=~"r1-(...)"}[1m]))`."""
    if gateway:
        return gateway_qps_query(dsd.metadata.namespace, dsd.metadata.name)
    counter = REQUEST_COUNTERS[dsd.spec.engine.type]
    namespace, name = dsd.metadata.namespace, dsd.metadata.name
    return (
        f'sum(rate({counter}{{namespace="{namespace}",pod=~"{pod_name_regex(name)}"}}'
        f"[{RATE_WINDOW}]))"
    )


def qps_query(dsd: DeepSeekDeployment, gateway: bool = False) -> str:
    """The query autoscaling reads: spec.autoscaling.prometheus.query with its placeholders
    filled in (module docstring), or `default_qps_query(dsd, gateway)` when it is empty.

    Raises InvalidSpecError naming spec.autoscaling.prometheus.query for an unknown
    placeholder or a query of only whitespace, and naming spec.autoscaling.minReplicas
    for minReplicas 0 with the engine's default query (without the gateway), which sees
    no request while no pod runs.
    """
    override = dsd.spec.autoscaling.prometheus.query
    if not override:
        if dsd.spec.autoscaling.min_replicas == 0 and not gateway and (
                dsd.spec.autoscaling.mode in ("operator", "keda")):
            raise InvalidSpecError([FieldIssue("spec.autoscaling.minReplicas", (
                "minReplicas 0 needs a query that sees requests while no replica runs: the "
                "default query without the gateway counts requests the serving pods "
                "finished. Run the operator with --gateway (the Helm chart's default), set "
                "prometheus.query to a request metric in front of the pods, or set "
                "minReplicas to 1"))])
        return default_qps_query(dsd, gateway)
    if not override.strip():
        raise InvalidSpecError(
            [FieldIssue(_QUERY_FIELD, "must be a PromQL expression, or empty for the default")]
        )
    values = {
        "namespace": dsd.metadata.namespace,
        "name": dsd.metadata.name,
        "pod_regex": pod_name_regex(dsd.metadata.name),
    }
    unknown = sorted({match.group(1) for match in _PLACEHOLDER.finditer(override)} - set(values))
    if unknown:
        known = ", ".join(f"{{{key}}}" for key in PLACEHOLDERS)
        found = ", ".join(f"{{{key}}}" for key in unknown)
        raise InvalidSpecError(
            [FieldIssue(_QUERY_FIELD, f"unknown placeholder {found}; known: {known}")]
        )
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], override)


def average_value(target_qps: float) -> str:
    """targetQPSPerReplica as a Kubernetes quantity for an AverageValue target, in whole
    thousandths of a request per second (`2`, `1500m`).

    Raises InvalidSpecError naming spec.autoscaling.targetQPSPerReplica when it rounds to
    0 (below 0.0005 requests/s).
    """
    if round(target_qps * 1000) <= 0:
        raise InvalidSpecError(
            [
                FieldIssue(
                    _TARGET_FIELD,
                    f"{target_qps!r} requests/s is below the HorizontalPodAutoscaler's "
                    "resolution of 0.001: use at least 0.001",
                )
            ]
        )
    return milli_quantity(target_qps)


def milli_quantity(value: float) -> str:
    """A number >= 0 as a Kubernetes quantity in canonical form, rounded to thousandths
    (`2`, `1500m`, `60m`, `0`): the form the apiserver returns, so a re-apply finds no
    difference."""
    milli = round(value * 1000)
    whole, rest = divmod(milli, 1000)
    return str(whole) if rest == 0 else f"{milli}m"


def scale_target(dsd: DeepSeekDeployment, sizing: SizingResult) -> dict[str, str]:
    """scaleTargetRef of the workload (both kinds have the scale subresource)."""
    kind = workload_kind(dsd, sizing)
    return {"apiVersion": WORKLOAD_API_VERSIONS[kind], "kind": kind, "name": workload(dsd)}


def hpa_manifest(dsd: DeepSeekDeployment, sizing: SizingResult,
                 tolerance: bool = True) -> dict[str, Any]:
    """The HorizontalPodAutoscaler of mode hpa (without labels and owner reference); with
    ``tolerance``, spec.autoscaling's tolerances go into ``behavior``.

    Raises InvalidSpecError naming the tolerance field whose value the HPA's quantity
    cannot hold (finer than 0.001), or targetQPSPerReplica as `average_value` does.
    """
    spec = dsd.spec.autoscaling
    tolerances: dict[str, str | None] = {"scale_up_tolerance": None, "scale_down_tolerance": None}
    if tolerance:
        tolerances = {
            "scale_up_tolerance": _tolerance_quantity(spec.scale_up_tolerance,
                                                      "scaleUpTolerance"),
            "scale_down_tolerance": _tolerance_quantity(spec.scale_down_tolerance,
                                                        "scaleDownTolerance"),
        }
    return render_manifest(
        "hpa.yaml.j2",
        name=autoscaler(dsd),
        target=scale_target(dsd, sizing),
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        metric=HPA_METRIC,
        average_value=average_value(spec.target_qps_per_replica),
        scale_up_seconds=spec.scale_up_stabilization_seconds,
        scale_down_seconds=spec.scale_down_stabilization_seconds,
        **tolerances,
    )


def _tolerance_quantity(value: float, field: str) -> str:
    """``value`` as the HPA's tolerance quantity; refused when rounding to thousandths
    would change it, so the HPA and the operator's policy never use different bands."""
    if abs(round(value * 1000) - value * 1000) > 1e-6:
        raise InvalidSpecError([FieldIssue(
            f"spec.autoscaling.{field}",
            f"{value!r} is finer than the HorizontalPodAutoscaler's resolution of 0.001: "
            "use a multiple of 0.001")])
    return milli_quantity(value)


def scaled_object_manifest(dsd: DeepSeekDeployment, sizing: SizingResult,
                           gateway: bool = False) -> dict[str, Any]:
    """The KEDA ScaledObject of mode keda (without labels and owner reference), its query
    `qps_query(dsd, gateway)`. With
    minReplicas 0 KEDA scales to zero after scaleToZeroIdleSeconds without requests
    (cooldownPeriod) and back to one on the first request the query sees.

    ``fallback`` (kedacore/keda pkg/fallback): after KEDA_FALLBACK_FAILURES failed reads of
    the query KEDA serves the HPA the current replica count, at least
    max(minReplicas, 1) (behavior currentReplicasIfHigher), and sets the ScaledObject's
    Fallback condition; ``replicas`` is never 0, which would let KEDA's own loop take a
    failing query for idleness and scale to zero
    (pkg/scaling/executor/scale_scaledobjects.go).

    The annotation ``scaledobject.keda.sh/hpa-excluded-labels`` keeps the operator's
    ownership labels off the HPA that KEDA makes from the ScaledObject (KEDA copies the
    other labels), so the operator never takes KEDA's HPA for a child of its own."""
    spec = dsd.spec.autoscaling
    return render_manifest(
        "scaledobject.yaml.j2",
        name=autoscaler(dsd),
        target=scale_target(dsd, sizing),
        polling_interval=spec.interval_seconds,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        cooldown_period=spec.scale_to_zero_idle_seconds if spec.min_replicas == 0 else None,
        scale_up_seconds=spec.scale_up_stabilization_seconds,
        scale_down_seconds=spec.scale_down_stabilization_seconds,
        server_address=spec.prometheus.url,
        query=qps_query(dsd, gateway),
        # KEDA parses the threshold as a float; repr is exact and round-trips.
        threshold=repr(spec.target_qps_per_replica),
        excluded_labels=f"{MANAGED_BY_LABEL},{DEPLOYMENT_LABEL}",
        fallback_failures=KEDA_FALLBACK_FAILURES,
        fallback_replicas=max(spec.min_replicas, 1),
    )

