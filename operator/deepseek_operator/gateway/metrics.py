"""The gateway's Prometheus metrics (prometheus-client), served on `/metrics`.

Every series carries `namespace` and `deployment` (the DeepSeekDeployment). Requests count
once they are routed to a deployment and authorized: an anonymous flood must not wake or
scale GPUs. The autoscaler's default query reads `deepseek_gateway_requests_total` when the
gateway is in use (it counts requests held while no replica is up, which the engine's own
counters cannot).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LABELS = ("namespace", "deployment")
# Seconds: from a cached-auth proxy hop (ms) to a cold model load holding a request (15 min).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 120.0, 300.0, 900.0)


@dataclass
class GatewayMetrics:
    """The metric families, in their own registry (one per gateway; tests make several)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "deepseek_gateway_requests", "Requests routed to a deployment and authorized, "
            "counted when they arrive.", LABELS, registry=self.registry)
        self.responses = Counter(
            "deepseek_gateway_responses", "Requests to a deployment finished, by HTTP status "
            "code (499: the client went away).", [*LABELS, "code"], registry=self.registry)
        self.queued = Gauge(
            "deepseek_gateway_queued_requests", "Requests waiting at the gateway for a "
            "replica (none ready, or all at maxConcurrentSequences).", LABELS,
            registry=self.registry)
        self.inflight = Gauge(
            "deepseek_gateway_inflight_requests", "Requests forwarded to the engine and not "
            "finished.", LABELS, registry=self.registry)
        self.duration = Histogram(
            "deepseek_gateway_request_duration_seconds", "Arrival to last byte, seconds "
            "(queueing included).", LABELS, buckets=DURATION_BUCKETS, registry=self.registry)
        self.ttft = Histogram(
            "deepseek_gateway_time_to_first_token_seconds", "Arrival to the engine's first "
            "response byte (the first token of a stream), seconds.", LABELS,
            buckets=DURATION_BUCKETS, registry=self.registry)
        self.capacity = Gauge(
            "deepseek_gateway_capacity_requests", "Requests the deployment's ready replicas "
            "take at once (readyReplicas x the per-replica cap).", LABELS,
            registry=self.registry)
        self.queue_limit = Gauge(
            "deepseek_gateway_queue_limit_requests", "Requests the gateway holds for the "
            "deployment at most (its policy's maxQueuedRequests, or --max-queued).", LABELS,
            registry=self.registry)
        self.queue_timeout = Gauge(
            "deepseek_gateway_queue_timeout_seconds", "How long a request waits for a "
            "replica (its policy's queueTimeoutSeconds, or --queue-timeout-seconds).", LABELS,
            registry=self.registry)
        self.policy_invalid = Gauge(
            "deepseek_gateway_policy_invalid", "1 while the deployment's policy ConfigMap "
            "has an invalid dataProtection (the gateway then blocks, failing closed), else "
            "0.", LABELS, registry=self.registry)
        self.auth_failures = Counter(
            "deepseek_gateway_auth_unavailable", "TokenReviews and SubjectAccessReviews that "
            "failed (the request was answered 503).", ["review"], registry=self.registry)
        self.audit_failures = Counter(
            "deepseek_gateway_audit_write_failures", "Audit lines that could not be "
            "written.", registry=self.registry)
