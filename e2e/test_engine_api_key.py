"""The engine's API key on the real control plane: it comes only from a Secret
(spec.engine.apiKeySecret), the apiserver refuses it in engine arguments and as a literal
environment value, the gateway sends it to the engine (a stand-in that enforces it as vLLM
does), and its value appears nowhere the operator or the gateway writes: not in the custom
resource or its status, not in events, not in any child, not in a log or an audit line.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from kubernetes import client

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from e2e.gateway_rig import (
    GATEWAY_ACCOUNT,
    GATEWAY_NAMESPACE,
    StandInProcess,
    ensure_account,
    token,
)
from e2e.kube import wait_for
from e2e.operator_process import OperatorProcess
from e2e.test_controller import small_model
from e2e.test_gateway import (  # noqa: F401  (fixtures)
    GatewayFactory,
    account,
    call,
    chat,
    gateway_kubeconfig,
    query_rbac,
    served_name,
    start_engine,
    start_gateway,
    wait_ready,
)


def secret_value() -> str:
    """A key no other test and no rendered default could contain by chance."""
    return f"sk-e2e-{uuid.uuid4().hex}"


def create_secret(kube: client.ApiClient, namespace: str, name: str, value: str) -> None:
    """Secret `name` with `api-key: value`."""
    client.CoreV1Api(kube).create_namespaced_secret(namespace, {
        "metadata": {"name": name},
        "data": {"api-key": base64.b64encode(value.encode()).decode()}})


def deploy_with_key(api: client.CustomObjectsApi, namespace: str, name: str, served: str,
                    port: int, secret: str, subject: str) -> None:
    """A small DeepSeekDeployment whose engine wants the key in Secret `secret`; waits
    for its replica."""
    body = small_model(name, model={"servedName": served}, service={"port": port},
                       engine={"apiKeySecret": {"name": secret}},
                       access={"bindings": [{"role": "user", "subjects": [
                           {"kind": "ServiceAccount", "name": subject}]}]})
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    wait_ready(api, namespace, name, 1)


def test_the_gateway_sends_the_key_and_fails_closed_without_its_secret(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        start_engine: Callable[..., StandInProcess],  # noqa: F811  (the fixture)
        start_gateway: GatewayFactory) -> None:  # noqa: F811
    key = secret_value()
    served, orphan = served_name(), served_name()
    stale = served_name()
    keyed = start_engine_with_key(start_engine, served, key)
    unkeyed = start_engine_with_key(start_engine, orphan, key)
    rotated = start_engine_with_key(start_engine, stale, key)
    create_secret(kube, namespace, "engine-key", key)
    new_key = secret_value()
    create_secret(kube, namespace, "new-key", new_key)
    ensure_account(kube, namespace, "alice")
    deploy_with_key(dsd_api, namespace, "keyed", served, keyed.port, "engine-key", "alice")
    deploy_with_key(dsd_api, namespace, "orphan", orphan, unkeyed.port, "no-such-secret",
                    "alice")
    deploy_with_key(dsd_api, namespace, "rotated", stale, rotated.port, "new-key", "alice")
    for name in ("keyed", "orphan", "rotated"):
        query_rbac(kube, namespace, name, [account(namespace, "alice")])
    bearer = token(kube, namespace, "alice")
    gateway = start_gateway()

    # The stand-in refuses the caller's own token, as vLLM would: the key is what opens it.
    direct = requests.post(f"{keyed.url}/v1/chat/completions", json=chat(served),
                           headers={"Authorization": f"Bearer {bearer}"}, timeout=10)
    assert direct.status_code == 401
    answered = call(gateway, bearer, chat(served))
    assert answered.status_code == 200, answered.text
    with call(gateway, bearer, chat(served, stream=True), stream=True) as streamed:
        assert streamed.status_code == 200
        assert b"[DONE]" in streamed.content

    # The gateway may get the Secrets deployments name, and no other (the operator's Role
    # <name>.engine-api-key, limited by resourceNames).
    assert gateway_may_get(kube, namespace, "engine-key")
    assert gateway_may_get(kube, namespace, "new-key")
    assert not gateway_may_get(kube, namespace, "unrelated")

    # No Secret: 503 naming it, audited, and nothing reaches the engine.
    refused = call(gateway, bearer, chat(orphan))
    assert refused.status_code == 503, refused.text
    message = refused.json()["error"]["message"]
    assert f"Secret {namespace}/no-such-secret" in message and "not forwarded" in message
    assert unkeyed.finished("stop") == 0
    line = next(a for a in gateway.audit() if a.get("deployment") == "orphan")
    assert line["status"] == 503 and "no-such-secret" in line["error"]

    # The engine refuses the key (rotated in the Secret, not yet in the engine): 502 naming
    # the Secret, not the engine's 401, which would blame the caller's token.
    mismatch = call(gateway, bearer, chat(stale))
    assert mismatch.status_code == 502, mismatch.text
    assert f"Secret {namespace}/new-key" in mismatch.json()["error"]["message"]

    everything = gateway.audit_stdout.read_text() + gateway.log_path.read_text()
    for value in (key, new_key):
        assert value not in everything
        assert base64.b64encode(value.encode()).decode() not in everything


def gateway_may_get(kube: client.ApiClient, namespace: str, secret: str) -> bool:
    """A SubjectAccessReview: may the e2e gateway's ServiceAccount get Secret `secret`?"""
    review = client.AuthorizationV1Api(kube).create_subject_access_review({
        "spec": {"user": f"system:serviceaccount:{GATEWAY_NAMESPACE}:{GATEWAY_ACCOUNT}",
                 "groups": ["system:serviceaccounts", "system:authenticated"],
                 "resourceAttributes": {"namespace": namespace, "verb": "get",
                                        "resource": "secrets", "name": secret}}})
    return bool(review.status.allowed)


def start_engine_with_key(start: Callable[..., StandInProcess], served: str,
                          key: str) -> StandInProcess:
    """A stand-in serving `served` that requires `key` (VLLM_API_KEY, as vLLM reads it)."""
    engine: StandInProcess = start(served, api_key=key)
    return engine


def children(kube: client.ApiClient, namespace: str) -> list[Any]:
    """Every object of the kinds the operator renders, and the pods, in `namespace`."""
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    batch, rbac = client.BatchV1Api(kube), client.RbacAuthorizationV1Api(kube)
    net = client.NetworkingV1Api(kube)
    listed: list[Any] = [
        core.list_namespaced_config_map(namespace), core.list_namespaced_service(namespace),
        core.list_namespaced_pod(namespace),
        core.list_namespaced_persistent_volume_claim(namespace),
        core.list_namespaced_service_account(namespace),
        apps.list_namespaced_deployment(namespace), batch.list_namespaced_job(namespace),
        rbac.list_namespaced_role(namespace), rbac.list_namespaced_role_binding(namespace),
        net.list_namespaced_network_policy(namespace)]
    return [plain(kube, item) for result in listed for item in result.items]


def plain(kube: client.ApiClient, obj: Any) -> Any:
    """A client model object as the JSON-ready dict the API sent."""
    return kube.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]


def test_no_secret_value_in_the_resource_events_children_or_the_operator_log(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        operator: OperatorProcess) -> None:
    key, refused_key = secret_value(), secret_value()
    create_secret(kube, namespace, "engine-key", key)
    for engine_type, name in (("vllm", "v"), ("sglang", "s")):
        body = small_model(name, engine={"type": engine_type,
                                         "apiKeySecret": {"name": "engine-key"}})
        dsd_api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    for name in ("v", "s"):
        wait_ready(dsd_api, namespace, name, 1)

    # A key in the arguments, or as a literal value of a secret variable, never gets in.
    for engine in ({"args": ["--api-key", refused_key]},
                   {"args": [f"--api_key={refused_key}"]},
                   {"env": [{"name": "HF_TOKEN", "value": refused_key}]}):
        with pytest.raises(client.ApiException) as error:
            dsd_api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, small_model("refused", engine=engine))
        assert error.value.status == 422
        assert "secretKeyRef" in str(error.value.body)
        assert refused_key not in str(error.value.body)

    apps = client.AppsV1Api(kube)
    vllm_env = apps.read_namespaced_deployment("v", namespace).spec.template.spec.containers[0].env
    assert any(var.name == "VLLM_API_KEY" and var.value_from.secret_key_ref.name == "engine-key"
               for var in vllm_env)
    sglang = apps.read_namespaced_deployment("s", namespace).spec.template.spec.containers[0]
    assert sglang.args[sglang.args.index("--api-key") + 1] == "$(DEEPSEEK_ENGINE_API_KEY)"

    resources = [dsd_api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, n)
                 for n in ("v", "s")]
    events = plain(kube, client.CoreV1Api(kube).list_namespaced_event(namespace))
    text = "\n".join([json.dumps(resources), json.dumps(events),
                      json.dumps(children(kube, namespace)),
                      operator.log_path.read_text(errors="replace")])
    assert "engine-key" in text  # the reference is there; the value is not
    for value in (key, refused_key):
        assert value not in text
        assert base64.b64encode(value.encode()).decode() not in text

    # The gateway's Role for the key follows the spec: there while it names the Secret,
    # deleted with the other children the spec no longer asks for.
    rbac = client.RbacAuthorizationV1Api(kube)
    rule = rbac.read_namespaced_role("v.engine-api-key", namespace).rules[0]
    assert (rule.resources, rule.resource_names, rule.verbs) == (
        ["secrets"], ["engine-key"], ["get"])
    dsd_api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "v", {
        "spec": {"engine": {"apiKeySecret": None}}})
    wait_for("Role v.engine-api-key deleted", lambda: "v.engine-api-key" not in {
        r.metadata.name for r in rbac.list_namespaced_role(namespace).items}, 60)
