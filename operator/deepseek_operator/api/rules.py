"""Base classes of the API models and the cross-field rules they carry.

A cross-field rule is written once, as a `CelRule`: the CEL expression goes into the CRD
(`x-kubernetes-validations`, checked by the apiserver) and the Python predicate runs when a
model is validated (for `deepseek-operator render -f`, tests, and objects that reached the
operator some other way). The unit tests evaluate both forms on the same objects, so they
cannot drift apart.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

CROSS_FIELD_ERROR = "cross_field"
"""pydantic error type raised when `CelRule`s fail; its ctx holds `violations`."""


@dataclass(frozen=True)
class CelRule:
    """A validation rule over one object of the API, in CEL and in Python.

    `rule` is a CEL expression with `self` bound to the object (Kubernetes CRD validation
    rules); `check` returns the same truth value for the pydantic model. `message` is shown
    when the rule fails: it says what is wrong and what to do. `field_path` is the
    offending field relative to the object, in the apiserver's `fieldPath` syntax
    (`.uri`, `.storage.accessMode`), or "" for the object itself. `crd_field_path` False
    keeps it out of the CRD, for a field the CRD schema does not describe (metadata.name).
    """

    rule: str
    message: str
    field_path: str
    check: Callable[[Any], bool]
    crd_field_path: bool = True

    def to_crd(self) -> dict[str, str]:
        """The `x-kubernetes-validations` entry for this rule."""
        entry = {"rule": self.rule, "message": self.message}
        if self.field_path and self.crd_field_path:
            entry["fieldPath"] = self.field_path
        return entry


def _add_cel_rules(schema: dict[str, Any], model_class: type[Any]) -> None:
    """pydantic `json_schema_extra` hook: publish a model's CEL rules in its JSON schema."""
    rules: tuple[CelRule, ...] = getattr(model_class, "cel_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.to_crd() for rule in rules]


class SpecModel(BaseModel):
    """Base of every object a user writes: strict types, unknown fields are errors.

    Fields are snake_case in Python and camelCase on the wire (aliases); both spellings are
    accepted on input and `model_dump()` writes the wire spelling.
    """

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        populate_by_name=True,
        serialize_by_alias=True,
        json_schema_extra=_add_cel_rules,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> Self:
        broken = [rule for rule in type(self).cel_rules if not rule.check(self)]
        if broken:
            raise cross_field_error([(rule.field_path, rule.message) for rule in broken])
        return self


def cross_field_error(violations: Sequence[tuple[str, str]]) -> PydanticCustomError:
    """The error a model validator raises for `violations`, (field path relative to the
    model as in `CelRule.field_path`, message) pairs; `parse_spec` reports one issue each."""
    return PydanticCustomError(
        CROSS_FIELD_ERROR,
        "{summary}",
        {
            "summary": "; ".join(f"{path or '.'}: {message}" for path, message in violations),
            "violations": tuple(violations),
        },
    )


class StatusModel(BaseModel):
    """Base of the status objects, which only the operator writes.

    Keys this version does not know (written by another operator version) are ignored
    rather than refused: status is observed state, not user input.
    """

    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        populate_by_name=True,
        serialize_by_alias=True,
    )
