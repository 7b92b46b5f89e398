"""A burst of child events becomes one reconcile."""

from __future__ import annotations

import contextvars
import threading
import time

from deepseek_operator.controller.debounce import Debouncer, Scheduler


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


def test_due_actions_run_on_a_bounded_number_of_threads_in_due_order() -> None:
    """Many keys due at once run on the scheduler's workers only (not a thread each), and
    an earlier entry scheduled later still runs first."""
    scheduler = Scheduler(workers=2)
    threads: set[str] = set()
    order: list[str] = []
    running = [0]
    most = [0]
    lock = threading.Lock()
    done = threading.Event()

    def action(namespace: str, name: str) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            threads.add(threading.current_thread().name)
            order.append(name)
        time.sleep(0.01)
        with lock:
            running[0] -= 1
            if len(order) == 41:
                done.set()

    debouncer = Debouncer(action, delay_seconds=0.2, scheduler=scheduler)
    for number in range(40):
        debouncer.request("ai", f"r{number}")
    debouncer.request("ai", "first", delay_seconds=0.0)
    assert done.wait(5.0), f"{len(order)} of 41 ran"
    assert order[0] == "first"
    assert most[0] <= 2 and len(threads) <= 2, threads
