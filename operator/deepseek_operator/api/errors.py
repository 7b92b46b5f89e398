"""The error raised for a DeepSeekDeployment that is invalid, naming each offending field."""

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldIssue:
    """One problem with one field.

    `path` is the field's path in the custom resource as a user writes it, dotted and with
    list indices: `spec.gpu.count`, `spec.engine.env[0].name`. `message` says what is wrong
    and, where it can, what to do.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidSpecError(ValueError):
    """A DeepSeekDeployment that can never work as written; retrying does not help.

    Raised by `parse_deployment`/`parse_spec` for schema and cross-field errors, and by the
    catalog (unknown model or GPU, a spec that does not fit). `issues` lists every problem
    found; `str(error)` is one line per issue, each starting with the field path.
    """

    def __init__(self, issues: Iterable[FieldIssue]) -> None:
        self.issues: tuple[FieldIssue, ...] = tuple(issues)
        if not self.issues:
            raise ValueError("InvalidSpecError needs at least one FieldIssue")
        super().__init__("\n".join(str(issue) for issue in self.issues))

    @property
    def paths(self) -> tuple[str, ...]:
        """The offending field paths, in the order the issues were found."""
        return tuple(issue.path for issue in self.issues)
