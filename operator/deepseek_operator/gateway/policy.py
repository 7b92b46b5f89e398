"""Per-deployment gateway policy: the `<name>-gateway-policy` ConfigMap the operator creates
once and the holders of `system:configure` edit (key `policy.yaml`).

- `queueTimeoutSeconds`: how long a request waits for a replica before 503 + Retry-After;
- `maxQueuedRequests`: requests waiting at once; more get 503 at once;
- `maxConcurrentPerReplica`: requests one ready replica takes at once;
- `dataProtection`: `{mode: audit|redact|block, blockThreshold: 0..1}` (docs/gateway.md,
  "Data protection"): what the gateway does with sensitive data it detects. Mode names are
  case-insensitive. An invalid `dataProtection` (not a mapping, a bad mode or threshold,
  an unknown key), or a policy that is not a YAML mapping while its text mentions
  `dataProtection`, fails closed: mode block with the default threshold, flagged in
  `Policy.data_protection_invalid` for the gateway to report as an error.

A key that is missing or not a valid number falls back to the gateway's flag (or, for the
per-replica cap, the deployment's maxConcurrentSequences); the problem is reported so the
gateway can log it. Pure (no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

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


Mode = Literal["audit", "redact", "block"]
MODES: Final[tuple[str, ...]] = get_args(Mode)
DEFAULT_BLOCK_THRESHOLD: Final = 0.5


@dataclass(frozen=True)
class DataProtection:
    """What the gateway does with detected sensitive data (gateway/detect.py).

    `mode`: `audit` records detector counts and scores only; `redact` also replaces each
    match in what the client receives by `[REDACTED:<type>]`; `block` redacts too and
    refuses (400) a prompt whose sensitivity is over `block_threshold` (in [0, 1]).
    """

    mode: Mode = "audit"
    block_threshold: float = DEFAULT_BLOCK_THRESHOLD


@dataclass(frozen=True)
class Policy:
    """One deployment's policy; None: not set (use the gateway's default)."""

    queue_timeout_seconds: float | None = None
    max_queued: int | None = None
    max_concurrent_per_replica: int | None = None
    data_protection: DataProtection | None = None
    data_protection_invalid: bool = False  # True: dataProtection unreadable, failed closed


FAIL_CLOSED: Final = DataProtection("block", DEFAULT_BLOCK_THRESHOLD)
"""What an invalid dataProtection means: block (and redact) with the default threshold."""


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
    mentions = "dataprotection" in str(text).lower()
    unreadable = Policy(data_protection=FAIL_CLOSED, data_protection_invalid=True) \
        if mentions else Policy()
    closed = "; it mentions dataProtection: failing closed with mode block" if mentions else ""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return (namespace, deployment), unreadable, [
            f"{where}: not YAML: {str(error)[:200]}{closed}"]
    if document is None:
        document = {}
    if not isinstance(document, dict):
        return (namespace, deployment), unreadable, [f"{where}: not a mapping{closed}"]
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

    timeout = number("queueTimeoutSeconds", False, 0)
    protection_problems: list[str] = []
    protection = data_protection(document.get("dataProtection"), where, protection_problems)
    policy = Policy(
        queue_timeout_seconds=None if timeout is None else float(timeout),
        max_queued=number("maxQueuedRequests", True, 0),
        max_concurrent_per_replica=number("maxConcurrentPerReplica", True, 1),
        data_protection=protection,
        data_protection_invalid=bool(protection_problems))
    return (namespace, deployment), policy, problems + protection_problems


def data_protection(value: Any, where: str, problems: list[str]) -> DataProtection | None:
    """`dataProtection` of a policy document (None when absent). Mode names are
    case-insensitive. Anything invalid (not a mapping, a bad mode or threshold, an unknown
    key) fails closed: FAIL_CLOSED, with each problem reported in `problems`."""
    if value is None:
        return None
    closed = "; failing closed with mode block"
    if not isinstance(value, dict):
        problems.append(f"{where}: dataProtection must be a mapping, got {value!r:.80}"
                        f"{closed}")
        return FAIL_CLOSED
    mode = value.get("mode", "audit")
    if isinstance(mode, str) and mode.lower() in MODES:
        mode = mode.lower()
    else:
        problems.append(f"{where}: dataProtection.mode must be one of {', '.join(MODES)}, "
                        f"got {mode!r:.80}{closed}")
    threshold = value.get("blockThreshold", DEFAULT_BLOCK_THRESHOLD)
    if (isinstance(threshold, bool) or not isinstance(threshold, int | float)
            or not math.isfinite(threshold) or not 0 <= threshold <= 1):
        problems.append(f"{where}: dataProtection.blockThreshold must be a number in "
                        f"[0, 1], got {threshold!r:.80}{closed}")
    unknown = sorted(str(key) for key in set(value) - {"mode", "blockThreshold"})
    if unknown:
        problems.append(f"{where}: dataProtection: unknown keys {unknown}{closed}")
    if problems:
        return FAIL_CLOSED
    return DataProtection(mode, float(threshold))
