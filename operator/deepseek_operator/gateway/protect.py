"""Data protection on the OpenAI API's shapes: which strings of a request and an answer
are inspected, and how an answer is redacted, whole or streamed.

Inspected in a request (its score, the block decision and the audit counts): every string
value of the request JSON, at any depth (`messages[].content` and `.name`, tool
descriptions, `chat_template`, `suffix`, ...), except the top-level `model`; keys are
not. Before detection, Unicode format characters (category Cf: zero-width space and
joiners, soft hyphen, BOM, bidi controls) are removed, so `123-45\u200b-6789` is an SSN.
Token ids are not text.

Inspected in an answer: `choices[].message.content` and `.reasoning_content` (chat),
`choices[].text` (completions), and the same under `delta` in stream chunks. Answers are
redacted as they are, without that normalization (positions stay those of the text
sent): a match split by a format character in an answer is not found. Not inspected in
answers: tool calls and their arguments, names, `logprobs` (when redacting, `logprobs`
are removed from the answer, as they repeat the text token by token).

Pure (no I/O): `inspect_prompt` and `redact_answer` work on parsed documents,
`StreamProtector` on server-sent events as `sse.EventSplitter` yields them.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .detect import Scanner, counts, redact, score
from .sse import event_json
from .stream_redact import StreamRedactor

_ANSWER_FIELDS = ("content", "reasoning_content")


@dataclass
class Findings:
    """Matches per detector name in one side (prompt or completion) of a request."""

    counts: dict[str, int] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """The sensitivity in [0, 1] (detect.score)."""
        return score(self.counts)

    def types(self, scanner: Scanner) -> list[str]:
        """The detector types that fired, sorted (e.g. ["CREDIT_CARD", "US_SSN"])."""
        by_name = {d.name: d.type for d in scanner.detectors}
        return sorted({by_name[name] for name, count in self.counts.items() if count})

    def add(self, more: dict[str, int]) -> None:
        """Add the counts `more`."""
        for name, count in more.items():
            self.counts[name] = self.counts.get(name, 0) + count


def prompt_strings(document: Any) -> Iterator[str]:
    """Every string value of a request body, at any depth, in document order, except the
    top-level `model` (keys are not values). Iterative: depth costs no stack."""
    if isinstance(document, dict):
        stack: list[Any] = [v for k, v in reversed(document.items()) if k != "model"]
    else:
        stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            stack.extend(reversed(value.values()))
        elif isinstance(value, list):
            stack.extend(reversed(value))


FORMAT_CHARACTERS: dict[int, None] = {
    code: None for code in range(sys.maxunicode + 1)
    if unicodedata.category(chr(code)) == "Cf"}
"""str.translate table deleting every Unicode format character (category Cf); built at
import (about 0.1 s) so no request pays for it."""


def without_format_characters(text: str) -> str:
    """`text` without Unicode format characters (category Cf: U+200B zero-width space,
    U+200C/D joiners, U+00AD soft hyphen, U+FEFF BOM, bidi controls...), which render as
    nothing and would otherwise split an entity so that no detector sees it."""
    if text.isascii():
        return text
    return text.translate(FORMAT_CHARACTERS)


def inspect_prompt(scanner: Scanner, document: dict[str, Any]) -> Findings:
    """The findings of a request body's strings (`prompt_strings`, each scanned on its
    own, without format characters)."""
    findings = Findings()
    for text in prompt_strings(document):
        cleaned = without_format_characters(text)
        findings.add(counts(scanner.scan(cleaned.encode("utf-8", "surrogatepass"))))
    return findings


def _answer_slots(choice: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(mapping, key) of each inspected string of one choice."""
    for holder in ("message", "delta"):
        inner = choice.get(holder)
        if isinstance(inner, dict):
            for key in _ANSWER_FIELDS:
                if isinstance(inner.get(key), str):
                    yield inner, key
    if isinstance(choice.get("text"), str):
        yield choice, "text"


def _choices(document: dict[str, Any]) -> list[dict[str, Any]]:
    choices = document.get("choices")
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def redact_answer(scanner: Scanner, document: dict[str, Any], *, rewrite: bool) -> Findings:
    """The findings of a whole (not streamed) answer; with `rewrite`, each match in it is
    replaced by its placeholder and `logprobs` removed (in place)."""
    findings = Findings()
    for choice in _choices(document):
        for holder, key in _answer_slots(choice):
            text = holder[key].encode("utf-8", "surrogatepass")
            matches = scanner.scan(text)
            findings.add(counts(matches))
            if rewrite and matches:
                holder[key] = redact(text, matches).decode("utf-8", "replace")
        if rewrite and choice.get("logprobs") is not None:
            choice["logprobs"] = None
    return findings


class StreamProtector:
    """Inspects (and with `rewrite`, redacts) a streamed answer event by event.

    One `StreamRedactor` per choice index and field. Text a redactor holds back is sent
    in a later event of its choice: the one with its `finish_reason` at the latest, or
    the extra event `finish` makes. Without `rewrite`, events pass unchanged and the text
    is only counted (lazily).
    """

    def __init__(self, scanner: Scanner, *, rewrite: bool) -> None:
        """Inspect with `scanner`; `rewrite`: redact what the client receives."""
        self._scanner = scanner
        self._rewrite = rewrite
        self._redactors: dict[tuple[int, str, str], StreamRedactor] = {}
        self._template: dict[str, Any] | None = None
        self._chat = True

    @property
    def findings(self) -> Findings:
        """Counts of the matches final so far (all of them after `finish`)."""
        result = Findings()
        for redactor in self._redactors.values():
            result.add(redactor.counts)
        return result

    def event(self, event: bytes) -> bytes:
        """The event to send in place of `event` (itself when nothing changes)."""
        if b'"choices"' not in event:
            return event
        document = event_json(event)
        if document is None:
            return event
        choices = _choices(document)
        if not choices:
            return event
        if self._template is None:
            self._template = {k: document[k] for k in ("id", "object", "created", "model")
                              if k in document}
            self._chat = "delta" in choices[0]
        for choice in choices:
            index = choice.get("index", 0)
            index = index if isinstance(index, int) else 0
            for holder, key in _answer_slots(choice):
                slot = (index, "delta" if holder is not choice else "", key)
                out = self._redactor(slot).feed(holder[key].encode("utf-8", "surrogatepass"))
                holder[key] = out.decode("utf-8", "replace")
            if choice.get("finish_reason") is not None:
                for slot, redactor in self._redactors.items():
                    if slot[0] != index:
                        continue
                    rest = redactor.close().decode("utf-8", "replace")
                    if rest and self._rewrite:
                        holder = (choice.setdefault("delta", {}) if slot[1] == "delta"
                                  else choice)
                        holder[slot[2]] = (holder.get(slot[2]) or "") + rest
            if self._rewrite and choice.get("logprobs") is not None:
                choice["logprobs"] = None
        if not self._rewrite:
            return event
        return b"data: " + json.dumps(document, ensure_ascii=False).encode() + b"\n\n"

    def finish(self) -> bytes:
        """The stream ends: an event with the text still held (or b""), and every
        redactor closed."""
        pending: dict[int, dict[str, str]] = {}
        for (index, _, key), redactor in self._redactors.items():
            rest = redactor.close().decode("utf-8", "replace")
            if rest:
                pending.setdefault(index, {})[key] = pending.get(index, {}).get(key, "") + rest
        if not pending or not self._rewrite:
            return b""
        choices = []
        for index, fields in sorted(pending.items()):
            if self._chat:
                choices.append({"index": index, "delta": fields, "finish_reason": None})
            else:
                choices.append({"index": index, "text": fields.get("text", ""),
                                "finish_reason": None})
        document = {**(self._template or {}), "choices": choices}
        return b"data: " + json.dumps(document, ensure_ascii=False).encode() + b"\n\n"

    def _redactor(self, slot: tuple[int, str, str]) -> StreamRedactor:
        redactor = self._redactors.get(slot)
        if redactor is None:
            redactor = StreamRedactor(self._scanner, lazy=not self._rewrite)
            self._redactors[slot] = redactor
        return redactor
