"""Per-deployment gateway policy: the `<name>-gateway-policy` ConfigMap the operator creates
once and the holders of `system:configure` edit (key `policy.yaml`).

- `queueTimeoutSeconds`: how long a request waits for a replica before 503 + Retry-After;
- `maxQueuedRequests`: requests waiting at once; more get 503 at once;
- `maxConcurrentPerReplica`: requests one ready replica takes at once.

A key that is missing or not a valid number falls back to the gateway's flag (or, for the
per-replica cap, the deployment's maxConcurrentSequences); the problem is reported so the
gateway can log it. Pure (no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml

from ..render.labels import COMPONENT_LABEL, DEPLOYMENT_LABEL

POLICY_KEY: Final = "policy.yaml"
POLICY_COMPONENT: Final = "gateway-policy"
POLICY_SELECTOR: Final = f"{COMPONENT_LABEL}={POLICY_COMPONENT},{DEPLOYMENT_LABEL}"
"""Label selector of the policy ConfigMaps (labels the operator stamps on them). Only the
one named `<deployment>-gateway-policy` counts: that name is what system:configure grants
update on, so another ConfigMap carrying the labels changes nothing."""


def policy_name(deployment: str) -> str:
    """The policy ConfigMap of DeepSeekDeployment `deployment`: `<name>-gateway-policy`."""
    return f"{deployment}-gateway-policy"


@dataclass(frozen=True)
class Policy:
    """One deployment's policy; None: not set (use the gateway's default)."""

    queue_timeout_seconds: float | None = None
    max_queued: int | None = None
    max_concurrent_per_replica: int | None = None


def policy_from_config_map(obj: Mapping[str, Any],
                           ) -> tuple[tuple[str, str], Policy, list[str]] | None:
    """(namespace, deployment), its policy and the problems found, from a policy ConfigMap
    as the API returns it (a dict); None when it names no deployment (label
    `deepseek-operator.io/deployment`) or is not named `<deployment>-gateway-policy`."""
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    deployment = labels.get(DEPLOYMENT_LABEL)
    namespace = metadata.get("namespace")
    if not deployment or not namespace or metadata.get("name") != policy_name(deployment):
        return None
    where = f"ConfigMap {namespace}/{metadata.get('name')} {POLICY_KEY}"
    text = (obj.get("data") or {}).get(POLICY_KEY)
    if text is None:
        return (namespace, deployment), Policy(), []
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return (namespace, deployment), Policy(), [f"{where}: not YAML: {error}"[:300]]
    if document is None:
        document = {}
    if not isinstance(document, dict):
        return (namespace, deployment), Policy(), [f"{where}: not a mapping"]
    problems: list[str] = []

    def number(key: str, integer: bool, minimum: float) -> Any:
        value = document.get(key)
        if value is None:
            return None
        valid = (isinstance(value, int) if integer else isinstance(value, int | float))
        if isinstance(value, bool) or not valid or not math.isfinite(value) or value < minimum:
            kind = "an integer" if integer else "a finite number"
            problems.append(f"{where}: {key} must be {kind} >= {minimum:g}, got {value!r}; "
                            "using the gateway's default")
            return None
        return value

    policy = Policy(
        queue_timeout_seconds=number("queueTimeoutSeconds", False, 0),
        max_queued=number("maxQueuedRequests", True, 0),
        max_concurrent_per_replica=number("maxConcurrentPerReplica", True, 1))
    if policy.queue_timeout_seconds is not None:
        policy = Policy(float(policy.queue_timeout_seconds), policy.max_queued,
                        policy.max_concurrent_per_replica)
    return (namespace, deployment), policy, problems
