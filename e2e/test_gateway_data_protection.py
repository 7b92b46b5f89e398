"""Data protection through the real gateway: the stand-in engine echoes the prompt back
(`--echo 3`: three characters a chunk, so every planted value is split across chunks),
the deployment's policy ConfigMap sets the mode, and the audit lines are read back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from e2e.gateway_rig import GatewayProcess, StandInProcess, ensure_account, token
from e2e.kube import wait_for
from e2e.test_gateway import (
    GatewayFactory,
    account,
    call,
    chat,
    deploy,
    query_rbac,
    served_name,
    set_policy,
)
from e2e.test_gateway import gateway_kubeconfig as gateway_kubeconfig
from e2e.test_gateway import start_engine as start_engine
from e2e.test_gateway import start_gateway as start_gateway

SSN, CARD, MAIL = "078-05-1120", "4111 1111 1111 1111", "jane.doe@example.com"
PLANTED = f"Please remember SSN {SSN}, card {CARD} and mail {MAIL} for me."
REDACTED = ("Please remember SSN [REDACTED:US_SSN], card [REDACTED:CREDIT_CARD] and mail "
            "[REDACTED:EMAIL_ADDRESS] for me.")
FOUND = {"us_ssn": 1, "credit_card": 1, "email": 1}
PHONE_ONLY = "Call me at +44 20 7946 0958 tomorrow."


@pytest.fixture
def echo(kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
         start_engine: Callable[..., StandInProcess]) -> dict[str, Any]:
    """Deployment `m` with an echoing stand-in, and alice allowed to query it."""
    served = served_name()
    engine = start_engine(served, "--echo", "3")
    ensure_account(kube, namespace, "alice")
    deploy(dsd_api, namespace, "m", served, engine.port, bindings=[
        {"role": "user", "subjects": [{"kind": "ServiceAccount", "name": "alice"}]}])
    query_rbac(kube, namespace, "m", [account(namespace, "alice")])
    return {"served": served, "token": token(kube, namespace, "alice")}


def streamed(gateway: GatewayProcess, bearer: str, body: dict[str, Any],
             path: str = "/v1/chat/completions") -> tuple[str, bytes]:
    """The text a client reassembles from a stream, and the raw bytes it received."""
    with call(gateway, bearer, {**body, "stream": True}, path, stream=True) as response:
        assert response.status_code == 200, response.text
        raw = response.raw.read()
    lines = [line for line in raw.split(b"\n") if line.startswith(b"data: ")]
    got = [json.loads(line[6:]) for line in lines if line != b"data: [DONE]"]
    assert lines[-1] == b"data: [DONE]"
    key = None if "chat" in path else "text"
    text = "".join((c["choices"][0].get(key, "") if key else
                    c["choices"][0]["delta"].get("content", "")) or ""
                   for c in got if c["choices"])
    return text, raw


def assert_no_planted_text(gateway: GatewayProcess) -> None:
    """No audit line and no log line holds a planted value."""
    for where in (gateway.audit_stdout.read_text(), gateway.log_tail(10**6)):
        for value in (SSN, CARD, MAIL, "7946 0958"):
            assert value not in where


def test_audit_mode_records_detectors_and_scores_and_changes_nothing(
        echo: dict[str, Any], start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()  # no policy ConfigMap: mode audit
    answer = call(gateway, echo["token"], chat(echo["served"], PLANTED))
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == PLANTED
    text, _ = streamed(gateway, echo["token"], chat(echo["served"], PLANTED))
    assert text == PLANTED
    lines = gateway.audit()[-2:]
    for line in lines:
        assert line["data_protection"] == "audit"
        assert line["detectors"] == {"prompt": FOUND, "completion": FOUND}
        assert line["sensitivity"]["prompt"] == line["sensitivity"]["completion"] == 0.994
        assert line["prompt_tokens"] is not None  # the other fields stay
    assert [line["stream"] for line in lines] == [False, True]
    assert_no_planted_text(gateway)


def test_redact_mode_replaces_matches_in_answers_whole_and_streamed(
        kube: client.ApiClient, namespace: str, echo: dict[str, Any],
        start_gateway: GatewayFactory) -> None:
    set_policy(kube, namespace, "m", "dataProtection: {mode: redact}\n")
    gateway = start_gateway()
    answer = call(gateway, echo["token"], chat(echo["served"], PLANTED))
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == REDACTED
    text, raw = streamed(gateway, echo["token"], chat(echo["served"], PLANTED))
    assert text == REDACTED
    for value in (SSN, CARD, MAIL, SSN[:6], "doe@exa"):
        assert value.encode() not in raw
    completions = {"model": echo["served"], "prompt": PLANTED}
    plain = call(gateway, echo["token"], completions, "/v1/completions")
    assert plain.json()["choices"][0]["text"] == REDACTED
    text, _ = streamed(gateway, echo["token"], completions, "/v1/completions")
    assert text == REDACTED
    lines = gateway.audit()[-4:]
    assert all(line["data_protection"] == "redact" and line["status"] == 200 and
               line["detectors"]["completion"] == FOUND for line in lines)
    assert_no_planted_text(gateway)

    # A live edit back to audit applies to the next request.
    set_policy(kube, namespace, "m", "dataProtection: {mode: audit}\n")
    wait_for("the policy edit to apply", lambda: call(
        gateway, echo["token"], chat(echo["served"], PLANTED)).json()[
        "choices"][0]["message"]["content"] == PLANTED, 30)


def test_block_mode_refuses_a_sensitive_prompt_and_redacts_answers(
        kube: client.ApiClient, namespace: str, echo: dict[str, Any],
        start_gateway: GatewayFactory) -> None:
    set_policy(kube, namespace, "m", "dataProtection: {mode: block, blockThreshold: 0.5}\n")
    gateway = start_gateway()
    refused = call(gateway, echo["token"], chat(echo["served"], PLANTED, stream=True))
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert "CREDIT_CARD, EMAIL_ADDRESS, US_SSN" in message and SSN not in message
    line = gateway.audit()[-1]
    assert (line["status"], line["deployment"], line["data_protection"]) == (400, "m", "block")
    assert line["detectors"] == {"prompt": FOUND, "completion": None}
    assert line["sensitivity"] == {"prompt": 0.994, "completion": None}

    # A phone number alone scores 0.3: under the threshold, forwarded, and redacted.
    text, _ = streamed(gateway, echo["token"], chat(echo["served"], PHONE_ONLY))
    assert text == "Call me at [REDACTED:PHONE_NUMBER] tomorrow."
    line = gateway.audit()[-1]
    assert line["status"] == 200 and line["sensitivity"] == {"prompt": 0.3,
                                                             "completion": 0.3}
    assert_no_planted_text(gateway)


def test_a_bad_policy_value_fails_closed_and_is_an_error(
        kube: client.ApiClient, namespace: str, echo: dict[str, Any],
        start_gateway: GatewayFactory) -> None:
    set_policy(kube, namespace, "m", "dataProtection: {mode: shred}\n")
    gateway = start_gateway()
    refused = call(gateway, echo["token"], chat(echo["served"], PLANTED))
    assert refused.status_code == 400, "block, the fail-closed mode"
    assert gateway.audit()[-1]["data_protection"] == "block"
    text, _ = streamed(gateway, echo["token"], chat(echo["served"], PHONE_ONLY))
    assert text == "Call me at [REDACTED:PHONE_NUMBER] tomorrow.", "answers redacted"
    log = gateway.log_tail()
    assert "ERROR" in log and f"{namespace}/m-gateway-policy policy.yaml" in log
    assert "dataProtection.mode must be one of audit, redact, block" in log
    labels = {"namespace": namespace, "deployment": "m"}
    assert gateway.metric("deepseek_gateway_policy_invalid", labels) == 1
    set_policy(kube, namespace, "m", "dataProtection: {mode: Audit}\n")
    wait_for("the fixed policy to apply", lambda: gateway.metric(
        "deepseek_gateway_policy_invalid", labels) == 0, 30)
    answer = call(gateway, echo["token"], chat(echo["served"], PLANTED))
    assert answer.json()["choices"][0]["message"]["content"] == PLANTED


def test_block_mode_inspects_every_string_and_ignores_zero_width_characters(
        kube: client.ApiClient, namespace: str, echo: dict[str, Any],
        start_gateway: GatewayFactory) -> None:
    set_policy(kube, namespace, "m", "dataProtection: {mode: block}\n")
    gateway = start_gateway()
    hidden: list[tuple[str, dict[str, Any]]] = [
        ("/v1/chat/completions", {"messages": [
            {"role": "user", "content": "hi", "name": f"{SSN} {CARD}"}]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                  "tools": [{"type": "function", "function": {
                                      "name": "f", "description": f"{SSN} {CARD}"}}]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                  "chat_template": f"{SSN} {CARD}"}),
        ("/v1/completions", {"prompt": "hi", "suffix": f"{SSN} {CARD}"}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content":
                                                "078-05\u200b-1120 4111 1111\u200b 1111 1111"}]}),
    ]
    for path, body in hidden:
        refused = call(gateway, echo["token"], {"model": echo["served"], **body}, path)
        assert refused.status_code == 400, (path, sorted(body))
        assert "US_SSN" in refused.json()["error"]["message"]
    assert_no_planted_text(gateway)
