"""The gateway's pure parts: the decision cache, audit lines and the file sink, SSE
splitting and usage, routing (served names, conflicts, the granting role), admission."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from deepseek_operator.cli import build_parser
from deepseek_operator.gateway.admission import Admission, DeploymentGone, QueueFull, QueueTimeout
from deepseek_operator.gateway.audit import AuditRecord, AuditSink, AuditWriteError, audit_line
from deepseek_operator.gateway.auth import Access, Authorizer, Identity, query_access, token_key
from deepseek_operator.gateway.cache import TTLCache
from deepseek_operator.gateway.routing import RouteTable, Target, granting_role
from deepseek_operator.gateway.sse import (
    EventSplitter,
    error_event,
    event_data,
    event_json,
    is_usage_only,
    usage_of,
)

# ---- TTLCache ----


def test_cache_entries_expire_after_the_ttl() -> None:
    cache: TTLCache[str, int] = TTLCache(10, 100)
    cache.put("a", 1, now=0)
    assert cache.get("a", now=9.9) == 1
    assert cache.get("a", now=10) is None
    assert len(cache) == 0


def test_cache_size_is_bounded_and_the_oldest_goes_first() -> None:
    cache: TTLCache[int, int] = TTLCache(100, 3)
    for key in range(5):
        cache.put(key, key, now=key)
    assert len(cache) == 3
    assert [cache.get(k, now=5) for k in range(5)] == [None, None, 2, 3, 4]


def test_cache_put_drops_expired_entries_before_fresh_ones() -> None:
    cache: TTLCache[str, int] = TTLCache(10, 2)
    cache.put("old", 1, now=0)
    cache.put("fresh", 2, now=8)
    cache.put("new", 3, now=11)  # "old" expired at 10: it goes, "fresh" stays
    assert cache.get("fresh", now=11) == 2 and cache.get("new", now=11) == 3


def test_cache_of_size_or_ttl_zero_keeps_nothing() -> None:
    for cache in (TTLCache[str, int](0, 10), TTLCache[str, int](10, 0)):
        cache.put("a", 1, now=0)
        assert cache.get("a", now=0) is None


def test_cache_refuses_negative_bounds() -> None:
    with pytest.raises(ValueError):
        TTLCache(-1, 1)


# ---- Authorizer (cache and coalescing around a counting reviewer) ----


class CountingReviewer:
    def __init__(self) -> None:
        self.token_calls = 0
        self.access_calls = 0

    def token_review(self, token: str, audiences: tuple[str, ...]) -> Identity | None:
        self.token_calls += 1
        return Identity("alice", "u1", ("g",)) if token == "good" else None

    def access_review(self, identity: Identity, access: Access) -> bool:
        self.access_calls += 1
        return access.name == "m"


def test_authorizer_caches_and_coalesces_reviews() -> None:
    from concurrent.futures import ThreadPoolExecutor

    reviewer = CountingReviewer()
    clock = [0.0]

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as pool:
            auth = Authorizer(reviewer, pool, ttl_seconds=10, max_size=10,
                              clock=lambda: clock[0])
            identities = await asyncio.gather(*(auth.authenticate("good") for _ in range(20)))
            assert {i.name for i in identities if i} == {"alice"}
            assert reviewer.token_calls == 1
            assert await auth.authenticate("bad") is None
            assert await auth.authenticate("bad") is None
            assert reviewer.token_calls == 2, "a refusal is cached too"
            alice = identities[0]
            assert alice is not None
            assert await auth.allowed(alice, query_access("ns", "m"))
            assert not await auth.allowed(alice, query_access("ns", "other"))
            assert await auth.allowed(alice, query_access("ns", "m"))
            assert reviewer.access_calls == 2
            clock[0] = 10.0
            await auth.authenticate("good")
            assert reviewer.token_calls == 3, "asked again after the TTL"

    asyncio.run(scenario())


def test_token_key_is_a_hash_not_the_token() -> None:
    assert "secret" not in token_key("secret") and len(token_key("secret")) == 64


def test_query_access_is_create_on_the_query_subresource() -> None:
    assert query_access("ns", "m").resource_attributes() == {
        "group": "deepseek-operator.io", "resource": "deepseekdeployments",
        "subresource": "query", "verb": "create", "namespace": "ns", "name": "m"}


# ---- audit ----


def record(**fields: Any) -> AuditRecord:
    base: dict[str, Any] = {"started": 1_790_000_000.25, "client": "10.0.0.1",
                            "method": "POST", "path": "/v1/chat/completions"}
    return AuditRecord(**{**base, **fields})


def test_audit_line_has_every_field_and_no_prompt() -> None:
    line = json.loads(audit_line(record(user="alice", uid="u", groups=["g"], namespace="ns",
                                        deployment="m", model="r1", permission="model:query",
                                        role="user", allowed=True, request_hmac="ab" * 32,
                                        prompt_tokens=3, completion_tokens=7, status=200,
                                        latency_seconds=0.1234567, ttfb_seconds=0.01)))
    assert line["time"] == "2026-09-21T14:13:20.250Z"
    assert line["user"] == {"name": "alice", "uid": "u", "groups": ["g"]}
    assert line["latency_seconds"] == 0.123457
    assert set(line) == {
        "time", "user", "client", "method", "path", "namespace", "deployment", "model",
        "permission", "role", "allowed", "status", "error", "request_hmac",
        "prompt_tokens", "completion_tokens", "stream", "latency_seconds", "ttfb_seconds",
        "sensitivity", "detectors", "data_protection"}
    assert line["sensitivity"] is None and line["detectors"] is None


def test_audit_line_is_one_line_whatever_the_input() -> None:
    text = audit_line(record(user="a\nb\u2028c", error="x\r\ny"))
    assert "\n" not in text and "\u2028" not in text and "\r" not in text
    assert json.loads(text)["user"]["name"] == "a\nb\u2028c"


def test_audit_sink_rotates_and_appends_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    out = io.StringIO()
    sink = AuditSink(path, max_bytes=100, backups=2, stream=out)
    for index in range(5):
        sink.write(json.dumps({"n": index, "pad": "x" * 30}))
    sink.close()
    again = AuditSink(path, max_bytes=100, backups=2, stream=out)
    again.write(json.dumps({"n": 5, "pad": "x" * 30}))
    again.close()
    files = [path, Path(f"{path}.1"), Path(f"{path}.2")]
    assert not Path(f"{path}.3").exists()
    numbers = [json.loads(line)["n"] for f in reversed(files) for line in f.read_text().split(
        "\n") if line]
    assert numbers == [0, 1, 2, 3, 4, 5][-len(numbers):], "oldest backups dropped, order kept"
    assert len(numbers) >= 4
    assert all(f.stat().st_size <= 100 for f in files)
    assert len(out.getvalue().splitlines()) == 6, "every line also on the stream"


def test_audit_sink_raises_when_the_file_cannot_be_written(tmp_path: Path) -> None:
    sink = AuditSink(Path("/dev/full"), max_bytes=1 << 30, backups=1, stream=io.StringIO())
    with pytest.raises(AuditWriteError):
        sink.write("{}")
    with pytest.raises(AuditWriteError):
        AuditSink(tmp_path / "missing-dir" / "a.jsonl", max_bytes=10, backups=1)


# ---- SSE ----


def test_splitter_returns_whole_events_across_chunk_borders() -> None:
    splitter = EventSplitter()
    stream = b'data: {"a": 1}\n\ndata: {"b"' + b': 2}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n'
    got: list[bytes] = []
    for index in range(0, len(stream), 7):
        got += splitter.feed(stream[index:index + 7])
    assert b"".join(got) == stream
    assert [event_data(e) for e in got] == [b'{"a": 1}', b'{"b": 2}', None, b"[DONE]"]
    assert splitter.rest() == b""


def test_splitter_bounds_an_endless_event() -> None:
    splitter = EventSplitter(max_event_bytes=10)
    with pytest.raises(ValueError):
        splitter.feed(b"data: " + b"x" * 20)


def test_usage_from_the_last_chunk() -> None:
    chunk = b'data: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 9}}\n\n'
    document = event_json(chunk)
    assert usage_of(document) is not None
    assert (usage_of(document).prompt_tokens, usage_of(document).completion_tokens) == (4, 9)
    assert is_usage_only(document)
    normal = event_json(b'data: {"choices": [{"delta": {}}], "usage": null}\n\n')
    assert usage_of(normal) is None and not is_usage_only(normal)
    assert event_json(b"data: [DONE]\n\n") is None
    assert event_json(b"data: not json\n\n") is None


def test_error_event_is_an_openai_error_then_done() -> None:
    events = EventSplitter().feed(error_event("engine died", 502))
    assert event_json(events[0]) == {"error": {"message": "engine died", "type": "server_error",
                                               "param": None, "code": 502}}
    assert event_data(events[1]) == b"[DONE]"


# ---- routing ----


def dsd(name: str, namespace: str = "ns", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "deepseek-operator.io/v1alpha1", "kind": "DeepSeekDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": {"name": "deepseek-r1-distill-qwen-7b"}, **spec}}
    return body


def test_target_reads_served_name_port_capacity_with_the_api_defaults() -> None:
    plain = Target.from_object(dsd("m"))
    assert (plain.served_name, plain.port, plain.ready_replicas, plain.capacity) == (
        "deepseek-r1-distill-qwen-7b", 8000, 0, 0)
    named = Target.from_object({**dsd("m", model={"name": "deepseek-r1-distill-qwen-7b",
                                                   "servedName": "qwen"},
                                      service={"port": 9000},
                                      gpu={"maxConcurrentSequences": 8}),
                                "status": {"readyReplicas": 2}})
    assert (named.served_name, named.port, named.capacity) == ("qwen", 9000, 16)


def test_route_table_reports_every_deployment_of_a_name() -> None:
    table = RouteTable()
    a = Target.from_object(dsd("a", "ns1"))
    b = Target.from_object(dsd("b", "ns2"))
    table.upsert(b)
    table.upsert(a)
    assert [t.key for t in table.candidates(a.served_name)] == [("ns1", "a"), ("ns2", "b")]
    table.upsert(Target.from_object(dsd("b", "ns2", model={
        "name": "deepseek-r1-distill-qwen-7b", "servedName": "other"})))
    assert [t.key for t in table.candidates(a.served_name)] == [("ns1", "a")]
    assert [t.key for t in table.candidates("other")] == [("ns2", "b")]
    table.remove("ns1", "a")
    assert table.candidates(a.served_name) == []
    table.replace_all([a])
    assert len(table) == 1 and table.candidates("other") == []


def test_granting_role_matches_users_groups_and_service_accounts() -> None:
    target = Target.from_object(dsd("m", access={
        "roles": {"viewer": ["model:read"], "user": ["model:query"], "ops": ["model:query"]},
        "bindings": [
            {"role": "viewer", "subjects": [{"kind": "User", "name": "bob"}]},
            {"role": "user", "subjects": [{"kind": "Group", "name": "ml"},
                                          {"kind": "ServiceAccount", "name": "batch"}]},
            {"role": "ops", "subjects": [{"kind": "ServiceAccount", "name": "ci",
                                          "namespace": "tools"},
                                         {"kind": "User", "name": "bob"}]}]}))
    assert granting_role(target, "carol", ["ml"]) == "user"
    assert granting_role(target, "system:serviceaccount:ns:batch", []) == "user"
    assert granting_role(target, "system:serviceaccount:tools:ci", []) == "ops"
    assert granting_role(target, "bob", []) == "ops", "viewer has no model:query"
    assert granting_role(target, "dave", ["other"]) is None


# ---- admission ----


def test_admission_queues_in_order_and_bounds_the_queue() -> None:
    async def scenario() -> None:
        changes: list[tuple[int, int]] = []
        admission = Admission(2, lambda key, queued, inflight: changes.append((queued,
                                                                                inflight)))
        key = ("ns", "m")
        admission.set_capacity(key, 0)  # scaled to zero: everything waits
        order: list[int] = []

        async def request(number: int) -> None:
            await admission.acquire(key, 60)
            order.append(number)

        first = asyncio.create_task(request(1))
        await asyncio.sleep(0)
        second = asyncio.create_task(request(2))
        await asyncio.sleep(0)
        assert admission.queued(key) == 2
        with pytest.raises(QueueFull):
            await admission.acquire(key, 60)
        admission.set_capacity(key, 1)  # one replica with one slot is ready
        await first
        assert order == [1] and admission.inflight(key) == 1 and admission.queued(key) == 1
        admission.release(key)
        await second
        assert order == [1, 2]
        admission.release(key)
        assert admission.inflight(key) == 0
        assert changes[-1] == (0, 0)

    asyncio.run(scenario())


def test_admission_wait_ends_and_a_cancelled_waiter_holds_nothing() -> None:
    async def scenario() -> None:
        admission = Admission(5)
        key = ("ns", "m")
        with pytest.raises(QueueTimeout):
            await admission.acquire(key, 0.01)
        assert admission.queued(key) == 0
        waiter = asyncio.create_task(admission.acquire(key, 60))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        admission.set_capacity(key, 1)
        assert admission.inflight(key) == 0 and admission.queued(key) == 0
        gone = asyncio.create_task(admission.acquire(("ns", "x"), 60))
        await asyncio.sleep(0)
        admission.remove(("ns", "x"))
        with pytest.raises(DeploymentGone):
            await gone

    asyncio.run(scenario())


# ---- CLI ----


def test_gateway_flags_and_defaults() -> None:
    args = build_parser().parse_args(["gateway"])
    assert args.listen_address == ("0.0.0.0", 8080)
    assert args.upstream_template == "http://{name}.{namespace}.svc:{port}"
    assert (args.queue_timeout_seconds, args.max_queued, args.max_body_bytes) == (
        900.0, 64, 1 << 20)
    assert (args.auth_cache_seconds, args.auth_cache_size) == (10.0, 10000)
    assert args.per_replica_concurrency == 0
    assert (args.audit_file, args.audit_fail_open, args.namespace, args.audiences) == (
        None, False, "", "")
    args = build_parser().parse_args(["gateway", "--listen-address", "[::1]:0",
                                      "--auth-cache-seconds", "0"])
    assert args.listen_address == ("::1", 0) and args.auth_cache_seconds == 0.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["gateway", "--listen-address", "8080"])


def test_capacity_is_ready_replicas_times_the_per_replica_cap() -> None:
    from deepseek_operator.gateway.server import Gateway, GatewayOptions

    target = Target.from_object({**dsd("m", gpu={"maxConcurrentSequences": 8}),
                                 "status": {"readyReplicas": 3}})
    sink = AuditSink(None, max_bytes=1, backups=0, stream=io.StringIO())
    default = Gateway(GatewayOptions(), CountingReviewer(), sink)
    capped = Gateway(GatewayOptions(per_replica_concurrency=2), CountingReviewer(), sink)
    try:
        assert default.capacity(target) == 24
        assert capped.capacity(target) == 6
        assert default.capacity(Target.from_object(dsd("z"))) == 0, "no ready replica"
    finally:
        default.executor.shutdown()
        capped.executor.shutdown()


def test_watch_events_update_routes_and_capacity() -> None:
    from deepseek_operator.gateway.server import Gateway, GatewayOptions

    sink = AuditSink(None, max_bytes=1, backups=0, stream=io.StringIO())
    gateway = Gateway(GatewayOptions(), CountingReviewer(), sink)
    try:
        ready = {**dsd("a", gpu={"maxConcurrentSequences": 4}), "status": {"readyReplicas": 1}}
        gateway.apply_list([ready, dsd("b", "ns2")])
        assert gateway.synced and len(gateway.routes) == 2
        assert gateway.capacity(gateway.routes.get("ns", "a")) == 4
        gateway.apply_event("MODIFIED", {**ready, "status": {"readyReplicas": 2}})
        assert gateway.capacity(gateway.routes.get("ns", "a")) == 8
        broken = dsd("a")
        broken["spec"]["gpu"] = {"maxConcurrentSequences": -1}
        gateway.apply_event("MODIFIED", broken)
        assert gateway.routes.get("ns", "a") is None, "an unreadable object is not routed"
        gateway.apply_event("DELETED", dsd("b", "ns2"))
        assert len(gateway.routes) == 0
        gateway.apply_list([ready])
        assert [t.key for t in gateway.routes.all()] == [("ns", "a")]
    finally:
        gateway.executor.shutdown()


# ---- policy ConfigMaps ----


def policy_cm(text: str | None, name: str = "m-gateway-policy") -> dict[str, Any]:
    cm: dict[str, Any] = {"metadata": {"name": name, "namespace": "ns", "labels": {
        "app.kubernetes.io/component": "gateway-policy",
        "deepseek-operator.io/deployment": "m"}}}
    if text is not None:
        cm["data"] = {"policy.yaml": text}
    return cm


def test_policy_is_read_from_the_deployments_config_map() -> None:
    from deepseek_operator.gateway.policy import Policy, policy_from_config_map

    read = policy_from_config_map(policy_cm(
        "# comment\nqueueTimeoutSeconds: 610\nmaxQueuedRequests: 0\nmaxConcurrentPerReplica: 3\n"))
    assert read == (("ns", "m"), Policy(610.0, 0, 3), [])
    assert policy_from_config_map(policy_cm(None)) == (("ns", "m"), Policy(), [])
    assert policy_from_config_map(policy_cm("a: 1", name="other")) is None, (
        "only <deployment>-gateway-policy counts")


def test_bad_policy_values_fall_back_and_are_reported() -> None:
    from deepseek_operator.gateway.policy import Policy, policy_from_config_map

    read = policy_from_config_map(policy_cm(
        "queueTimeoutSeconds: soon\nmaxQueuedRequests: -1\nmaxConcurrentPerReplica: true\n"))
    assert read is not None
    _, policy, problems = read
    assert policy == Policy()
    assert len(problems) == 3 and all("using the gateway's default" in p for p in problems)
    read = policy_from_config_map(policy_cm("[1, 2"))
    assert read is not None and read[1] == Policy() and "not YAML" in read[2][0]
    for not_finite in (".nan", ".inf", "-.inf"):
        read = policy_from_config_map(policy_cm(f"queueTimeoutSeconds: {not_finite}\n"))
        assert read is not None and read[1] == Policy(), not_finite
        assert "finite number" in read[2][0]


def test_policy_overrides_flags_and_spec_for_its_deployment() -> None:
    from deepseek_operator.gateway.policy import DataProtection
    from deepseek_operator.gateway.server import Gateway, GatewayOptions

    sink = AuditSink(None, max_bytes=1, backups=0, stream=io.StringIO())
    gateway = Gateway(GatewayOptions(max_queued=64, queue_timeout_seconds=900),
                      CountingReviewer(), sink)
    try:
        gateway.apply_list([{**dsd("m", gpu={"maxConcurrentSequences": 8}),
                             "status": {"readyReplicas": 2}}])
        target = gateway.routes.get("ns", "m")
        assert gateway.capacity(target) == 16
        gateway.apply_policy_list([policy_cm("maxConcurrentPerReplica: 3\nmaxQueuedRequests: 5\n")])
        assert gateway.capacity(target) == 6
        policy = gateway.policy(("ns", "m"))
        assert (policy.max_queued, policy.queue_timeout_seconds) == (5, 900), "flag fills in"
        assert policy.data_protection == DataProtection(), "no key: mode audit"
        gateway.apply_policy_event("MODIFIED", policy_cm(
            "dataProtection: {mode: redact}\n"))
        assert gateway.policy(("ns", "m")).data_protection == DataProtection("redact", 0.5)
        gateway.apply_policy_event("DELETED", policy_cm(None))
        assert gateway.capacity(target) == 16 and gateway.policy(("ns", "m")).max_queued == 64
        assert gateway.policy(("ns", "m")).data_protection == DataProtection()
    finally:
        gateway.executor.shutdown()


def test_the_gateway_flag_turns_data_protection_off() -> None:
    from deepseek_operator.cli import build_parser

    assert build_parser().parse_args(["gateway"]).no_data_protection is False
    assert build_parser().parse_args(["gateway", "--no-data-protection"]).no_data_protection


def observed(body: dict[str, Any], generation: int, observed_generation: int,
             stalled: bool = False, ready: int = 1) -> dict[str, Any]:
    """`body` at metadata.generation `generation` with the operator's status."""
    conditions = [{"type": "Stalled", "status": "True" if stalled else "False",
                   "reason": "InvalidSpec" if stalled else "Reconciled", "message": "",
                   "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    return {**body, "metadata": {**body["metadata"], "generation": generation},
            "status": {"observedGeneration": observed_generation, "readyReplicas": ready,
                       "conditions": conditions}}


def test_a_refused_or_unseen_spec_change_keeps_routing_to_what_serves() -> None:
    from deepseek_operator.gateway.server import Gateway, GatewayOptions

    sink = AuditSink(None, max_bytes=1, backups=0, stream=io.StringIO())
    gateway = Gateway(GatewayOptions(), CountingReviewer(), sink)
    try:
        old = dsd("a", model={"name": "deepseek-r1-distill-qwen-7b"})
        gateway.apply_list([observed(old, 1, 1)])
        assert [t.served_name for t in gateway.routes.candidates(
            "deepseek-r1-distill-qwen-7b")] == ["deepseek-r1-distill-qwen-7b"]
        refused = dsd("a", model={"name": "deepseek-r1"}, gpu={"count": 1},
                      service={"port": 9000},
                      engine={"apiKeySecret": {"name": "k", "key": "key"}})
        for status in (observed(refused, 2, 1, ready=2),  # not yet observed
                       observed(refused, 2, 2, stalled=True, ready=2)):  # refused
            gateway.apply_event("MODIFIED", status)
            target = gateway.routes.get("ns", "a")
            assert target is not None
            assert (target.served_name, target.port, target.api_key) == (
                "deepseek-r1-distill-qwen-7b", 8000, None)
            assert target.ready_replicas == 2, "the ready replicas are the current status"
            assert gateway.routes.candidates("deepseek-r1") == []
        gateway.apply_list([observed(refused, 2, 2, stalled=True)])
        assert gateway.routes.get("ns", "a").served_name == "deepseek-r1-distill-qwen-7b", (
            "a relist keeps the last good target")
        accepted = dsd("a", model={"name": "deepseek-r1-distill-llama-8b"})
        gateway.apply_event("MODIFIED", observed(accepted, 3, 3))
        assert gateway.routes.get("ns", "a").served_name == "deepseek-r1-distill-llama-8b"
        gateway.apply_event("DELETED", observed(accepted, 3, 3))
        gateway.apply_event("ADDED", observed(refused, 1, 1, stalled=True))
        assert gateway.routes.get("ns", "a").served_name == "deepseek-r1", (
            "no last good target: routed by spec")
    finally:
        gateway.executor.shutdown()


def test_data_protection_modes_are_case_insensitive() -> None:
    from deepseek_operator.gateway.policy import DataProtection, policy_from_config_map

    for text, mode in (("dataProtection: {mode: Block}", "block"),
                       ("dataProtection: {mode: REDACT, blockThreshold: 0.25}", "redact")):
        read = policy_from_config_map(policy_cm(text))
        assert read is not None and read[2] == [], text
        assert read[1].data_protection is not None and read[1].data_protection.mode == mode
        assert not read[1].data_protection_invalid
    read = policy_from_config_map(policy_cm("dataProtection: {mode: REDACT, "
                                            "blockThreshold: 0.25}"))
    assert read is not None and read[1].data_protection == DataProtection("redact", 0.25)


@pytest.mark.parametrize("text", [
    "dataProtection: {mode: redcat}",
    "dataProtection: block",
    "dataProtection: [block]",
    "dataProtection: {mode: audit, blockThreshold: 2}",
    "dataProtection: {Mode: audit}",
    "dataProtection: {mode: [audit}",  # not YAML, but it names dataProtection
    "- dataProtection: {mode: audit}",  # a list
])
def test_an_invalid_data_protection_fails_closed(text: str) -> None:
    from deepseek_operator.gateway.policy import FAIL_CLOSED, policy_from_config_map

    read = policy_from_config_map(policy_cm(text))
    assert read is not None
    _, policy, problems = read
    assert policy.data_protection == FAIL_CLOSED and FAIL_CLOSED.mode == "block"
    assert policy.data_protection_invalid
    assert problems and all("ns/m-gateway-policy policy.yaml" in p for p in problems)


def test_an_unreadable_policy_without_data_protection_is_not_failed_closed() -> None:
    from deepseek_operator.gateway.policy import Policy, policy_from_config_map

    read = policy_from_config_map(policy_cm("maxQueuedRequests: [1"))
    assert read is not None and read[1] == Policy() and not read[1].data_protection_invalid


def test_an_invalid_policy_is_an_error_log_and_a_gauge(
        caplog: pytest.LogCaptureFixture) -> None:
    from deepseek_operator.gateway.server import Gateway, GatewayOptions

    sink = AuditSink(None, max_bytes=1, backups=0, stream=io.StringIO())
    gateway = Gateway(GatewayOptions(), CountingReviewer(), sink)

    def gauge() -> float | None:
        return gateway.metrics.registry.get_sample_value(
            "deepseek_gateway_policy_invalid", {"namespace": "ns", "deployment": "m"})
    try:
        gateway.apply_list([dsd("m")])
        with caplog.at_level("WARNING"):
            gateway.apply_policy_list([policy_cm("dataProtection: {mode: redcat}\n")])
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1
        assert "ns/m-gateway-policy policy.yaml" in errors[0].getMessage()
        assert "dataProtection.mode" in errors[0].getMessage()
        assert gauge() == 1
        assert gateway.policy(("ns", "m")).data_protection.mode == "block"
        gateway.apply_policy_event("MODIFIED", policy_cm("dataProtection: {mode: audit}\n"))
        assert gauge() == 0
        assert gateway.policy(("ns", "m")).data_protection.mode == "audit"
        gateway.apply_policy_event("DELETED", policy_cm(None))
        assert gauge() is None
    finally:
        gateway.executor.shutdown()


def test_deeply_nested_json_is_a_400_not_a_recursion_error() -> None:
    from deepseek_operator.gateway.server import (
        MAX_JSON_DEPTH,
        HttpError,
        _dump_json,
        _parse_json,
    )

    for depth in (MAX_JSON_DEPTH + 1, 2000, 100_000):
        body = b'{"model": "m", "messages": ' + b"[" * depth + b"]" * depth + b"}"
        with pytest.raises(HttpError) as refused:
            _parse_json(body)
        assert refused.value.status == 400 and "too deeply" in refused.value.message
    assert _parse_json(b'{"a": [[[1]]]}') == {"a": [[[1]]]}
    at_limit = b'{"a": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    assert _parse_json(at_limit)["a"]
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(HttpError) as refused:
        _dump_json({"prompt": deep})
    assert refused.value.status == 400


def test_metrics_move_to_their_own_listener_when_asked() -> None:
    from deepseek_operator.gateway.server import Gateway, GatewayOptions

    args = build_parser().parse_args(["gateway"])
    assert args.metrics_listen_address is None, "default: /metrics on the API port"
    args = build_parser().parse_args(["gateway", "--metrics-listen-address", "0.0.0.0:9090"])
    assert args.metrics_listen_address == ("0.0.0.0", 9090)

    def paths(options: GatewayOptions) -> tuple[set[str], set[str]]:
        sink = AuditSink(None, max_bytes=1, backups=0, stream=io.StringIO())
        gateway = Gateway(options, CountingReviewer(), sink)
        try:
            return ({r.canonical for r in gateway.app().router.resources()},
                    {r.canonical for r in gateway.metrics_app().router.resources()})
        finally:
            gateway.executor.shutdown()

    api, _ = paths(GatewayOptions())
    assert "/metrics" in api and "/v1/models" in api
    api, metrics = paths(GatewayOptions(metrics_address=("127.0.0.1", 0)))
    assert "/metrics" not in api and "/v1/chat/completions" in api
    assert metrics == {"/metrics", "/healthz"}
