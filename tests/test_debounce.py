"""A burst of child events becomes one reconcile."""

from __future__ import annotations

import contextvars
import threading
import time

from deepseek_operator.controller.debounce import Debouncer


def test_a_burst_becomes_one_call_and_a_later_event_another() -> None:
    calls: list[tuple[str, str]] = []
    done = threading.Event()

    def action(namespace: str, name: str) -> None:
        calls.append((namespace, name))
        done.set()

    debouncer = Debouncer(action, delay_seconds=0.2)
    assert debouncer.request("ai", "r1")
    assert not any(debouncer.request("ai", "r1") for _ in range(20))
    assert debouncer.request("ai", "other")
    time.sleep(0.5)
    assert sorted(calls) == [("ai", "other"), ("ai", "r1")]
    assert debouncer.request("ai", "r1")  # the burst is over: a new event schedules again
    time.sleep(0.5)
    assert calls.count(("ai", "r1")) == 2


def test_a_failing_action_does_not_stop_later_requests() -> None:
    attempts: list[int] = []

    def action(namespace: str, name: str) -> None:
        attempts.append(1)
        raise RuntimeError("apiserver hiccup")

    debouncer = Debouncer(action, delay_seconds=0.05)
    debouncer.request("ai", "r1")
    time.sleep(0.2)
    debouncer.request("ai", "r1")
    time.sleep(0.2)
    assert len(attempts) == 2


def test_the_action_sees_the_callers_context_variables() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker")
    seen: list[str] = []
    marker.set("kopf settings")
    debouncer = Debouncer(lambda ns, name: seen.append(marker.get("missing")),
                          delay_seconds=0.05)
    debouncer.request("ai", "r1")
    time.sleep(0.3)
    assert seen == ["kopf settings"]


def test_a_failed_action_is_retried_until_it_succeeds() -> None:
    attempts: list[float] = []
    succeeded = threading.Event()

    def action(namespace: str, name: str) -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise RuntimeError("apiserver hiccup")
        succeeded.set()

    debouncer = Debouncer(action, delay_seconds=0.01, retry_seconds=0.05)
    debouncer.request("ai", "r1")
    assert succeeded.wait(5.0), f"only {len(attempts)} attempts"
    time.sleep(0.2)
    assert len(attempts) == 3, "no retry after the success"
