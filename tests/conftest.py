"""Fixtures shared by the unit tests: audit lines (usage-report) written by the gateway's own
`audit_line`."""

import calendar
import datetime
from collections.abc import Callable

import pytest

from deepseek_operator.gateway.audit import AuditRecord, audit_line


def line(user: str | None, deployment: str = "r1", role: str | None = "user", *,
         day: str = "2026-11-29", allowed: bool = True, prompt: int | None = 10,
         completion: int | None = 90, namespace: str = "ai") -> str:
    """One audit line as the gateway writes it (noon UTC of `day`)."""
    started = calendar.timegm(datetime.date.fromisoformat(day).timetuple()) + 12 * 3600.5
    return audit_line(AuditRecord(
        started=started, client="10.0.0.1", method="POST", path="/v1/chat/completions",
        user=user, uid="uid-" + (user or ""), groups=["system:authenticated"],
        namespace=namespace if allowed else None, deployment=deployment if allowed else None,
        model="deepseek-r1", permission="model:query", role=role if allowed else None,
        allowed=allowed, status=200 if allowed else 401, prompt_tokens=prompt,
        completion_tokens=completion))


@pytest.fixture
def make_audit_line() -> Callable[..., str]:
    """`line(user, deployment="r1", role="user", *, day=..., allowed=True, prompt=10,
    completion=90, namespace="ai")`: one audit line as the gateway writes it."""
    return line
