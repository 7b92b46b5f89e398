"""The `<name>-gateway-policy` ConfigMap: how the gateway treats requests to this
DeepSeekDeployment, owned by the people who hold `system:configure`.

The operator creates it once, with the defaults below, and never writes its `data` again:
edits (`kubectl edit cm <name>-gateway-policy`) stay. Its metadata (labels, owner
reference) is still the operator's, and a deleted ConfigMap is created again with the
defaults. The annotation `CREATE_ONLY_ANNOTATION` marks it, so the controller knows to
create it with a plain create and to leave `data` out of every later apply.

`policy.yaml` (POLICY_KEY):

- `queueTimeoutSeconds`: how long the gateway holds a request while no replica is Ready
  (scale from zero, a rollout) before it answers 503 with Retry-After. Default: the
  engine's startup probe budget (model load) plus one autoscaler interval, in seconds.
- `maxQueuedRequests`: requests held at once for this deployment; more are answered 503 at
  once. Default: twice `maxConcurrentPerReplica`.
- `maxConcurrentPerReplica`: requests the gateway forwards to one replica at once; more
  wait in the queue. Default: the deployment's maxConcurrentSequences (as sized).
- `dataProtection`: `mode` (`audit`: record detector counts and scores only; `redact`:
  also replace matches in answers by `[REDACTED:<type>]`; `block`: redact, and refuse a
  prompt whose sensitivity is over `blockThreshold`, in [0, 1]). Default: audit, 0.5.
"""

from typing import Any, Final

import yaml

from ..api import GROUP, DeepSeekDeployment
from ..catalog import SizingResult
from .names import gateway_policy_config_map
from .pod import startup_budget_seconds
from .settings import RenderSettings
from .templating import render_manifest

POLICY_KEY: Final = "policy.yaml"
CREATE_ONLY_ANNOTATION: Final = f"{GROUP}/create-only"
"""Annotation on a child whose listed top-level fields (comma-separated, e.g. `data`) the
operator writes only when it creates the object."""
QUEUE_FACTOR: Final = 2
"""maxQueuedRequests default, in multiples of maxConcurrentPerReplica."""
DEFAULT_DATA_PROTECTION: Final = {"mode": "audit", "blockThreshold": 0.5}
"""dataProtection default: record only (the gateway's default for a missing key too)."""


def default_policy(dsd: DeepSeekDeployment, sizing: SizingResult,
                   settings: RenderSettings) -> dict[str, Any]:
    """The policy a new ConfigMap starts with (module docstring): seconds and counts."""
    per_replica = sizing.max_concurrent_sequences
    return {
        "queueTimeoutSeconds": startup_budget_seconds(sizing, settings)
        + dsd.spec.autoscaling.interval_seconds,
        "maxQueuedRequests": QUEUE_FACTOR * per_replica,
        "maxConcurrentPerReplica": per_replica,
        "dataProtection": dict(DEFAULT_DATA_PROTECTION),
    }


def policy_yaml(dsd: DeepSeekDeployment, sizing: SizingResult, settings: RenderSettings) -> str:
    """policy.yaml text: a comment saying who owns it, then the default policy."""
    header = (
        f"# Gateway policy of DeepSeekDeployment {dsd.metadata.namespace}/{dsd.metadata.name}."
        "\n# Created once by deepseek-operator; edits by holders of system:configure stay.\n"
    )
    return header + yaml.safe_dump(default_policy(dsd, sizing, settings), sort_keys=False)


def gateway_policy_manifest(dsd: DeepSeekDeployment, sizing: SizingResult,
                            settings: RenderSettings) -> dict[str, Any]:
    """The ConfigMap (without labels and owner reference), marked create-only for `data`."""
    manifest = render_manifest(
        "configmap.yaml.j2",
        name=gateway_policy_config_map(dsd),
        data={POLICY_KEY: policy_yaml(dsd, sizing, settings)},
    )
    manifest["metadata"]["annotations"] = {CREATE_ONLY_ANNOTATION: "data"}
    return manifest
