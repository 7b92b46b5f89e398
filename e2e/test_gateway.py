"""The gateway on the real control plane: real ServiceAccount tokens (TokenRequest), real
TokenReview and SubjectAccessReview against RBAC, the operator reconciling the
DeepSeekDeployments (kwok pods, so status.readyReplicas is the operator's), and the OpenAI
stand-in of e2e/rig as the engine behind the gateway.

Each test creates the Role and RoleBinding for model:query itself (verb create on
deepseekdeployments/query of the deployment), as the operator renders them from
spec.access once its renderer grants that rule; spec.access still names the binding, so
the audit line can name the role.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kubernetes import client

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from e2e.cluster import controlplane, paths
from e2e.gateway_rig import (
    DIGEST_KEY,
    GatewayProcess,
    StandInProcess,
    TcpRelay,
    allow,
    ensure_account,
    gateway_identity,
    token,
)
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess
from e2e.test_controller import small_model

CHAT = "/v1/chat/completions"
ISSUER = "https://kubernetes.default.svc.cluster.local"

GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture(scope="module")
def gateway_kubeconfig(kube: client.ApiClient, tmp_path_factory: pytest.TempPathFactory,
                       ) -> Path:
    """A kubeconfig for the gateway's own ServiceAccount, straight to the apiserver."""
    return gateway_identity(kube, kube.configuration.host, kube.configuration.ssl_ca_cert,
                            tmp_path_factory.mktemp("gateway-identity"))


@pytest.fixture
def start_gateway(gateway_kubeconfig: Path, tmp_path: Path,
                  operator: OperatorProcess) -> Iterator[GatewayFactory]:
    """Start gateways (flags as arguments); all are stopped at teardown and must have
    exited."""
    started: list[GatewayProcess] = []

    def start(*args: str, kubeconfig: Path | None = None) -> GatewayProcess:
        gateway = GatewayProcess(kubeconfig or gateway_kubeconfig,
                                 tmp_path / f"gateway-{len(started)}", list(args))
        started.append(gateway)
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()
        assert gateway.proc is not None and gateway.proc.poll() is not None


@pytest.fixture
def start_engine(tmp_path: Path) -> Iterator[Callable[..., StandInProcess]]:
    """Start stand-ins serving a model name (extra model_server flags as arguments; an
    `api_key` it then requires, as vLLM does)."""
    started: list[StandInProcess] = []

    def start(model: str, *args: str, api_key: str | None = None) -> StandInProcess:
        engine = StandInProcess(model, tmp_path / f"engine-{len(started)}.log", list(args),
                                api_key=api_key)
        started.append(engine)
        return engine.start()

    yield start
    for engine in started:
        engine.stop()


def served_name() -> str:
    """A served model name no other test uses (the gateway sees every namespace)."""
    return f"r1-gw-{uuid.uuid4().hex[:8]}"


def deploy(api: client.CustomObjectsApi, namespace: str, name: str, served: str, port: int,
           *, replicas: int = 1, concurrency: int = 4,
           bindings: list[dict[str, Any]] | None = None) -> None:
    """A small DeepSeekDeployment serving `served` on `port` (its stand-in's), reconciled
    by the operator; waits for `replicas` ready replicas."""
    body = small_model(name, model={"servedName": served}, service={"port": port},
                       replicas=replicas, gpu={"maxConcurrentSequences": concurrency},
                       access={"bindings": bindings or []})
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    wait_ready(api, namespace, name, replicas)


def wait_ready(api: client.CustomObjectsApi, namespace: str, name: str, replicas: int,
               timeout: float = 120) -> None:
    """Wait until status.readyReplicas (the operator's) is `replicas`."""
    def ready() -> bool:
        obj: Any = api.get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                               PLURAL, name)
        status = obj.get("status") or {}
        return bool(status.get("readyReplicas", 0) == replicas
                    and status.get("replicas", 0) == replicas
                    and status.get("observedGeneration") == obj["metadata"]["generation"])
    wait_for(f"{namespace}/{name} readyReplicas={replicas}", ready, timeout)


def query_rbac(kube: client.ApiClient, namespace: str, deployment: str,
               subjects: list[dict[str, str]]) -> None:
    """model:query for `subjects`, who spec.access binds to role `user`: the Role the
    operator rendered for it when that grants what the gateway asks (create on
    deepseekdeployments/query), else an explicit Role and RoleBinding with that rule (an
    operator whose renderer predates the gateway grants only services/proxy)."""
    try:
        rendered = client.RbacAuthorizationV1Api(kube).read_namespaced_role(
            f"{deployment}-user", namespace)
    except client.ApiException as error:
        if error.status != 404:
            raise
    else:
        if any(f"{PLURAL}/query" in (rule.resources or []) and "create" in (rule.verbs or [])
               for rule in rendered.rules or []):
            return
    allow(kube, namespace, deployment, f"{deployment}-query-e2e", subjects)


def account(namespace: str, name: str) -> dict[str, str]:
    """A ServiceAccount RBAC subject."""
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def chat(served: str, text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    """A chat completion request body."""
    return {"model": served, "messages": [{"role": "user", "content": text}], **extra}


def call(gateway: GatewayProcess, bearer: str | None, body: Any, path: str = CHAT,
         **kwargs: Any) -> requests.Response:
    """POST `body` (a dict as JSON, or bytes as they are) through the gateway."""
    headers = {"Content-Type": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(gateway.url + path, data=data, headers=headers, timeout=60, **kwargs)


def events(response: requests.Response) -> list[Any]:
    """The data of each server-sent event of a streamed response (`[DONE]` as a string)."""
    out: list[Any] = []
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            data = line[6:]
            out.append(data.decode() if data == b"[DONE]" else json.loads(data))
    return out


@pytest.fixture
def alice(kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
          start_engine: Callable[..., StandInProcess]) -> dict[str, Any]:
    """Deployment `m` (a fresh served name, a stand-in behind it) and ServiceAccount alice
    bound to its `user` role (model:query) by spec.access (`query_rbac`)."""
    served = served_name()
    engine = start_engine(served)
    ensure_account(kube, namespace, "alice")
    deploy(dsd_api, namespace, "m", served, engine.port, bindings=[
        {"role": "user", "subjects": [{"kind": "ServiceAccount", "name": "alice"}]}])
    query_rbac(kube, namespace, "m", [account(namespace, "alice")])
    return {"served": served, "engine": engine, "token": token(kube, namespace, "alice")}


def test_an_allowed_call_is_answered_counted_and_audited(
        alice: dict[str, Any], start_gateway: GatewayFactory, namespace: str) -> None:
    gateway = start_gateway()
    body = json.dumps(chat(alice["served"], "tell me a secret prompt")).encode()
    response = call(gateway, alice["token"], body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["choices"][0]["message"]["content"].startswith("Hello from")
    assert answer["usage"]["prompt_tokens"] == 5

    models = requests.get(gateway.url + "/v1/models", timeout=10,
                          headers={"Authorization": f"Bearer {alice['token']}"}).json()
    assert [m["id"] for m in models["data"]] == [alice["served"]]

    labels = {"namespace": namespace, "deployment": "m"}
    assert gateway.metric("deepseek_gateway_requests_total", labels) == 1
    assert gateway.metric("deepseek_gateway_responses_total", {**labels, "code": "200"}) == 1
    assert gateway.metric("deepseek_gateway_request_duration_seconds_count", labels) == 1

    line = next(a for a in gateway.audit() if a["path"] == CHAT)
    assert line["user"]["name"] == f"system:serviceaccount:{namespace}:alice"
    assert line["user"]["uid"]
    assert f"system:serviceaccounts:{namespace}" in line["user"]["groups"]
    assert (line["namespace"], line["deployment"], line["model"]) == (namespace, "m",
                                                                       alice["served"])
    assert (line["permission"], line["role"], line["allowed"]) == ("model:query", "user", True)
    # Keyed: the plain SHA-256 of the body (which anyone could recompute from a guess)
    # is not in the line; the HMAC under the gateway's key is.
    assert line["request_hmac"] == hmac.new(DIGEST_KEY, body, hashlib.sha256).hexdigest()
    assert hashlib.sha256(body).hexdigest() not in json.dumps(line)
    assert (line["prompt_tokens"], line["completion_tokens"]) == (
        answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"])
    assert line["status"] == 200 and line["client"] == "127.0.0.1"
    assert line["time"].endswith("Z") and line["latency_seconds"] > 0
    assert line["ttfb_seconds"] is not None
    # Data protection ran (mode audit, the default) and found nothing.
    assert line["sensitivity"] == {"prompt": 0.0, "completion": 0.0}
    assert line["detectors"] == {"prompt": {}, "completion": {}}
    assert line["data_protection"] == "audit"
    everything = gateway.audit_stdout.read_text() + gateway.log_path.read_text()
    assert alice["token"] not in everything
    assert "secret prompt" not in everything


def test_a_stream_is_passed_through_and_its_usage_audited(
        alice: dict[str, Any], start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()
    with call(gateway, alice["token"], chat(alice["served"], stream=True),
              stream=True) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        got = events(response)
    assert got[-1] == "[DONE]"
    chunks = got[:-1]
    assert all(chunk["choices"] for chunk in chunks), "the usage chunk was not asked for"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.startswith("Hello from")
    line = gateway.audit()[-1]
    assert line["stream"] is True and line["status"] == 200
    assert line["completion_tokens"] == len(text.split())
    assert line["prompt_tokens"] == 2

    with call(gateway, alice["token"], chat(alice["served"], stream=True,
                                            stream_options={"include_usage": True}),
              stream=True) as response:
        asked = events(response)
    assert asked[-2]["choices"] == [] and asked[-2]["usage"]["completion_tokens"] == len(
        text.split()), "a client that asks for usage gets it"


def test_completions_streamed_and_not(alice: dict[str, Any],
                                      start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()
    body = {"model": alice["served"], "prompt": "Once upon a time"}
    plain = call(gateway, alice["token"], body, "/v1/completions")
    assert plain.status_code == 200, plain.text
    assert plain.json()["choices"][0]["text"].startswith("Hello from")
    with call(gateway, alice["token"], {**body, "stream": True}, "/v1/completions",
              stream=True) as response:
        got = events(response)
    assert got[-1] == "[DONE]"
    text = "".join(chunk["choices"][0]["text"] for chunk in got[:-1])
    assert text == plain.json()["choices"][0]["text"]
    lines = [a for a in gateway.audit() if a["path"] == "/v1/completions"]
    assert [(a["status"], a["stream"], a["prompt_tokens"]) for a in lines] == [
        (200, False, 4), (200, True, 4)]
    assert lines[1]["completion_tokens"] == len(text.split())


def test_read_only_user_gets_403_and_others_404_like_an_unknown_model(
        kube: client.ApiClient, alice: dict[str, Any], start_gateway: GatewayFactory,
        namespace: str) -> None:
    ensure_account(kube, namespace, "bob")
    allow(kube, namespace, "m", "m-read", [account(namespace, "bob")], query=False, read=True)
    ensure_account(kube, namespace, "eve")
    gateway = start_gateway()

    bob = call(gateway, token(kube, namespace, "bob"), chat(alice["served"]))
    assert bob.status_code == 403
    assert "model:query" in bob.json()["error"]["message"]
    eve = call(gateway, token(kube, namespace, "eve"), chat(alice["served"]))
    unknown = call(gateway, token(kube, namespace, "eve"), chat("no-such-model"))
    assert eve.status_code == unknown.status_code == 404
    assert eve.json()["error"]["message"].replace(alice["served"], "X") == unknown.json()[
        "error"]["message"].replace("no-such-model", "X"), "a 404 must not reveal the model"
    models = requests.get(gateway.url + "/v1/models", timeout=10, headers={
        "Authorization": f"Bearer {token(kube, namespace, 'bob')}"}).json()
    assert models["data"] == []
    denied = [a for a in gateway.audit() if a["path"] == CHAT]
    assert [(a["status"], a["allowed"]) for a in denied] == [(403, False), (404, False),
                                                            (404, False)]
    assert denied[1]["deployment"] is None, "the audit of a 404 does not name the deployment"
    assert gateway.metric("deepseek_gateway_requests_total",
                          {"namespace": namespace, "deployment": "m"}) == 0


def test_group_binding_and_a_service_account_of_another_namespace(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        start_engine: Callable[..., StandInProcess], start_gateway: GatewayFactory) -> None:
    other = f"{namespace}-clients"
    ensure_account(kube, other, "batch")
    ensure_account(kube, other, "ci")
    try:
        served = served_name()
        engine = start_engine(served)
        group = f"system:serviceaccounts:{other}"
        # batch is in the group only; ci by name too (a ServiceAccount of another
        # namespace), and by a role that cannot query, which must not be the one audited.
        deploy(dsd_api, namespace, "m", served, engine.port, bindings=[
            {"role": "admin", "subjects": [{"kind": "ServiceAccount", "name": "ci",
                                            "namespace": other}]},
            {"role": "user", "subjects": [{"kind": "Group", "name": group},
                                          {"kind": "ServiceAccount", "name": "ci",
                                           "namespace": other}]}])
        query_rbac(kube, namespace, "m", [
            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group},
            account(other, "ci")])
        gateway = start_gateway()
        by_group = call(gateway, token(kube, other, "batch"), chat(served))
        assert by_group.status_code == 200, by_group.text
        by_account = call(gateway, token(kube, other, "ci"), chat(served))
        assert by_account.status_code == 200, by_account.text
        lines = [a for a in gateway.audit() if a["path"] == CHAT]
        assert lines[0]["user"]["name"] == f"system:serviceaccount:{other}:batch"
        assert lines[0]["role"] == "user", "the group binding of role user grants it"
        assert lines[1]["role"] == "user", "admin comes first but has no model:query"
    finally:
        client.CoreV1Api(kube).delete_namespace(other)


def _jwt(claims: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    """An RS256 JWT of `claims`, as the apiserver signs ServiceAccount tokens."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signing_input = (b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "."
                     + b64(json.dumps(claims).encode()))
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64(signature)


def test_expired_and_wrong_audience_tokens_get_401(
        kube: client.ApiClient, alice: dict[str, Any], start_gateway: GatewayFactory,
        namespace: str) -> None:
    gateway = start_gateway()
    wrong_audience = token(kube, namespace, "alice", audiences=["https://vault.example"])
    response = call(gateway, wrong_audience, chat(alice["served"]))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")

    # The same claims the TokenRequest API signs, signed with the cluster's own key: valid
    # while exp is ahead (which shows the claims are right), refused once it has passed.
    key = serialization.load_pem_private_key(
        (paths.state_dir() / "pki" / "sa.key").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    uid = client.CoreV1Api(kube).read_namespaced_service_account("alice", namespace).metadata.uid
    now = int(time.time())

    def minted(exp: int) -> str:
        return _jwt({"iss": ISSUER, "aud": [ISSUER], "sub":
                     f"system:serviceaccount:{namespace}:alice", "iat": now - 7200,
                     "nbf": now - 7200, "exp": exp, "kubernetes.io": {
                         "namespace": namespace,
                         "serviceaccount": {"name": "alice", "uid": uid}}}, key)

    assert call(gateway, minted(now + 600), chat(alice["served"])).status_code == 200
    expired = call(gateway, minted(now - 600), chat(alice["served"]))
    assert expired.status_code == 401
    assert call(gateway, None, chat(alice["served"])).status_code == 401
    assert call(gateway, "not-a-token", chat(alice["served"])).status_code == 401
    assert [a["status"] for a in gateway.audit()] == [401, 200, 401, 401, 401]


def test_a_gateway_given_its_own_audience_takes_only_tokens_for_it(
        kube: client.ApiClient, alice: dict[str, Any], start_gateway: GatewayFactory,
        namespace: str) -> None:
    gateway = start_gateway("--audiences", "https://gateway.example")
    own = token(kube, namespace, "alice", audiences=["https://gateway.example"])
    assert call(gateway, own, chat(alice["served"])).status_code == 200
    assert call(gateway, alice["token"], chat(alice["served"])).status_code == 401, (
        "a token for the apiserver is not one for this gateway")


def test_apiserver_unreachable_is_503_and_nothing_is_forwarded(
        kube: client.ApiClient, alice: dict[str, Any], start_gateway: GatewayFactory,
        gateway_kubeconfig: Path, tmp_path: Path) -> None:
    host, port = kube.configuration.host.removeprefix("https://").rsplit(":", 1)
    relay = TcpRelay((host, int(port)))
    config = gateway_kubeconfig.read_text().replace(kube.configuration.host,
                                                    f"https://{host}:{relay.port}")
    relayed = tmp_path / "relayed.kubeconfig"
    relayed.write_text(config)
    gateway = start_gateway("--auth-cache-seconds", "0", kubeconfig=relayed)
    assert call(gateway, alice["token"], chat(alice["served"])).status_code == 200
    served_before = alice["engine"].finished("stop")

    relay.cut()
    response = call(gateway, alice["token"], chat(alice["served"]))
    assert response.status_code == 503, response.text
    assert "TokenReview" in response.json()["error"]["message"]
    assert response.headers["Retry-After"]
    assert alice["engine"].finished("stop") == served_before, "nothing was forwarded"
    assert gateway.audit()[-1]["status"] == 503
    assert gateway.metric("deepseek_gateway_auth_unavailable_total",
                          {"review": "TokenReview"}) == 1


def test_bad_input_is_refused(alice: dict[str, Any], start_gateway: GatewayFactory) -> None:
    gateway = start_gateway("--max-body-bytes", "4096", "--body-timeout-seconds", "2")
    bearer = alice["token"]
    malformed = call(gateway, bearer, b'{"model": "x", "messages": [')
    assert malformed.status_code == 400
    assert "not JSON" in malformed.json()["error"]["message"]
    assert call(gateway, bearer, b"[1, 2]").status_code == 400
    assert call(gateway, bearer, {"messages": []}).status_code == 400, "no model"
    nested = call(gateway, bearer, b'{"model": "x", "messages": ' + b"[" * 1500
                  + b"]" * 1500 + b"}")
    assert nested.status_code == 400
    assert "too deeply" in nested.json()["error"]["message"]
    assert "Traceback" not in gateway.log_tail()
    huge = chat(alice["served"], "word " * 2000)
    assert call(gateway, bearer, huge).status_code == 413

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        yield json.dumps(huge).encode()
    response = requests.post(gateway.url + CHAT, data=chunked(), timeout=30, headers={
        "Authorization": f"Bearer {bearer}", "Content-Type": "application/json"})
    assert response.status_code == 413

    # A client that announces a body and sends it too slowly (slowloris).
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    conn.putrequest("POST", CHAT)
    conn.putheader("Authorization", f"Bearer {bearer}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "1000")
    conn.endheaders(b'{"model": ')
    slow = conn.getresponse()
    assert slow.status == 408
    conn.close()
    assert [a["status"] for a in gateway.audit()] == [400, 400, 400, 400, 413, 413, 408]
    assert alice["engine"].finished("stop") == 0


def test_openai_shapes_beyond_plain_text_are_answered(
        alice: dict[str, Any], start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()
    bearer = alice["token"]
    tool_turn = {"model": alice["served"], "messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]}]}
    answer = call(gateway, bearer, tool_turn)
    assert answer.status_code == 200, answer.text
    token_prompts: list[tuple[Any, int]] = [([1, 2, 3], 3), ([[1, 2, 3], [4, 5]], 5)]
    for prompt, tokens in token_prompts:
        answer = call(gateway, bearer, {"model": alice["served"], "prompt": prompt},
                      "/v1/completions")
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["prompt_tokens"] == tokens
    no_content = call(gateway, bearer, chat(alice["served"]) | {"messages": [
        {"role": "user", "content": None}]})
    assert no_content.status_code == 400, "content may be null only beside tool_calls"


def test_a_refused_spec_change_keeps_the_gateway_routing_to_what_serves(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        alice: dict[str, Any], start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()
    bearer = alice["token"]
    assert call(gateway, bearer, chat(alice["served"])).status_code == 200
    renamed = served_name()
    dsd_api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "m", {
        "spec": {"model": {"name": "deepseek-r1", "servedName": renamed},
                 "gpu": {"count": 1}}})

    def stalled() -> bool:
        obj: Any = dsd_api.get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                        PLURAL, "m")
        status = obj.get("status") or {}
        return bool(status.get("observedGeneration") == obj["metadata"]["generation"]
                    and any(c.get("type") == "Stalled" and c.get("status") == "True"
                            for c in status.get("conditions") or []))
    wait_for("the operator to refuse the change (Stalled)", stalled, 60)
    answer = call(gateway, bearer, chat(alice["served"]))
    assert answer.status_code == 200, "the old engine still serves under its name"
    assert call(gateway, bearer, chat(renamed)).status_code == 404
    assert alice["engine"].finished("stop") >= 2


def test_metrics_on_their_own_listener_leave_the_api_port(
        alice: dict[str, Any], start_gateway: GatewayFactory, namespace: str) -> None:
    gateway = start_gateway("--metrics-listen-address", "127.0.0.1:0")
    assert gateway.metrics_port not in (0, gateway.port)
    assert requests.get(f"{gateway.url}/metrics", timeout=5).status_code == 404
    assert call(gateway, alice["token"], chat(alice["served"])).status_code == 200
    assert gateway.metric("deepseek_gateway_requests_total",
                          {"namespace": namespace, "deployment": "m"}) == 1
    assert requests.get(f"http://127.0.0.1:{gateway.metrics_port}/v1/models",
                        timeout=5).status_code == 404, "no API on the metrics listener"


def test_engine_dying_mid_stream_ends_the_stream_with_an_error_event(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        start_engine: Callable[..., StandInProcess], start_gateway: GatewayFactory) -> None:
    served = served_name()
    engine = start_engine(served, "--token-interval-seconds", "0.3")
    ensure_account(kube, namespace, "alice")
    allow(kube, namespace, "m", "m-query", [account(namespace, "alice")])
    deploy(dsd_api, namespace, "m", served, engine.port)
    gateway = start_gateway()
    with call(gateway, token(kube, namespace, "alice"), chat(served, stream=True),
              stream=True) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith(b"data: "))
        assert json.loads(first[6:])["choices"][0]["delta"]["content"] == "Hello"
        engine.stop(9)  # SIGKILL: the engine dies with the response half sent
        rest = [line[6:] for line in lines if line.startswith(b"data: ")]
    error = json.loads(rest[-2])["error"]
    assert error["code"] == 502 and "closed the stream" in error["message"]
    assert rest[-1] == b"[DONE]"
    line = gateway.audit()[-1]
    assert line["status"] == 502 and "broke off" in line["error"]
    assert gateway.metric("deepseek_gateway_responses_total",
                          {"namespace": namespace, "deployment": "m", "code": "502"}) == 1


def test_a_client_leaving_mid_stream_cancels_the_engine_request(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        start_engine: Callable[..., StandInProcess], start_gateway: GatewayFactory) -> None:
    served = served_name()
    engine = start_engine(served, "--token-interval-seconds", "0.2")
    ensure_account(kube, namespace, "alice")
    allow(kube, namespace, "m", "m-query", [account(namespace, "alice")])
    deploy(dsd_api, namespace, "m", served, engine.port)
    gateway = start_gateway()
    response = call(gateway, token(kube, namespace, "alice"),
                    chat(served, stream=True, max_tokens=200), stream=True)
    lines = response.iter_lines()
    next(line for line in lines if line.startswith(b"data: "))
    response.close()  # the client goes away after the first token
    wait_for("the engine to count an aborted request", lambda: engine.finished("abort") == 1,
             30)
    assert engine.finished("length") == 0, "the engine did not finish the 200 tokens"
    line = wait_for("the audit line", lambda: next(
        (a for a in gateway.audit() if a["path"] == CHAT), None), 10)
    assert line["status"] == 499
    labels = {"namespace": namespace, "deployment": "m"}
    assert gateway.metric("deepseek_gateway_inflight_requests", labels) == 0


def test_each_request_reaches_the_engine_on_a_connection_of_its_own(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        start_engine: Callable[..., StandInProcess], start_gateway: GatewayFactory) -> None:
    """No connection to an engine is reused: a pod that left the Service's endpoints to
    drain gets no new request over an old connection (its preStop waits for in-flight
    streams only)."""
    served = served_name()
    engine = start_engine(served)
    relay = TcpRelay(("127.0.0.1", engine.port))
    ensure_account(kube, namespace, "alice")
    allow(kube, namespace, "m", "m-query", [account(namespace, "alice")])
    deploy(dsd_api, namespace, "m", served, relay.port)
    gateway = start_gateway()
    bearer = token(kube, namespace, "alice")
    for _ in range(3):
        assert call(gateway, bearer, chat(served)).status_code == 200
    streamed = call(gateway, bearer, chat(served, stream=True))
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    assert engine.finished("stop") == 4
    assert relay.accepted == 4
    relay.cut()


def test_a_held_request_is_forwarded_when_the_deployment_scales_from_zero(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        start_engine: Callable[..., StandInProcess], start_gateway: GatewayFactory) -> None:
    served = served_name()
    engine = start_engine(served)
    ensure_account(kube, namespace, "alice")
    allow(kube, namespace, "m", "m-query", [account(namespace, "alice")])
    deploy(dsd_api, namespace, "m", served, engine.port, replicas=0)
    gateway = start_gateway()
    bearer = token(kube, namespace, "alice")
    result: dict[str, requests.Response] = {}
    held = threading.Thread(target=lambda: result.update(
        response=call(gateway, bearer, chat(served))))
    held.start()
    labels = {"namespace": namespace, "deployment": "m"}
    wait_for("the request to be queued", lambda: gateway.metric(
        "deepseek_gateway_queued_requests", labels) == 1, 30)
    assert gateway.metric("deepseek_gateway_requests_total", labels) == 1, (
        "the arrival is counted while no replica is up (the autoscaler's signal)")
    assert held.is_alive() and engine.finished("stop") == 0

    # What the autoscaler does on that signal: one replica; the operator brings it up.
    dsd_api.patch_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "m",
                                                 {"spec": {"replicas": 1}})
    held.join(150)
    assert not held.is_alive()
    assert result["response"].status_code == 200, result["response"].text
    assert engine.finished("stop") == 1
    assert gateway.metric("deepseek_gateway_queued_requests", labels) == 0
    line = gateway.audit()[-1]
    assert line["status"] == 200 and line["ttfb_seconds"] > 0


def test_the_queue_is_bounded_and_a_replica_takes_max_concurrent_sequences(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        start_engine: Callable[..., StandInProcess], start_gateway: GatewayFactory) -> None:
    served = served_name()
    engine = start_engine(served, "--latency-seconds", "3")
    ensure_account(kube, namespace, "alice")
    allow(kube, namespace, "m", "m-query", [account(namespace, "alice")])
    deploy(dsd_api, namespace, "m", served, engine.port, concurrency=1)
    # The queue bound is the deployment's policy (an operator that renders the policy
    # ConfigMap creates it with its own defaults, which win over the gateway's flags).
    set_policy(kube, namespace, "m", "maxQueuedRequests: 1\nqueueTimeoutSeconds: 600\n")
    gateway = start_gateway()
    bearer = token(kube, namespace, "alice")
    labels = {"namespace": namespace, "deployment": "m"}
    wait_for("the policy to apply", lambda: gateway.metric(
        "deepseek_gateway_queue_limit_requests", labels) == 1, 30)
    assert gateway.metric("deepseek_gateway_capacity_requests", labels) == 1, (
        "one replica x maxConcurrentSequences 1")
    results: list[requests.Response] = []

    def slow_call() -> None:
        results.append(call(gateway, bearer, chat(served)))

    first = threading.Thread(target=slow_call)
    first.start()
    wait_for("one request at the engine", lambda: gateway.metric(
        "deepseek_gateway_inflight_requests", labels) == 1, 30)
    second = threading.Thread(target=slow_call)
    second.start()
    wait_for("the second to wait: the replica takes 1 at a time", lambda: gateway.metric(
        "deepseek_gateway_queued_requests", labels) == 1, 30)
    assert gateway.metric("deepseek_gateway_inflight_requests", labels) == 1
    third = call(gateway, bearer, chat(served))
    assert third.status_code == 503
    assert "waiting already" in third.json()["error"]["message"]
    assert int(third.headers["Retry-After"]) > 0
    first.join(60)
    second.join(60)
    assert sorted(r.status_code for r in results) == [200, 200]

    # Scaled to zero, a held request gets 503 + Retry-After when the wait ends.
    dsd_api.patch_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "m",
                                                 {"spec": {"replicas": 0}})
    wait_ready(dsd_api, namespace, "m", 0)
    wait_for("no capacity left", lambda: gateway.metric(
        "deepseek_gateway_capacity_requests", labels) == 0, 30)
    set_policy(kube, namespace, "m", "queueTimeoutSeconds: 2\n")
    wait_for("the shorter wait to apply", lambda: gateway.metric(
        "deepseek_gateway_queue_timeout_seconds", labels) == 2, 30)
    timed_out = call(gateway, bearer, chat(served))
    assert timed_out.status_code == 503
    assert "within 2 s" in timed_out.json()["error"]["message"]
    assert timed_out.headers["Retry-After"]


def set_policy(kube: client.ApiClient, namespace: str, deployment: str, text: str) -> None:
    """The deployment's gateway policy ConfigMap with `policy.yaml` = `text`: created with
    the labels the gateway selects on, or its data patched when the operator created it.
    (Without app.kubernetes.io/managed-by: an operator that does not render the ConfigMap
    would take one with its labels for a stray child and delete it.)"""
    core = client.CoreV1Api(kube)
    name = f"{deployment}-gateway-policy"
    try:
        core.create_namespaced_config_map(namespace, {
            "metadata": {"name": name, "labels": {
                "app.kubernetes.io/component": "gateway-policy",
                "deepseek-operator.io/deployment": deployment}},
            "data": {"policy.yaml": text}})
    except client.ApiException as error:
        if error.status != 409:
            raise
        core.patch_namespaced_config_map(name, namespace, {"data": {"policy.yaml": text}})


def test_the_gateway_policy_config_map_sets_queue_and_concurrency(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        start_engine: Callable[..., StandInProcess], start_gateway: GatewayFactory) -> None:
    served = served_name()
    engine = start_engine(served, "--latency-seconds", "10")
    ensure_account(kube, namespace, "alice")
    allow(kube, namespace, "m", "m-query", [account(namespace, "alice")])
    deploy(dsd_api, namespace, "m", served, engine.port, concurrency=4)
    set_policy(kube, namespace, "m", "queueTimeoutSeconds: 2\nmaxQueuedRequests: 1\n"
                                     "maxConcurrentPerReplica: 1\n")
    gateway = start_gateway()  # flags: 64 queued, 900 s; the ConfigMap says otherwise
    bearer = token(kube, namespace, "alice")
    labels = {"namespace": namespace, "deployment": "m"}
    results: dict[str, requests.Response] = {}

    def start_call(name: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.update(
            {name: call(gateway, bearer, chat(served))}))
        thread.start()
        return thread

    first = start_call("first")
    wait_for("one request at the engine", lambda: gateway.metric(
        "deepseek_gateway_inflight_requests", labels) == 1, 30)
    second = start_call("second")
    wait_for("the second to wait: one per replica, not spec's four", lambda: gateway.metric(
        "deepseek_gateway_queued_requests", labels) == 1, 30)
    third = call(gateway, bearer, chat(served))
    assert third.status_code == 503
    assert "1 requests waiting already" in third.json()["error"]["message"]
    second.join(60)
    assert results["second"].status_code == 503
    assert "within 2 s" in results["second"].json()["error"]["message"]
    first.join(60)
    assert results["first"].status_code == 200

    # An edit by a holder of system:configure applies without a restart.
    set_policy(kube, namespace, "m", "maxConcurrentPerReplica: 2\n")
    threads = [start_call("a"), start_call("b")]
    wait_for("two requests at the engine at once", lambda: gateway.metric(
        "deepseek_gateway_inflight_requests", labels) == 2, 30)
    for thread in threads:
        thread.join(60)
    assert results["a"].status_code == results["b"].status_code == 200


def test_two_queryable_deployments_serving_one_name_are_an_error_not_a_coin_toss(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        start_engine: Callable[..., StandInProcess], start_gateway: GatewayFactory) -> None:
    served = served_name()
    engine = start_engine(served)
    ensure_account(kube, namespace, "alice")
    for name in ("a", "b"):
        allow(kube, namespace, name, f"{name}-query", [account(namespace, "alice")])
        deploy(dsd_api, namespace, name, served, engine.port)
    gateway = start_gateway()
    response = call(gateway, token(kube, namespace, "alice"), chat(served))
    assert response.status_code == 409
    message = response.json()["error"]["message"]
    assert f"{namespace}/a" in message and f"{namespace}/b" in message
    assert "servedName" in message
    assert engine.finished("stop") == 0
    # A caller who may query only one of them is routed to it: a deployment it may not
    # query (another team's) neither blocks it nor is named to it.
    ensure_account(kube, namespace, "bob")
    allow(kube, namespace, "a", "a-query-bob", [account(namespace, "bob")])
    answered = wait_for("bob routed to a", lambda: (lambda r: r if r.status_code == 200
                                                    else None)(
        call(gateway, token(kube, namespace, "bob"), chat(served))), 30)
    assert f"{namespace}/b" not in answered.text


def test_an_audit_line_that_cannot_be_written_fails_the_request(
        alice: dict[str, Any], start_gateway: GatewayFactory) -> None:
    closed = start_gateway("--audit-file", "/dev/full")  # every write: ENOSPC
    response = call(closed, alice["token"], chat(alice["served"]))
    assert response.status_code == 503
    assert "audit" in response.json()["error"]["message"]
    opened = start_gateway("--audit-file", "/dev/full", "--audit-fail-open")
    assert call(opened, alice["token"], chat(alice["served"])).status_code == 200


def test_the_audit_file_rotates_and_survives_a_restart(
        alice: dict[str, Any], start_gateway: GatewayFactory, tmp_path: Path) -> None:
    audit = tmp_path / "audit" / "audit.jsonl"
    audit.parent.mkdir()
    flags = ("--audit-file", str(audit), "--audit-max-bytes", "2000", "--audit-backups", "2")
    first = start_gateway(*flags)
    for _ in range(3):
        assert call(first, alice["token"], chat(alice["served"])).status_code == 200
    first.stop()
    second = start_gateway(*flags)
    for _ in range(3):
        assert call(second, alice["token"], chat(alice["served"])).status_code == 200
    files = [audit, Path(f"{audit}.1"), Path(f"{audit}.2")]
    lines = [json.loads(line) for path in files if path.exists()
             for line in path.read_text().splitlines()]
    assert Path(f"{audit}.1").exists(), "rotated at 2000 bytes"
    assert not Path(f"{audit}.3").exists()
    assert all(path.stat().st_size <= 2000 for path in files if path.exists())
    assert len(lines) >= 4 and all(line["status"] == 200 for line in lines)


def test_the_deployment_watch_recovers_from_an_apiserver_crash(
        kube: client.ApiClient, alice: dict[str, Any], dsd_api: client.CustomObjectsApi,
        namespace: str, start_engine: Callable[..., StandInProcess],
        start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()
    assert call(gateway, alice["token"], chat(alice["served"])).status_code == 200
    controlplane.restart("kube-apiserver")

    # A deployment created after the crash is routed, one deleted after it is not.
    served = served_name()
    engine = start_engine(served)
    deploy(dsd_api, namespace, "m2", served, engine.port, bindings=[
        {"role": "user", "subjects": [{"kind": "ServiceAccount", "name": "alice"}]}])
    query_rbac(kube, namespace, "m2", [account(namespace, "alice")])

    def routed() -> requests.Response | None:
        response = call(gateway, alice["token"], chat(served))
        return response if response.status_code == 200 else None

    assert wait_for("the new deployment to be routed", routed, 60).json()["model"] == served
    assert "DeepSeekDeployment watch failed" in gateway.log_tail(50000), (
        "the crash did break the gateway's watch")
    dsd_api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "m")
    wait_for("the deleted deployment to be gone from the routes", lambda: call(
        gateway, alice["token"], chat(alice["served"])).status_code == 404, 60)
