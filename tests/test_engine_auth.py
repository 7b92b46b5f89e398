"""The gateway's engine API keys (gateway/engine_auth.py): read from the Secret, cached for
a while, shared by concurrent requests, refused (fail closed) when the Secret is missing,
and never shown in an error."""

import asyncio
import base64
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest

from deepseek_operator.gateway.engine_auth import (
    EngineKeys,
    EngineKeyUnavailable,
    KeyRef,
    SecretMissing,
)
from deepseek_operator.gateway.routing import Target

KEY = "sk-test-123"
REF = KeyRef("engine-key", "api-key")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class FakeSecrets:
    """Secrets by (namespace, name); counts reads; `fail` raises a transient error."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, str]] = {
            ("ai", "engine-key"): {"api-key": b64(KEY + "\n")}}
        self.reads = 0
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, namespace: str, name: str) -> Mapping[str, str]:
        self.gate.wait(5)
        self.reads += 1
        if self.fail:
            raise ConnectionError("apiserver away")
        if (namespace, name) not in self.data:
            raise SecretMissing("HTTP 404")
        return self.data[(namespace, name)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4)


def keys(secrets: FakeSecrets, clock: Clock, executor: ThreadPoolExecutor) -> EngineKeys:
    return EngineKeys(secrets, executor, ttl_seconds=30, stale_seconds=300, clock=clock)


def test_no_secret_means_no_header_and_no_read(executor: ThreadPoolExecutor) -> None:
    secrets = FakeSecrets()
    assert asyncio.run(keys(secrets, Clock(), executor).headers("ai", None)) == {}
    assert secrets.reads == 0


def test_the_key_is_sent_as_a_bearer_token_and_read_once_per_ttl(
        executor: ThreadPoolExecutor) -> None:
    secrets, clock = FakeSecrets(), Clock()
    engine_keys = keys(secrets, clock, executor)

    async def scenario() -> list[dict[str, str]]:
        first = await engine_keys.headers("ai", REF)
        clock.now += 29
        second = await engine_keys.headers("ai", REF)
        reads_within_ttl = secrets.reads
        secrets.data[("ai", "engine-key")] = {"api-key": b64("sk-rotated")}
        clock.now += 2
        third = await engine_keys.headers("ai", REF)
        assert reads_within_ttl == 1
        return [first, second, third]

    first, second, third = asyncio.run(scenario())
    assert first == second == {"Authorization": f"Bearer {KEY}"}  # trailing newline dropped
    assert third == {"Authorization": "Bearer sk-rotated"}
    assert secrets.reads == 2


def test_concurrent_requests_share_one_read(executor: ThreadPoolExecutor) -> None:
    secrets = FakeSecrets()
    secrets.gate.clear()
    engine_keys = keys(secrets, Clock(), executor)

    async def scenario() -> list[dict[str, str]]:
        waiting = [asyncio.ensure_future(engine_keys.headers("ai", REF)) for _ in range(20)]
        await asyncio.sleep(0)
        secrets.gate.set()
        return await asyncio.gather(*waiting)

    assert {h["Authorization"] for h in asyncio.run(scenario())} == {f"Bearer {KEY}"}
    assert secrets.reads == 1


@pytest.mark.parametrize(
    ("data", "ref", "message"),
    [
        ({}, REF, r"Secret ai/engine-key \(spec.engine.apiKeySecret\) does not exist"),
        ({("ai", "engine-key"): {"other": b64(KEY)}}, REF, "has no key 'api-key'"),
        ({("ai", "engine-key"): {"api-key": b64("")}}, REF, "is empty"),
        ({("ai", "engine-key"): {"api-key": "%%%"}}, REF, "is not UTF-8 text"),
        ({("ai", "engine-key"): {"api-key": b64("a\nb")}}, REF, "spans lines"),
    ],
)
def test_a_missing_or_unusable_key_fails_closed_without_showing_it(
        executor: ThreadPoolExecutor, data: dict[tuple[str, str], dict[str, str]],
        ref: KeyRef, message: str) -> None:
    secrets = FakeSecrets()
    secrets.data = data
    with pytest.raises(EngineKeyUnavailable, match=message) as error:
        asyncio.run(keys(secrets, Clock(), executor).headers("ai", ref))
    assert KEY not in str(error.value) and b64(KEY) not in str(error.value)


def test_a_transient_failure_uses_a_recent_key_and_a_deleted_secret_never(
        executor: ThreadPoolExecutor) -> None:
    secrets, clock = FakeSecrets(), Clock()
    engine_keys = keys(secrets, clock, executor)

    async def scenario() -> None:
        await engine_keys.headers("ai", REF)
        secrets.fail = True
        clock.now += 100  # past the TTL, within the stale limit
        assert await engine_keys.headers("ai", REF) == {"Authorization": f"Bearer {KEY}"}
        clock.now += 300  # past the stale limit
        with pytest.raises(EngineKeyUnavailable, match="cannot be read now"):
            await engine_keys.headers("ai", REF)
        secrets.fail = False
        await engine_keys.headers("ai", REF)
        del secrets.data[("ai", "engine-key")]
        clock.now += 31
        with pytest.raises(EngineKeyUnavailable, match="does not exist"):
            await engine_keys.headers("ai", REF)

    asyncio.run(scenario())


def test_forget_makes_the_next_request_read_again(executor: ThreadPoolExecutor) -> None:
    secrets = FakeSecrets()
    engine_keys = keys(secrets, Clock(), executor)

    async def scenario() -> None:
        await engine_keys.headers("ai", REF)
        engine_keys.forget("ai", "engine-key")
        await engine_keys.headers("ai", REF)

    asyncio.run(scenario())
    assert secrets.reads == 2


def test_target_carries_the_api_key_reference() -> None:
    obj = {"apiVersion": "deepseek-operator.io/v1alpha1", "kind": "DeepSeekDeployment",
           "metadata": {"name": "m", "namespace": "ai"},
           "spec": {"model": {"name": "deepseek-r1"},
                    "engine": {"apiKeySecret": {"name": "engine-key"}}}}
    assert Target.from_object(obj).api_key == REF
    del obj["spec"]["engine"]  # type: ignore[attr-defined]
    assert Target.from_object(obj).api_key is None
