"""Server-sent events as the OpenAI API streams them: split into whole events as bytes
arrive, and read the `usage` an engine puts in its last chunk.

The gateway forwards each event's bytes unchanged as soon as the event is complete; this
module only looks at them. Pure (no I/O).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_SEPARATORS = (b"\r\n\r\n", b"\n\n")
DONE = b"[DONE]"


@dataclass(frozen=True)
class Usage:
    """Token counts from an OpenAI `usage` object."""

    prompt_tokens: int | None
    completion_tokens: int | None


class EventSplitter:
    """Feed bytes as they arrive; get back the events completed by them.

    An event ends with a blank line (`\\n\\n` or `\\r\\n\\r\\n`); the returned bytes include
    it, so joining them gives back the input. `max_event_bytes` bounds what an event
    without an end may buffer.
    """

    def __init__(self, max_event_bytes: int = 1 << 20) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The events `data` completes, in order.

        Raises:
            ValueError: more than `max_event_bytes` arrived without an event end.
        """
        self._buffer += data
        events = []
        while True:
            end = -1
            width = 0
            for separator in _SEPARATORS:
                at = self._buffer.find(separator)
                if at != -1 and (end == -1 or at < end):
                    end, width = at, len(separator)
            if end == -1:
                break
            events.append(self._buffer[:end + width])
            self._buffer = self._buffer[end + width:]
        if len(self._buffer) > self.max_event_bytes:
            raise ValueError(f"a server-sent event exceeded {self.max_event_bytes} bytes")
        return events

    def rest(self) -> bytes:
        """Bytes of an event not yet ended (what is left when the stream closes)."""
        return self._buffer


def event_data(event: bytes) -> bytes | None:
    """The `data` field of one event (its `data:` lines joined by newlines), or None when
    it has none (a comment or keep-alive)."""
    lines = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines) if lines else None


def event_json(event: bytes) -> dict[str, Any] | None:
    """The event's data as a JSON object, or None (no data, `[DONE]`, not JSON, not an
    object)."""
    data = event_data(event)
    if data is None or data.strip() == DONE:
        return None
    try:
        document = json.loads(data)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def usage_of(document: dict[str, Any] | None) -> Usage | None:
    """The token counts of a chat/completion document or chunk, if it has `usage`."""
    if document is None:
        return None
    usage = document.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    return Usage(prompt if isinstance(prompt, int) else None,
                 completion if isinstance(completion, int) else None)


def is_usage_only(document: dict[str, Any] | None) -> bool:
    """True for the extra last chunk `stream_options.include_usage` asks for: `usage` set
    and `choices` empty."""
    return (document is not None and isinstance(document.get("usage"), dict)
            and document.get("choices") == [])


def error_event(message: str, code: int) -> bytes:
    """An OpenAI-style error event, then `data: [DONE]`, to end a stream that broke."""
    body = json.dumps({"error": {"message": message, "type": "server_error", "param": None,
                                 "code": code}})
    return f"data: {body}\n\n".encode() + b"data: " + DONE + b"\n\n"
