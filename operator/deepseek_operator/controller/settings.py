"""The operator's settings: one pydantic model, filled from `run` flags and environment
variables, validated once at start.

Every setting has a flag and an environment variable `DEEPSEEK_OPERATOR_<NAME>` (upper
case, e.g. `DEEPSEEK_OPERATOR_CLUSTER_DOMAIN`); a flag given on the command line wins over
the variable, the variable over the default. The chart sets the variables from its
`settings` values, and a kustomize overlay patches them into the operator's container
(docs/operations.md). Environment variables are read with pydantic-settings, the pydantic
project's own loader, so names, types and errors are the same as for the flags.

A bad value stops the operator before it connects anywhere, with an error naming the flag
and the variable (`SettingsError`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from deepseek_operator.api.patterns import DNS_LABEL_PART, DNS_SUBDOMAIN_PART, IMAGE
from deepseek_operator.render import (
    DEFAULT_ENGINE_IMAGES,
    DEFAULT_S3_DOWNLOAD_IMAGE,
    DEFAULT_SCRAPER_POD_LABELS,
    RenderSettings,
)

ENV_PREFIX: Final = "DEEPSEEK_OPERATOR_"

_LABEL_KEY = re.compile(
    rf"^({DNS_SUBDOMAIN_PART}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
# A registry or registry/path prefix for mirrors, e.g. `mirror.example.com/dockerhub`: a
# lowercase host[:port] and lowercase path components as image references spell them (the
# pinned images go behind it, so uppercase or a scheme would make every default invalid).
_PATH_COMPONENT = r"[a-z0-9]+([._-]+[a-z0-9]+)*"
_REGISTRY_PREFIX = rf"^$|^{DNS_SUBDOMAIN_PART}(:[0-9]{{1,5}})?(/{_PATH_COMPONENT})*/?$"


def _label_pairs(value: Any) -> Any:
    """`key=value,key=value` (equality only, as matchLabels) as pairs, in order; a
    sequence of pairs or a mapping passes through. Raises ValueError naming the bad item."""
    if isinstance(value, Mapping):
        return tuple(value.items())
    if not isinstance(value, str):
        return value
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, equals, label = item.partition("=")
        if not equals or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(label):
            raise ValueError(
                f"{item!r} is not a label KEY=VALUE (e.g. app.kubernetes.io/name=prometheus)")
        pairs.append((key, label))
    return tuple(pairs)


def _words(value: Any) -> Any:
    """A comma-separated string as a tuple of its non-empty items; a sequence passes."""
    if isinstance(value, str):
        return tuple(filter(None, (part.strip() for part in value.split(","))))
    return value


Namespace = Annotated[str, Field(max_length=63, pattern=rf"^{DNS_LABEL_PART}$")]
LabelPairs = Annotated[tuple[tuple[str, str], ...], NoDecode, BeforeValidator(_label_pairs)]
MIN_PERIOD_SECONDS: Final = 10.0
"""The shortest relist and resync period: each lists every child kind or reconciles every
DeepSeekDeployment, so a shorter one loads the apiserver without finding more (watches
report changes at once; these only catch what a watch missed)."""
Period = Annotated[float, Field(ge=MIN_PERIOD_SECONDS, allow_inf_nan=False)]
Image = Annotated[str, Field(max_length=512, pattern=IMAGE)]  # as spec.engine.image takes it


class OperatorSettings(BaseSettings):
    """Settings of one operator installation (see the module docstring for where they come
    from). Units: seconds for every `*_seconds`; UIDs/GIDs are integers >= 1 (non-root).

    What to watch:
    - `namespaces`: watch only these namespaces (flag `-n` repeated; variable
      comma-separated); empty: every namespace.
    - `relist_seconds`: how often every child kind is listed to find objects deleted while
      a watch was down (controller/resync.py).
    - `resync_seconds`: how often each DeepSeekDeployment is reconciled without any event.
      Both at least MIN_PERIOD_SECONDS (10 s): they only catch what a watch missed, and
      each costs a list of every child kind or a reconcile of every deployment.
    - `manage_crd`: apply the operator's own CRD at start (server-side apply), so an
      upgraded operator serves its new fields (controller/crd_sync.py).
    - `download_poll_seconds`: how often a running download's progress (its pod's log) is
      read; each new figure is one status write (docs/api.md, "Download progress").
    - `autoscaler_tick_seconds`: how often the operator's autoscaler looks at each
      deployment (it acts every spec.autoscaling.intervalSeconds; a tick longer than that
      interval makes the interval longer).

    What the pods run (`render.RenderSettings`):
    - `vllm_image`, `sglang_image`: engine images used when spec.engine.image is empty;
      empty: the pinned defaults (`render.DEFAULT_ENGINE_IMAGES`).
    - `hf_download_image`: image of hf:// downloads; empty: the engine's image.
    - `s3_download_image`: image of s3:// downloads; empty: the pinned AWS CLI image.
    - `registry_prefix`: a mirror's registry (and path) put in front of the pinned default
      images (engine and s3 downloader), e.g. `mirror.example.com/dockerhub` turns
      `vllm/vllm-openai:v0.33.0` into `mirror.example.com/dockerhub/vllm/vllm-openai:v0.33.0`.
      Images given explicitly (these settings, spec.engine.image) are used as given.
    - `cluster_domain`: DNS domain of Services (the kubelet's --cluster-domain).
    - `run_as_user`, `run_as_group`: UID and GID of the engine and download containers.
    - `storage_class`: StorageClass of model caches whose spec leaves it empty; empty: the
      cluster's default class.
    - `gateway`, `gateway_url`, `scraper_namespace_selector`, `scraper_pod_selector`: as
      the `run` flags of the same names say (a gateway URL implies the gateway).
    - `gateway_service_account`: NAMESPACE/NAME of the gateway's ServiceAccount, which
      gets a Role per engine API key Secret (`render.engine_key_access`); empty: none.

    The process: `peering` (kopf peering name; None: standalone), `priority` (peering
    priority; None: the start time), `liveness` (URL of the liveness endpoint),
    `metrics_port` (0: no /metrics), `log_format`, `verbose`.

    Raises pydantic's ValidationError on construction for a bad value; `load` turns it into
    a SettingsError that names the flag and the variable.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid",
                                      env_ignore_empty=True)

    namespaces: Annotated[tuple[Namespace, ...], NoDecode, BeforeValidator(_words)] = ()
    relist_seconds: Period = 600.0
    resync_seconds: Period = 600.0
    manage_crd: bool = False
    download_poll_seconds: Annotated[float, Field(ge=1, le=3600, allow_inf_nan=False)] = 30.0
    autoscaler_tick_seconds: Annotated[float, Field(ge=1, le=300, allow_inf_nan=False)] = 5.0
    vllm_image: Image = ""
    sglang_image: Image = ""
    hf_download_image: Image = ""
    s3_download_image: Image = ""
    registry_prefix: Annotated[str, Field(max_length=253, pattern=_REGISTRY_PREFIX)] = ""
    cluster_domain: Annotated[str, Field(max_length=253, pattern=rf"^{DNS_SUBDOMAIN_PART}$")] = (
        "cluster.local")
    run_as_user: Annotated[int, Field(ge=1, le=2**31 - 1)] = 1000
    run_as_group: Annotated[int, Field(ge=1, le=2**31 - 1)] = 1000
    storage_class: Annotated[str, Field(max_length=253, pattern=rf"^$|^{DNS_SUBDOMAIN_PART}$")] = ""
    gateway: bool = False
    gateway_url: Annotated[str, Field(max_length=2048)] = ""
    gateway_service_account: Annotated[str, Field(max_length=317)] = ""
    scraper_namespace_selector: LabelPairs = ()
    scraper_pod_selector: LabelPairs = DEFAULT_SCRAPER_POD_LABELS
    peering: Annotated[str | None, Field(max_length=253,
                                         pattern=rf"^{DNS_SUBDOMAIN_PART}$")] = None
    priority: int | None = None
    liveness: str | None = None
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    log_format: Literal["plain", "full", "json"] = "plain"
    verbose: bool = False

    @field_validator("gateway_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        """An http(s) URL with a host and no query or fragment, or empty. The error does
        not quote the value: a URL may carry ``user:password@``."""
        if value and not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError("not an http(s) base URL (e.g. http://deepseek-gateway.ns.svc)")
        return value

    @field_validator("gateway_service_account")
    @classmethod
    def _service_account(cls, value: str) -> str:
        """NAMESPACE/NAME, as RenderSettings checks it, or empty."""
        RenderSettings(gateway_service_account=value)  # raises ValueError naming the form
        return value

    @field_validator("liveness")
    @classmethod
    def _liveness_url(cls, value: str | None) -> str | None:
        """An http://HOST:PORT/PATH URL, as kopf's liveness endpoint wants."""
        if value is not None and not re.match(r"^http://[^/:?#\s]+:[0-9]{1,5}(/\S*)?$", value):
            raise ValueError(f"{value!r} is not an http://HOST:PORT/PATH URL "
                             "(e.g. http://0.0.0.0:8080/healthz)")
        return value

    def image(self, explicit: str, pinned: str) -> str:
        """`explicit` when set, else `pinned` behind `registry_prefix` (if any)."""
        if explicit:
            return explicit
        prefix = self.registry_prefix.rstrip("/")
        return f"{prefix}/{pinned}" if prefix else pinned

    def render_settings(self) -> RenderSettings:
        """The RenderSettings these settings ask for (the rest at their defaults)."""
        return RenderSettings(
            vllm_image=self.image(self.vllm_image, DEFAULT_ENGINE_IMAGES["vllm"]),
            sglang_image=self.image(self.sglang_image, DEFAULT_ENGINE_IMAGES["sglang"]),
            hf_download_image=self.hf_download_image,
            s3_download_image=self.image(self.s3_download_image, DEFAULT_S3_DOWNLOAD_IMAGE),
            cluster_domain=self.cluster_domain,
            run_as_user=self.run_as_user,
            run_as_group=self.run_as_group,
            storage_class_name=self.storage_class,
            gateway=self.gateway or bool(self.gateway_url),
            gateway_url=self.gateway_url,
            gateway_service_account=self.gateway_service_account,
            scraper_namespace_labels=self.scraper_namespace_selector,
            scraper_pod_labels=self.scraper_pod_selector,
        )


def flag(name: str) -> str:
    """The `run` flag of setting `name`: `cluster_domain` -> `--cluster-domain`."""
    return "--namespace" if name == "namespaces" else "--" + name.replace("_", "-")


def env_var(name: str) -> str:
    """The environment variable of setting `name`: `DEEPSEEK_OPERATOR_CLUSTER_DOMAIN`."""
    return ENV_PREFIX + name.upper()


_PATTERN_WORDS: Final = {
    "namespaces": "a namespace name (a DNS label: lowercase letters, digits and '-')",
    "cluster_domain": "a DNS domain (lowercase letters, digits, '-' and '.')",
    "storage_class": "a StorageClass name (lowercase letters, digits, '-' and '.')",
    "peering": "a DNS subdomain (lowercase letters, digits, '-' and '.')",
    "registry_prefix": ("a registry host[:port][/path] in lowercase, without a scheme "
                        "(e.g. mirror.example.com:5000/dockerhub)"),
}
"""What a setting's pattern accepts, in words: errors never show a regex."""


class SettingsError(ValueError):
    """Settings that do not validate; `problems` holds one line per bad setting, each
    naming its flag and environment variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


TOOLING_VARIABLES: Final = frozenset({"DEEPSEEK_OPERATOR_STATE", "DEEPSEEK_OPERATOR_CACHE"})
"""Variables of the prefix that are not settings: the test tooling's (e2e/cluster)."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The names in ``environ`` that start with ENV_PREFIX but name no setting (a typo such
    as DEEPSEEK_OPERATOR_RELIST_SECOND would otherwise be ignored without a word), sorted;
    TOOLING_VARIABLES are not reported. Names only: a value may be a secret."""
    known = {env_var(name) for name in OperatorSettings.model_fields} | TOOLING_VARIABLES
    return sorted(name for name in environ
                  if name.upper().startswith(ENV_PREFIX) and name.upper() not in known)


def settings_given(parsed: Mapping[str, Any]) -> dict[str, Any]:
    """The settings among parsed command-line values (argparse's namespace as a dict, with
    flags left out absent: argparse.SUPPRESS), by setting name."""
    return {name: value for name, value in parsed.items()
            if name in OperatorSettings.model_fields}


def load(flags: Mapping[str, Any] | None = None) -> OperatorSettings:
    """The settings from `flags` (setting name -> value, only the flags given) over the
    environment over the defaults. Raises SettingsError naming every bad setting."""
    try:
        return OperatorSettings(**dict(flags or {}))
    except ValidationError as error:
        problems = []
        for issue in error.errors(include_url=False, include_input=False):
            name = str(issue["loc"][0]) if issue["loc"] else ""
            where = f"{flag(name)} / {env_var(name)}" if name else "settings"
            message = issue["msg"]
            if issue["type"] == "extra_forbidden":
                where = f"unknown setting {name!r}"
            elif issue["type"] == "string_pattern_mismatch":
                message = "must be " + _PATTERN_WORDS.get(
                    name, "an image reference without spaces or quotes")
            problems.append(f"{where}: {message}")
        raise SettingsError(problems) from None
