"""Data protection on OpenAI shapes (gateway/protect.py), the dataProtection policy key
(gateway/policy.py) and the audit fields (gateway/audit.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deepseek_operator.gateway.audit import AuditRecord, audit_line
from deepseek_operator.gateway.detect import Scanner
from deepseek_operator.gateway.policy import DataProtection, policy_from_config_map
from deepseek_operator.gateway.protect import (
    StreamProtector,
    inspect_prompt,
    prompt_strings,
    redact_answer,
    without_format_characters,
)
from deepseek_operator.gateway.sse import EventSplitter, event_json

SCANNER = Scanner()
SECRET = "my SSN is 078-05-1120 and card 4111 1111 1111 1111, mail jane.doe@example.com"
REDACTED = ("my SSN is [REDACTED:US_SSN] and card [REDACTED:CREDIT_CARD], mail "
            "[REDACTED:EMAIL_ADDRESS]")
FOUND = {"us_ssn": 1, "credit_card": 1, "email": 1}


def test_prompt_strings_are_every_string_value_but_the_model() -> None:
    chat = {"model": "r1@example.com",
            "messages": [{"role": "system", "content": "a"},
                         {"role": "user", "content": [{"type": "text", "text": "b"},
                                                      {"type": "image_url"}]},
                         {"role": "assistant", "content": None}, "junk"]}
    assert list(prompt_strings(chat)) == ["system", "a", "user", "text", "b", "image_url",
                                          "assistant", "junk"]
    assert list(prompt_strings({"prompt": ["c", [1, 2], "d"]})) == ["c", "d"]
    assert list(prompt_strings({"prompt": "e", "suffix": "f"})) == ["e", "f"]
    assert list(prompt_strings({"prompt": [1, 2]})) == []
    assert list(prompt_strings({"k@example.com": 1})) == [], "keys are not values"
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    assert list(prompt_strings({"prompt": deep})) == ["x"], "no recursion"


SSN = "078-05-1120"
SSN_SPLIT = "078-05\u200b-1120"
AWS_SPLIT = "AKIA\u200bIOSFODNN7EXAMPLE"


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi",
                                            "name": SSN}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "tools": [
        {"type": "function", "function": {"name": "f", "description": f"call {SSN}",
                                          "parameters": {"type": "object"}}}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                              "chat_template": f"{{{{ messages }}}} {SSN}"}),
    ("/v1/completions", {"prompt": "hi", "suffix": f"mine is {SSN}"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": f"ssn {SSN_SPLIT}"}]}),
    ("/v1/completions", {"prompt": "ssn 078\u00ad-05-1120\ufeff"}),
])
def test_every_string_of_the_request_is_inspected(path: str, body: dict[str, Any]) -> None:
    assert path.startswith("/v1/")
    findings = inspect_prompt(SCANNER, {"model": "r1", **body})
    assert findings.counts == {"us_ssn": 1}
    assert findings.score > 0.5, "over the default block threshold"


def test_a_key_split_by_a_zero_width_character_is_found() -> None:
    findings = inspect_prompt(SCANNER, {"prompt": f"key {AWS_SPLIT} ok"})
    assert findings.types(SCANNER) == inspect_prompt(
        SCANNER, {"prompt": "key AKIAIOSFODNN7EXAMPLE ok"}).types(SCANNER)
    assert findings.counts != {}
    assert without_format_characters("a\u200b\u200c\u200d\u2060\u00ad\ufeff\u202eb") == "ab"
    assert without_format_characters("caf\u00e9 \u4e2d") == "caf\u00e9 \u4e2d", "letters stay"


def test_inspect_prompt_counts_and_scores() -> None:
    findings = inspect_prompt(SCANNER, {
        "messages": [{"role": "user", "content": SECRET}]})
    assert findings.counts == FOUND
    assert findings.score == round(1 - 0.1 * 0.1 * 0.6, 4)
    assert findings.types(SCANNER) == ["CREDIT_CARD", "EMAIL_ADDRESS", "US_SSN"]


@pytest.mark.parametrize("rewrite", [True, False])
def test_a_whole_answer_is_redacted_or_only_counted(rewrite: bool) -> None:
    answer: dict[str, Any] = {"choices": [
        {"index": 0, "message": {"role": "assistant", "content": SECRET,
                                 "reasoning_content": "think 078-05-1120"},
         "logprobs": {"content": [{"token": "078"}]}},
        {"index": 1, "text": SECRET}]}
    findings = redact_answer(SCANNER, answer, rewrite=rewrite)
    assert findings.counts == {"us_ssn": 3, "credit_card": 2, "email": 2}
    if rewrite:
        assert answer["choices"][0]["message"]["content"] == REDACTED
        assert answer["choices"][0]["message"]["reasoning_content"] == "think [REDACTED:US_SSN]"
        assert answer["choices"][0]["logprobs"] is None
        assert answer["choices"][1]["text"] == REDACTED
    else:
        assert answer["choices"][0]["message"]["content"] == SECRET


def chunk(text: str | None, *, chat: bool = True, finish: str | None = None,
          index: int = 0) -> bytes:
    choice: dict[str, Any] = ({"index": index, "delta": {} if text is None else
                               {"content": text}, "finish_reason": finish} if chat else
                              {"index": index, "text": text or "", "finish_reason": finish})
    return b"data: " + json.dumps({"id": "c1", "object": "x", "created": 0, "model": "m",
                                   "choices": [choice]}).encode() + b"\n\n"


def stream_text(events: list[bytes], chat: bool = True) -> dict[int, str]:
    """The text per choice index a client reassembles from events."""
    texts: dict[int, str] = {}
    for event in EventSplitter().feed(b"".join(events)):
        document = event_json(event)
        for choice in (document or {}).get("choices", []):
            piece = choice["delta"].get("content", "") if chat else choice["text"]
            texts[choice["index"]] = texts.get(choice["index"], "") + (piece or "")
    return texts


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("size", [1, 3, 7, 50])
def test_a_stream_split_inside_matches_is_redacted(chat: bool, size: int) -> None:
    protector = StreamProtector(SCANNER, rewrite=True)
    pieces = [SECRET[i:i + size] for i in range(0, len(SECRET), size)]
    out = [protector.event(chunk(p, chat=chat)) for p in pieces]
    out.append(protector.event(chunk(None, chat=chat, finish="stop")))
    out.append(protector.finish())
    assert stream_text(out, chat) == {0: REDACTED}
    assert protector.findings.counts == FOUND
    joined = b"".join(out).decode()
    assert "078-05-1120" not in joined and "jane.doe" not in joined


def test_text_held_when_the_stream_ends_without_a_finish_reason_gets_its_own_event() -> None:
    protector = StreamProtector(SCANNER, rewrite=True)
    out = [protector.event(chunk(p)) for p in ("card 4111 1111 ", "1111 1111 ok")]
    tail = protector.finish()
    assert tail.startswith(b"data: ") and json.loads(tail[6:])["id"] == "c1"
    assert stream_text([*out, tail]) == {0: "card [REDACTED:CREDIT_CARD] ok"}


def test_choices_are_redacted_apart_and_other_events_pass_unchanged() -> None:
    protector = StreamProtector(SCANNER, rewrite=True)
    out = [protector.event(chunk("078-05-", index=0)), protector.event(chunk("1120", index=1)),
           protector.event(chunk("1120", index=0)),
           protector.event(chunk(None, index=0, finish="stop")),
           protector.event(chunk(None, index=1, finish="stop"))]
    assert stream_text(out) == {0: "[REDACTED:US_SSN]", 1: "1120"}
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 1}}\n\n'
    for event in (usage, b"data: [DONE]\n\n", b": keep-alive\n\n"):
        assert protector.event(event) is event


def test_audit_mode_passes_events_unchanged_and_counts() -> None:
    protector = StreamProtector(SCANNER, rewrite=False)
    events = [chunk(SECRET[i:i + 4]) for i in range(0, len(SECRET), 4)]
    assert [protector.event(e) for e in events] == events
    assert protector.event(chunk(None, finish="stop")) == chunk(None, finish="stop")
    assert protector.finish() == b""
    assert protector.findings.counts == FOUND


def policy_cm(text: str) -> dict[str, Any]:
    return {"metadata": {"name": "m-gateway-policy", "namespace": "ns",
                         "labels": {"deepseek-operator.io/deployment": "m"}},
            "data": {"policy.yaml": text}}


def test_data_protection_policy_is_read_and_bad_values_fail_closed() -> None:
    read = policy_from_config_map(policy_cm(
        "dataProtection: {mode: block, blockThreshold: 0.8}\n"))
    assert read is not None and read[1].data_protection == DataProtection("block", 0.8)
    assert read[2] == []
    read = policy_from_config_map(policy_cm("maxQueuedRequests: 3\n"))
    assert read is not None and read[1].data_protection is None
    read = policy_from_config_map(policy_cm(
        "dataProtection: {mode: shred, blockThreshold: 2, extra: 1}\n"))
    assert read is not None and read[1].data_protection == DataProtection("block", 0.5)
    assert read[1].data_protection_invalid
    assert [p.split(": ", 2)[1] for p in read[2]] == [
        "dataProtection.mode must be one of audit, redact, block, got 'shred'; "
        "failing closed with mode block",
        "dataProtection.blockThreshold must be a number in [0, 1], got 2; "
        "failing closed with mode block",
        "dataProtection"]
    read = policy_from_config_map(policy_cm("dataProtection: redact\n"))
    assert read is not None and read[1].data_protection == DataProtection("block", 0.5)
    assert "must be a mapping" in read[2][0]


def test_the_audit_line_holds_scores_and_counts_never_text() -> None:
    record = AuditRecord(started=0.0, client=None, method="POST", path="/v1/completions",
                         data_protection="redact", prompt_detectors={"us_ssn": 1},
                         prompt_sensitivity=0.9, completion_detectors={},
                         completion_sensitivity=0.0)
    line = json.loads(audit_line(record))
    assert line["sensitivity"] == {"prompt": 0.9, "completion": 0.0}
    assert line["detectors"] == {"prompt": {"us_ssn": 1}, "completion": {}}
    assert line["data_protection"] == "redact"
    bare = json.loads(audit_line(AuditRecord(started=0.0, client=None, method="GET",
                                             path="/v1/models")))
    assert bare["sensitivity"] is None and bare["detectors"] is None
