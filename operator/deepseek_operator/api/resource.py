"""The DeepSeekDeployment object and the functions that parse one from a plain dict."""

import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .constants import MAX_NAME_LENGTH
from .errors import FieldIssue, InvalidSpecError
from .patterns import NAME, OPTIONAL_DNS_LABEL, pattern_message
from .rules import CROSS_FIELD_ERROR, CelRule, SpecModel
from .spec import DeepSeekDeploymentSpec
from .status import DeepSeekDeploymentStatus


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata the operator reads.

    Other keys (managedFields, finalizers, ...) are kept as they are: the apiserver owns
    metadata, so nothing here is user input to refuse.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)

    name: str = Field(min_length=1, max_length=253, description="Object name.")
    namespace: str = Field(
        "",
        max_length=63,
        # A DNS-1123 label, as the apiserver requires; checked for files given to the CLI.
        pattern=OPTIONAL_DNS_LABEL,
        description="Namespace (empty outside a cluster).",
    )
    uid: str = Field("", description="Unique id, for owner references of the children.")
    generation: int = Field(0, ge=0, description="Spec generation (status.observedGeneration).")
    resource_version: str = Field("", alias="resourceVersion", description="Object version.")
    labels: dict[str, str] = Field(default={}, description="Labels.")
    annotations: dict[str, str] = Field(default={}, description="Annotations.")


class DeepSeekDeployment(SpecModel):
    """A DeepSeek-R1 family model served on GPUs: a GPU workload sized for the model, a model
    cache, autoscaling, a Service with an OpenAI-compatible API, and access rules."""

    api_version: Literal["deepseek-operator.io/v1alpha1"] = Field(
        alias="apiVersion",
        description="Versioned schema of this object: deepseek-operator.io/v1alpha1.",
    )
    kind: Literal["DeepSeekDeployment"] = Field(description="Kind of this object.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: DeepSeekDeploymentSpec = Field(description="Desired state.")
    status: DeepSeekDeploymentStatus = Field(
        default_factory=DeepSeekDeploymentStatus,
        description="Observed state, written by the operator.",
    )

    cel_rules = (
        CelRule(
            rule=(
                f"self.metadata.name.size() <= {MAX_NAME_LENGTH} && "
                f"self.metadata.name.matches('{NAME}')"
            ),
            message=(
                f"metadata.name must be a DNS label (lower-case letters, digits, '-'; starting "
                f"with a letter) of at most {MAX_NAME_LENGTH} characters: it prefixes the "
                f"names of the Service and the other objects it owns"
            ),
            field_path=".metadata.name",
            crd_field_path=False,
            check=lambda d: (
                len(d.metadata.name) <= MAX_NAME_LENGTH
                and re.fullmatch(NAME[1:-1], d.metadata.name) is not None
            ),
        ),
    )


def parse_deployment(obj: Mapping[str, Any]) -> DeepSeekDeployment:
    """Validate a DeepSeekDeployment given as a dict (from kubectl, kopf or a YAML file).

    `obj` has apiVersion, kind, metadata, spec and optionally status; nested values may be
    any Mapping (kopf's body views included). Defaults are filled in as the apiserver would.

    Raises InvalidSpecError listing every offending field by path, e.g.
    `spec.gpu.count: Input should be greater than or equal to 0 (got -1)`.
    """
    return _validate(DeepSeekDeployment, obj, prefix="")


def parse_spec(spec: Mapping[str, Any]) -> DeepSeekDeploymentSpec:
    """Validate just a `spec` mapping; error paths start with `spec.`.

    Raises InvalidSpecError as `parse_deployment` does.
    """
    return _validate(DeepSeekDeploymentSpec, spec, prefix="spec")


_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], obj: Mapping[str, Any], *, prefix: str) -> _M:
    try:
        return model.model_validate(_plain(obj))
    except ValidationError as error:
        raise InvalidSpecError(_issues(model, error, prefix)) from None


def _plain(value: Any) -> Any:
    """Deep copy of Mappings and lists into dicts and lists (strict validation wants dicts)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _issues(model: type[BaseModel], error: ValidationError, prefix: str) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    for detail in error.errors(include_url=False):
        path = _join(prefix, detail["loc"])
        if detail["type"] == CROSS_FIELD_ERROR:
            for field_path, message in detail["ctx"]["violations"]:
                issues.append(FieldIssue(_join_dotted(path, field_path.lstrip(".")), message))
        elif detail["type"] == "extra_forbidden":
            known = _known_fields(model, detail["loc"][:-1])
            hint = f"; known fields: {', '.join(known)}" if known else ""
            issues.append(FieldIssue(path, f"unknown field{hint}"))
        elif detail["type"] == "value_error":  # our own validators' messages say it all
            issues.append(FieldIssue(path, str(detail["ctx"]["error"])))
        elif detail["type"] == "missing":
            issues.append(FieldIssue(path, "required field is missing"))
        elif detail["type"] == "string_pattern_mismatch":
            message = pattern_message(detail["ctx"]["pattern"])
            issues.append(FieldIssue(path, f"{message}{_got(path, detail['input'])}"))
        else:
            issues.append(FieldIssue(path, f"{detail['msg']}{_got(path, detail['input'])}"))
    return issues


_MAY_HOLD_SECRETS: Final = re.compile(
    r"(^|\.)(engine\.(args|env)([\[.].*)?|uri|url|image)$")
"""Paths of the values a message never quotes, as messages reach status and events: engine
arguments and environment variables, as a whole or any part (api/secrets.py), URIs and
URLs (``model.uri``, the Prometheus ``url``), which may carry ``user:password@``, and
``engine.image`` (a refused one is often pasted shell or a credential)."""


def _got(path: str, value: Any) -> str:
    """` (got <value>)` for a message about the value at `path`, or "" where the value
    may be a secret."""
    return "" if _MAY_HOLD_SECRETS.search(path) else f" (got {_short(value)})"


def _join(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for a dict key error; the key is in loc
            path = _join_dotted(path, part)
    return path


def _join_dotted(path: str, name: str) -> str:
    if not name:
        return path
    return f"{path}.{name}" if path else name


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _known_fields(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Wire names of the fields of the model found at `loc` under `model`, if one is."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(info.alias or name for name, info in current.model_fields.items())
    return []


def _step(annotation: Any, part: int | str) -> Any:
    """The annotation reached from `annotation` by one element of a pydantic error loc."""
    annotation = _unwrap_optional(annotation)
    if isinstance(part, int):
        args = typing.get_args(annotation)
        return _unwrap_optional(args[0]) if typing.get_origin(annotation) is list else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return _unwrap_optional(info.annotation)
        return None
    if typing.get_origin(annotation) is dict:
        return _unwrap_optional(typing.get_args(annotation)[1])
    return None


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap_optional(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _unwrap_optional(members[0])
    return annotation
