"""The gateway's HTTP server: OpenAI API in, authorized and audited, out to the engine.

Request flow of `POST /v1/chat/completions` and `POST /v1/completions`:

1. bearer token -> TokenReview (401 without one or with a bad one; 503 when the review
   cannot be made: fail closed, nothing is forwarded);
2. body read within `body_timeout_seconds` (408) and `max_body_bytes` (413), parsed (400);
3. `model` -> the DeepSeekDeployment serving it (RouteTable) -> SubjectAccessReview for
   model:query (404 when the caller may neither query nor see it, whether it exists or
   not; 403 naming model:query when the caller may see it; 409 naming the deployments when
   the caller may query two or more serving that name; deployments it may not query do
   not take the name away from it);
   then data protection (protect.py, the deployment's policy): the prompt's detectors
   are counted and scored; in mode `block` a score over the threshold is refused (400
   naming the detector types);
4. a slot of the deployment (admission.py): held in its queue while no replica is ready or
   all are busy; 503 with Retry-After when the queue is full or the wait ends;
5. forwarded to the engine Service with only the gateway's own headers (never the
   caller's Authorization), plus the engine's API key when spec.engine.apiKeySecret names
   one (engine_auth.py; 503 when that Secret cannot be read: nothing is forwarded without
   it); a stream is passed on event by event as it arrives,
   with the engine's `usage` read on the way (asked for with `stream_options` when the
   client did not, and that extra chunk then not passed on); in modes `redact` and
   `block` the answer's matches are replaced by `[REDACTED:<type>]`, whole or streamed;
6. one audit line, written before the response ends: if it cannot be written the request
   fails (503, or an error event ending a stream) unless `audit_fail_open`.

The client going away cancels the handler (aiohttp's handler_cancellation), which closes
the engine connection, so the engine aborts the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .admission import Admission, DeploymentGone, Key, QueueFull, QueueTimeout
from .audit import AuditRecord, AuditSink, AuditWriteError, audit_line
from .auth import (
    Authorizer,
    AuthUnavailable,
    Identity,
    Reviewer,
    query_access,
    see_access,
)
from .detect import Scanner
from .engine_auth import EngineKeys, EngineKeyUnavailable, SecretMissing, SecretReader
from .metrics import GatewayMetrics
from .policy import DataProtection, Policy, policy_from_config_map
from .protect import StreamProtector, inspect_prompt, redact_answer
from .routing import QUERY_PERMISSION, RouteTable, Target, granting_role, reconciled
from .sse import DONE, EventSplitter, error_event, event_data, event_json, is_usage_only, usage_of

log = logging.getLogger(__name__)

INFERENCE_PATHS: Final = ("/v1/chat/completions", "/v1/completions")
UPSTREAM_CONNECT_TIMEOUT_SECONDS: Final = 10.0
UPSTREAM_READ_TIMEOUT_SECONDS: Final = 600.0
MiB: Final = 1 << 20


@dataclass(frozen=True)
class GatewayOptions:
    """Settings of one gateway (the `deepseek-operator gateway` flags)."""

    host: str = "0.0.0.0"
    port: int = 8080
    upstream_template: str = "http://{name}.{namespace}.svc:{port}"
    namespace: str = ""
    audit_file: Path | None = None
    audit_max_bytes: int = 100 * MiB
    audit_backups: int = 5
    audit_fail_open: bool = False
    queue_timeout_seconds: float = 900.0
    max_queued: int = 64
    max_body_bytes: int = MiB
    body_timeout_seconds: float = 30.0
    auth_cache_seconds: float = 10.0
    auth_cache_size: int = 10000
    audiences: tuple[str, ...] = ()
    review_timeout_seconds: float = 5.0
    per_replica_concurrency: int = 0  # 0: each deployment's spec.gpu.maxConcurrentSequences
    data_protection: bool = True  # False: inspect nothing (--no-data-protection)
    # --metrics-listen-address: /metrics on its own listener (and not on the API port);
    # None: /metrics on the API port
    metrics_address: tuple[str, int] | None = None
    # Key of the audit line's request_hmac (--audit-digest-key-file); empty: a random key
    # per process, so digests compare only within one gateway process.
    audit_digest_key: bytes = field(default=b"", repr=False)


class HttpError(Exception):
    """An answer in the OpenAI error shape: {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def response(self) -> web.Response:
        """The JSON response."""
        body = {"error": {"message": self.message, "type": self.kind, "param": None,
                          "code": self.status}}
        return web.json_response(body, status=self.status, headers=self.headers)


def _key_of(obj: dict[str, Any]) -> Key:
    """(namespace, name) of a watched object."""
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace", "")), str(metadata.get("name", "")))


def not_found(model: str) -> HttpError:
    """The same 404 for a model that does not exist and one the caller may not see."""
    return HttpError(404, f"The model `{model}` does not exist or you do not have access "
                          "to it.", kind="model_not_found")


@dataclass
class _Call:
    """One request's state while it is handled."""

    record: AuditRecord
    started: float  # monotonic
    identity: Identity | None = None
    target: Target | None = None
    finished: bool = field(default=False)


class Gateway:
    """The aiohttp application and the state it shares: routes, admission, auth, audit."""

    def __init__(self, options: GatewayOptions, reviewer: Reviewer, sink: AuditSink,
                 metrics: GatewayMetrics | None = None,
                 secrets: SecretReader | None = None) -> None:
        self.options = options
        self._digest_key = options.audit_digest_key or os.urandom(32)
        self.routes = RouteTable()
        self.metrics = metrics or GatewayMetrics()
        self.sink = sink
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="review")
        self.authorizer = Authorizer(reviewer, self.executor,
                                     ttl_seconds=options.auth_cache_seconds,
                                     max_size=options.auth_cache_size,
                                     audiences=options.audiences)
        self.admission = Admission(options.max_queued, self._gauges)
        self.engine_keys = EngineKeys(secrets or _no_secrets, self.executor)
        self.policies: dict[Key, Policy] = {}
        # per deployment, the target of the last object the operator reconciled without a
        # stall: what serves while a later spec change is refused or not yet seen
        self.last_good: dict[Key, Target] = {}
        self.scanner = Scanner()
        self.synced = False
        self.policies_synced = False
        self._session: aiohttp.ClientSession | None = None

    # ---- the route table, fed by the watch (on the event loop) ----

    def apply_list(self, objects: list[dict[str, Any]]) -> None:
        """Replace the table with `objects` (a fresh list of DeepSeekDeployments)."""
        listed = {_key_of(obj) for obj in objects}
        for key in set(self.last_good) - listed:
            del self.last_good[key]
        targets = [t for t in (self._target(obj) for obj in objects) if t is not None]
        gone = {t.key for t in self.routes.all()} - {t.key for t in targets}
        self.routes.replace_all(targets)
        for key in gone:
            self.admission.remove(key)
        for key in gone:
            self._forget_limits(key)
        for target in targets:
            self._refresh(target)
        self.synced = True

    def apply_event(self, kind: str, obj: dict[str, Any]) -> None:
        """Apply one watch event (ADDED, MODIFIED, DELETED)."""
        key = _key_of(obj)
        if kind == "DELETED":
            self.last_good.pop(key, None)
        target = None if kind == "DELETED" else self._target(obj)
        if target is None:
            self.routes.remove(*key)
            self.admission.remove(key)
            self._forget_limits(key)
            return
        self.routes.upsert(target)
        self._refresh(target)

    def _refresh(self, target: Target) -> None:
        """Apply `target`'s capacity to admission and export its limits."""
        capacity = self.capacity(target)
        self.admission.set_capacity(target.key, capacity)
        policy = self.policy(target.key)
        self.metrics.capacity.labels(*target.key).set(capacity)
        self.metrics.queue_limit.labels(*target.key).set(policy.max_queued or 0)
        self.metrics.queue_timeout.labels(*target.key).set(policy.queue_timeout_seconds or 0)

    def _forget_limits(self, key: Key) -> None:
        for gauge in (self.metrics.capacity, self.metrics.queue_limit,
                      self.metrics.queue_timeout):
            with contextlib.suppress(KeyError):
                gauge.remove(*key)

    def capacity(self, target: Target) -> int:
        """Requests `target` takes at once: ready replicas x the per-replica cap (the
        policy ConfigMap's maxConcurrentPerReplica, else `per_replica_concurrency`, else
        the deployment's maxConcurrentSequences)."""
        policy = self.policies.get(target.key, Policy())
        per_replica = (policy.max_concurrent_per_replica
                       or self.options.per_replica_concurrency
                       or target.max_concurrent_sequences)
        return target.ready_replicas * per_replica

    def policy(self, key: Key) -> Policy:
        """The policy of deployment `key`, with the gateway's flags filled in where the
        ConfigMap sets nothing (the per-replica cap stays as `capacity` resolves it)."""
        policy = self.policies.get(key, Policy())
        return Policy(
            queue_timeout_seconds=(self.options.queue_timeout_seconds
                                   if policy.queue_timeout_seconds is None
                                   else policy.queue_timeout_seconds),
            max_queued=self.options.max_queued if policy.max_queued is None
            else policy.max_queued,
            max_concurrent_per_replica=policy.max_concurrent_per_replica,
            data_protection=policy.data_protection or DataProtection(),
            data_protection_invalid=policy.data_protection_invalid)

    def apply_policy_list(self, objects: list[dict[str, Any]]) -> None:
        """Replace the policies with those of `objects` (policy ConfigMaps)."""
        before = set(self.policies)
        self.policies.clear()
        for obj in objects:
            self._apply_policy(obj)
        for key in before - set(self.policies):
            with contextlib.suppress(KeyError):
                self.metrics.policy_invalid.remove(*key)
        self._recompute(before | set(self.policies))
        self.policies_synced = True

    def apply_policy_event(self, kind: str, obj: dict[str, Any]) -> None:
        """Apply one watch event of a policy ConfigMap."""
        read = policy_from_config_map(obj)
        if read is None:
            return
        key = read[0]
        if kind == "DELETED":
            self.policies.pop(key, None)
            with contextlib.suppress(KeyError):
                self.metrics.policy_invalid.remove(*key)
        else:
            self._apply_policy(obj)
        self._recompute({key})

    def _apply_policy(self, obj: dict[str, Any]) -> None:
        read = policy_from_config_map(obj)
        if read is None:
            return
        key, policy, problems = read
        for problem in problems:
            if policy.data_protection_invalid and "dataProtection" in problem:
                log.error("%s", problem)  # failed closed: block until it is fixed
            else:
                log.warning("%s", problem)
        self.metrics.policy_invalid.labels(*key).set(1 if policy.data_protection_invalid else 0)
        self.policies[key] = policy

    def _recompute(self, keys: set[Key]) -> None:
        for key in keys:
            target = self.routes.get(*key)
            if target is not None:
                self._refresh(target)

    def _target(self, obj: dict[str, Any]) -> Target | None:
        """The target to route `obj` by: its spec's once the operator reconciled it without
        a stall (remembered as the last good one); while it is stalled or not yet observed,
        the last good target with the current ready replicas (the old engine still serves);
        with none known (a new object, or the gateway started during a stall), the spec's."""
        key = _key_of(obj)
        good = reconciled(obj)
        try:
            target: Target | None = Target.from_object(obj)
        except Exception as error:  # an object this version cannot read is not routable
            log.warning("DeepSeekDeployment %s/%s not routable: %s", key[0], key[1],
                        str(error)[:500])
            target = None
        if good and target is not None:
            self.last_good[key] = target
            return target
        last = self.last_good.get(key)
        if last is None:
            return target
        status = obj.get("status") or {}
        ready = status.get("readyReplicas") if isinstance(status, dict) else None
        kept = replace(last, ready_replicas=ready if isinstance(ready, int) and ready > 0
                       else 0)
        if target is None or target != replace(kept, ready_replicas=target.ready_replicas):
            log.info("DeepSeekDeployment %s/%s: spec change not reconciled (stalled or not "
                     "yet observed); routing by the last reconciled spec", *key)
        return kept

    def _gauges(self, key: Key, queued: int, inflight: int) -> None:
        self.metrics.queued.labels(*key).set(queued)
        self.metrics.inflight.labels(*key).set(inflight)

    # ---- the application ----

    def app(self) -> web.Application:
        """The aiohttp application (routes and the upstream session's lifecycle)."""
        app = web.Application(client_max_size=self.options.max_body_bytes)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        if self.options.metrics_address is None:
            app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/v1/models", self.models)
        for path in INFERENCE_PATHS:
            app.router.add_post(path, self.inference)
        app.cleanup_ctx.append(self._upstream_session)
        return app

    def metrics_app(self) -> web.Application:
        """The application of the separate metrics listener (--metrics-listen-address):
        `/metrics` and `/healthz` only, so the API port does not list every deployment to
        anyone who can reach it."""
        app = web.Application()
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/healthz", self.healthz)
        return app

    async def _upstream_session(self, app: web.Application) -> Any:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=UPSTREAM_CONNECT_TIMEOUT_SECONDS,
                                        sock_read=UPSTREAM_READ_TIMEOUT_SECONDS)
        # One connection per request, none kept alive: through the Service's ClusterIP a
        # new connection reaches only a pod in its endpoints, while a kept-alive one would
        # keep carrying new requests to a pod that is being deleted, whose preStop drain
        # waits for its in-flight streams and would then wait out the grace period. The
        # cost is one TCP handshake inside the cluster per request (plain HTTP, no TLS).
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                              auto_decompress=False)
        yield
        await self._session.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def healthz(self, request: web.Request) -> web.Response:
        """200 while the event loop answers."""
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        """200 once the DeepSeekDeployments and the policies have been listed (or the
        policies found unreadable), else 503."""
        if self.synced and self.policies_synced:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="DeepSeekDeployments not listed yet\n")

    async def metrics_page(self, request: web.Request) -> web.Response:
        """The Prometheus text exposition."""
        response = web.Response(body=generate_latest(self.metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    # ---- the OpenAI API ----

    async def models(self, request: web.Request) -> web.StreamResponse:
        """`GET /v1/models`: the models the caller may query (model:query)."""

        async def handle(call: _Call) -> web.StreamResponse:
            identity = await self._authenticate(request, call)
            targets = self.routes.all()
            allowed = await asyncio.gather(*(self._may(identity, query_access(*t.key))
                                             for t in targets))
            data = [{"id": t.served_name, "object": "model", "created": 0,
                     "owned_by": f"{t.namespace}/{t.name}"}
                    for t, ok in zip(targets, allowed, strict=True) if ok]
            call.record.allowed = True
            call.record.status = 200
            return web.json_response({"object": "list", "data": data})

        return await self._audited(request, handle)

    async def inference(self, request: web.Request) -> web.StreamResponse:
        """`POST /v1/chat/completions` and `/v1/completions` (module docstring)."""

        async def handle(call: _Call) -> web.StreamResponse:
            identity = await self._authenticate(request, call)
            body = await self._read_body(request, call)
            document = _parse_json(body)
            model = document.get("model")
            if not isinstance(model, str) or not model:
                raise HttpError(400, "field 'model': a served model name is required")
            call.record.model = model
            target = await self._route(identity, model, call)
            protection = self._inspect_prompt(call, target, document)
            stream = document.get("stream") is True
            call.record.stream = stream
            injected = False
            if stream:
                options = document.get("stream_options")
                if not (isinstance(options, dict) and options.get("include_usage")):
                    document["stream_options"] = {
                        **(options if isinstance(options, dict) else {}),
                        "include_usage": True}
                    body = _dump_json(document)
                    injected = True
            return await self._admitted(request, call, target, body, stream, injected,
                                        protection)

        return await self._audited(request, handle)

    def _inspect_prompt(self, call: _Call, target: Target,
                        document: dict[str, Any]) -> DataProtection | None:
        """Count and score the prompt's detectors into the audit record; refuse it (400)
        in mode block when its score is over the threshold. Returns the policy (None
        when the gateway runs with data protection off)."""
        if not self.options.data_protection:
            return None
        protection = self.policy(target.key).data_protection or DataProtection()
        findings = inspect_prompt(self.scanner, document)
        record = call.record
        record.data_protection = protection.mode
        record.prompt_detectors = findings.counts
        record.prompt_sensitivity = findings.score
        if protection.mode == "block" and findings.score > protection.block_threshold:
            raise HttpError(400, "the prompt was refused by the data-protection policy of "
                                 f"{target.namespace}/{target.name}: it contains "
                                 f"{', '.join(findings.types(self.scanner))} (sensitivity "
                                 f"{findings.score:g} > {protection.block_threshold:g})",
                            kind="data_protection_error")
        return protection

    async def _audited(self, request: web.Request,
                       handle: Callable[[_Call], Awaitable[web.StreamResponse]],
                       ) -> web.StreamResponse:
        """Run `handle`, then write the request's audit line (for a stream, `handle`
        writes it before the stream's end) and count the response."""
        record = AuditRecord(started=time.time(), client=request.remote, method=request.method,
                             path=request.path)
        call = _Call(record, time.monotonic())
        response: web.StreamResponse
        try:
            response = await handle(call)
        except HttpError as error:
            record.status = error.status
            record.error = error.message
            response = error.response()
        except asyncio.CancelledError:
            record.status = 499
            record.error = record.error or "the client closed the connection"
            self._finish(call)
            raise
        except Exception as error:
            log.exception("request failed")
            record.status = 500
            record.error = f"gateway error: {type(error).__name__}"
            response = HttpError(500, "internal gateway error").response()
        if not call.finished and not self._finish(call):
            response = HttpError(503, "the audit trail cannot be written; request "
                                      "refused").response()
        return response

    def _finish(self, call: _Call) -> bool:
        """Count the response and write the audit line; False when the line could not be
        written and the gateway fails closed."""
        if call.finished:
            return True
        call.finished = True
        record = call.record
        record.latency_seconds = time.monotonic() - call.started
        target = call.target
        if target is not None and record.allowed:
            self.metrics.responses.labels(*target.key, str(record.status)).inc()
            self.metrics.duration.labels(*target.key).observe(record.latency_seconds)
            if record.ttfb_seconds is not None:
                self.metrics.ttft.labels(*target.key).observe(record.ttfb_seconds)
        try:
            self.sink.write(audit_line(record))
        except AuditWriteError as error:
            self.metrics.audit_failures.inc()
            log.error("%s", error)
            return self.options.audit_fail_open
        return True

    async def _authenticate(self, request: web.Request, call: _Call) -> Identity:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HttpError(401, "a bearer token is required (Authorization: Bearer TOKEN; "
                                 "e.g. from `kubectl create token`)",
                            headers={"WWW-Authenticate": "Bearer"}, kind="authentication_error")
        try:
            identity = await self.authorizer.authenticate(token)
        except AuthUnavailable as error:
            self.metrics.auth_failures.labels("TokenReview").inc()
            log.error("%s", error)
            raise HttpError(503, "cannot check the token now (TokenReview failed); try "
                                 "again later", headers={"Retry-After": "5"}) from None
        if identity is None:
            raise HttpError(401, "the bearer token is not valid (expired, revoked or for "
                                 "another audience)",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                            kind="authentication_error")
        call.identity = identity
        call.record.user = identity.name
        call.record.uid = identity.uid
        call.record.groups = list(identity.groups)
        return identity

    async def _may(self, identity: Identity, access: Any) -> bool:
        try:
            return await self.authorizer.allowed(identity, access)
        except AuthUnavailable as error:
            self.metrics.auth_failures.labels("SubjectAccessReview").inc()
            log.error("%s", error)
            raise HttpError(503, "cannot check permissions now (SubjectAccessReview "
                                 "failed); try again later",
                            headers={"Retry-After": "5"}) from None

    async def _read_body(self, request: web.Request, call: _Call) -> bytes:
        limit = self.options.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise HttpError(413, f"the request body is over the gateway's limit of {limit} "
                                 "bytes")
        try:
            async with asyncio.timeout(self.options.body_timeout_seconds):
                body = await request.read()
        except TimeoutError:
            raise HttpError(408, "the request body did not arrive within "
                                 f"{self.options.body_timeout_seconds:g} s") from None
        except web.HTTPRequestEntityTooLarge:
            raise HttpError(413, f"the request body is over the gateway's limit of {limit} "
                                 "bytes") from None
        # Keyed, not a plain SHA-256: a plain digest lets whoever reads the audit trail
        # confirm a guessed prompt (or the SSN inside a known template).
        call.record.request_hmac = hmac.new(self._digest_key, body, hashlib.sha256).hexdigest()
        return body

    async def _route(self, identity: Identity, model: str, call: _Call) -> Target:
        """The one deployment `identity` may query as `model` (module docstring, step 3)."""
        candidates = self.routes.candidates(model)
        if not candidates:
            raise not_found(model)
        queryable = await asyncio.gather(*(self._may(identity, query_access(*t.key))
                                           for t in candidates))
        call.record.permission = QUERY_PERMISSION
        allowed = [t for t, ok in zip(candidates, queryable, strict=True) if ok]
        if len(allowed) > 1:
            # Two the caller may query: which one it meant is not the gateway's guess.
            names = ", ".join(f"{t.namespace}/{t.name}" for t in sorted(allowed,
                                                                        key=lambda t: t.key))
            raise HttpError(409, f"the model `{model}` is served by more than one "
                                 f"DeepSeekDeployment you may query ({names}); the gateway "
                                 "does not pick one: give each a distinct "
                                 "spec.model.servedName", kind="conflict")
        if not allowed:
            # Deployments the caller may not query are not its business, whoever else
            # serves the name: 403 only when it may see exactly one, else an unknown model.
            visible = [t for t in candidates if await self._may(identity, see_access(*t.key))]
            if len(visible) == 1:
                target = visible[0]
                call.record.namespace, call.record.deployment = target.key
                raise HttpError(403, f"permission model:query is missing: {identity.name} "
                                     f"may not create deepseekdeployments/query of "
                                     f"{target.namespace}/{target.name}",
                                kind="permission_error")
            raise not_found(model)
        target = allowed[0]
        call.record.namespace, call.record.deployment = target.key
        call.record.allowed = True
        call.record.role = granting_role(target, identity.name, identity.groups)
        call.target = target
        return target

    async def _admitted(self, request: web.Request, call: _Call, target: Target, body: bytes,
                        stream: bool, injected: bool,
                        protection: DataProtection | None) -> web.StreamResponse:
        self.metrics.requests.labels(*target.key).inc()
        current = self.routes.get(*target.key) or target
        self.admission.set_capacity(current.key, self.capacity(current))
        policy = self.policy(target.key)
        timeout = policy.queue_timeout_seconds or 0.0
        retry = {"Retry-After": str(max(1, int(min(timeout, 60))))}
        try:
            await self.admission.acquire(target.key, timeout, policy.max_queued)
        except QueueFull:
            raise HttpError(503, f"{target.namespace}/{target.name} has "
                                 f"{policy.max_queued} requests waiting already; try "
                                 "again later", headers=retry) from None
        except QueueTimeout:
            raise HttpError(503, f"no replica of {target.namespace}/{target.name} could take "
                                 f"the request within {timeout:g} s; try again later",
                            headers=retry) from None
        except DeploymentGone:
            raise not_found(call.record.model or "") from None
        try:
            url = self.options.upstream_template.format(
                name=target.name, namespace=target.namespace,
                port=target.port) + request.path
            headers = await self._engine_headers(current)
            rewrite = None if protection is None else protection.mode != "audit"
            if stream:
                protector = None if rewrite is None else StreamProtector(self.scanner,
                                                                         rewrite=rewrite)
                response = await self._forward_stream(request, call, url, body, injected,
                                                      protector, headers)
            else:
                response = await self._forward(call, url, body, rewrite, headers)
            if response.status == 401 and current.api_key is not None and not response.prepared:
                # The engine refused the gateway's key, not the caller: read the Secret
                # again next time, and do not tell the caller its own token was wrong.
                self.engine_keys.forget(current.namespace, current.api_key.name)
                raise HttpError(502, f"the engine of {current.namespace}/{current.name} "
                                     "refused the API key in Secret "
                                     f"{current.namespace}/{current.api_key.name}; after a "
                                     "key rotation its pods need a restart")
            return response
        finally:
            self.admission.release(target.key)

    async def _engine_headers(self, target: Target) -> dict[str, str]:
        """The headers sent to `target`'s engine: content type, and its API key if it has
        one. Raises HttpError(503) when the key cannot be read (fail closed)."""
        try:
            key = await self.engine_keys.headers(target.namespace, target.api_key)
        except EngineKeyUnavailable as error:
            log.error("engine API key of %s/%s: %s", *target.key, error)
            raise HttpError(503, f"the engine API key of {target.namespace}/{target.name} "
                                 f"cannot be read: {error}; the request was not forwarded",
                            headers={"Retry-After": "10"}) from None
        return {**_UPSTREAM_HEADERS, **key}

    async def _forward(self, call: _Call, url: str, body: bytes, rewrite: bool | None,
                       headers: dict[str, str]) -> web.Response:
        assert self._session is not None
        try:
            async with self._session.post(url, data=body, headers=headers) as up:
                call.record.ttfb_seconds = time.monotonic() - call.started
                data = await up.read()
                status = up.status
                content_type = up.headers.get("Content-Type", "application/json")
        except (aiohttp.ClientError, TimeoutError) as error:
            raise HttpError(502, f"the engine did not answer: {type(error).__name__}") from None
        call.record.status = status
        if status < 400:
            try:
                answer = json.loads(data)
            except ValueError:
                answer = None
            usage = usage_of(answer) if isinstance(answer, dict) else None
            if isinstance(answer, dict) and rewrite is not None:
                findings = redact_answer(self.scanner, answer, rewrite=rewrite)
                call.record.completion_detectors = findings.counts
                call.record.completion_sensitivity = findings.score
                if rewrite and findings.counts:
                    data = json.dumps(answer, ensure_ascii=False).encode()
            if usage is not None:
                call.record.prompt_tokens = usage.prompt_tokens
                call.record.completion_tokens = usage.completion_tokens
        else:
            call.record.error = f"engine answered HTTP {status}"
        return web.Response(status=status, body=data, headers={"Content-Type": content_type})

    async def _forward_stream(self, request: web.Request, call: _Call, url: str, body: bytes,
                              injected: bool, protector: StreamProtector | None,
                              headers: dict[str, str]) -> web.StreamResponse:
        assert self._session is not None
        record = call.record
        try:
            up = await self._session.post(url, data=body, headers=headers)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise HttpError(502, f"the engine did not answer: {type(error).__name__}") from None
        try:
            if up.status != 200:
                data = await up.read()
                record.status = up.status
                record.error = f"engine answered HTTP {up.status}"
                return web.Response(status=up.status, body=data, headers={
                    "Content-Type": up.headers.get("Content-Type", "application/json")})
            response = web.StreamResponse(status=200, headers={
                "Content-Type": up.headers.get("Content-Type", "text/event-stream"),
                "Cache-Control": "no-cache"})
            await response.prepare(request)
            record.status = 200
            try:
                await self._pump(call, up, response, injected, protector)
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                record.status = 499
                record.error = "the client closed the connection"
                self._finish(call)
            return response
        finally:
            up.close()  # closes the engine connection unless fully read: the engine aborts

    async def _pump(self, call: _Call, up: aiohttp.ClientResponse,
                    response: web.StreamResponse, injected: bool,
                    protector: StreamProtector | None) -> None:
        """Pass the engine's events on as they complete (through `protector`); end the
        stream after the audit line is written (with the engine's `[DONE]`, or an error
        event)."""
        record = call.record
        splitter = EventSplitter()
        done_event: bytes | None = None
        try:
            async for chunk in up.content.iter_any():
                if record.ttfb_seconds is None:
                    record.ttfb_seconds = time.monotonic() - call.started
                out = []
                for event in splitter.feed(chunk):
                    if b'"usage"' in event:
                        document = event_json(event)
                        usage = usage_of(document)
                        if usage is not None:
                            record.prompt_tokens = usage.prompt_tokens
                            record.completion_tokens = usage.completion_tokens
                        if injected and is_usage_only(document):
                            continue
                    if done_event is None and DONE in event and event_data(event) == DONE:
                        done_event = event  # held until the audit line is written
                        continue
                    out.append(protector.event(event) if protector else event)
                if out:
                    await response.write(b"".join(out))
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
                aiohttp.ClientOSError, TimeoutError, ValueError) as error:
            if protector is not None:
                self._record_completion(record, protector)
            record.status = 502
            record.error = f"the engine broke off the stream: {type(error).__name__}"
            self._finish(call)
            await response.write(error_event("the model server closed the stream before it "
                                             "ended; the answer is incomplete", 502))
            await response.write_eof()
            return
        rest = splitter.rest()
        if protector is not None:
            rest = protector.event(rest) if rest.strip() else b""
            rest += protector.finish()
            self._record_completion(record, protector)
        if rest.strip():
            await response.write(rest)
        if self._finish(call):
            await response.write(done_event or b"")
        else:
            await response.write(error_event("the audit trail cannot be written; the stream "
                                             "is cut", 503))
        await response.write_eof()


    @staticmethod
    def _record_completion(record: AuditRecord, protector: StreamProtector) -> None:
        findings = protector.findings
        record.completion_detectors = findings.counts
        record.completion_sensitivity = findings.score


_UPSTREAM_HEADERS: Final = {"Content-Type": "application/json"}
"""The only headers the engine gets besides its API key: the caller's are not passed on."""


def _no_secrets(namespace: str, name: str) -> dict[str, str]:
    """The SecretReader of a gateway given none: every Secret is missing (fail closed)."""
    raise SecretMissing(f"{namespace}/{name}: this gateway reads no Secrets")


def _dump_json(document: dict[str, Any]) -> bytes:
    """`document` as JSON; a 400 when it nests too deeply to write back (it parsed just
    under the recursion limit)."""
    try:
        return json.dumps(document).encode()
    except RecursionError:
        raise HttpError(400, "the request body nests JSON arrays or objects too deeply") \
            from None


MAX_JSON_DEPTH: Final = 200
"""Deepest nesting of arrays and objects a request may have: the OpenAI API needs a
handful (tool schemas a dozen or two); the limit keeps every later walk of the document
(detection, re-encoding) far from Python's recursion limit, whatever it is set to."""


def _depth(document: Any) -> int:
    """How deeply arrays and objects nest in `document` (a scalar: 0); iterative."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node \
            if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children
                     if isinstance(child, dict | list))
    return deepest


def _parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400: not JSON, not an object, or nested
    deeper than MAX_JSON_DEPTH (also when the parser itself hits the recursion limit)."""
    too_deep = HttpError(400, "the request body nests JSON arrays or objects too deeply "
                              f"(more than {MAX_JSON_DEPTH} levels)")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise HttpError(400, f"the request body is not JSON: {error}"[:300]) from None
    except RecursionError:
        raise too_deep from None
    if _depth(document) > MAX_JSON_DEPTH:
        raise too_deep
    if not isinstance(document, dict):
        raise HttpError(400, "the request body must be a JSON object")
    return document
