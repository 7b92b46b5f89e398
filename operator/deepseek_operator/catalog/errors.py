"""Errors of the catalog: an unknown model or GPU, and a spec that cannot be sized.

All are `InvalidSpecError`s naming the offending field, so callers (the controller, the
CLI) handle them like any other invalid spec.
"""

from collections.abc import Iterable

from ..api import FieldIssue, InvalidSpecError


class UnknownNameError(InvalidSpecError):
    """A model or GPU name that the catalog does not have; the message lists the known ones."""

    def __init__(
        self, field: str, what: str, name: str, known: Iterable[str], hint: str = ""
    ) -> None:
        self.name = name
        self.known: tuple[str, ...] = tuple(sorted(known))
        message = f"unknown {what} {name!r}; the catalog has: {', '.join(self.known)}"
        super().__init__([FieldIssue(field, message + (f"; {hint}" if hint else ""))])


class SizingError(InvalidSpecError):
    """A spec that cannot be served as written: too little GPU memory, an impossible GPU
    count, a context longer than the model supports, or a weight format the engine cannot
    run on the GPU. `field` is the spec field to change; `message` carries the numbers."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__([FieldIssue(field, message)])
