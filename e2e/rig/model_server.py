"""An OpenAI-compatible model-server stand-in that exports vLLM- or SGLang-style metrics.

One process plays one pod of the workload. It binds 127.0.0.1 only and answers:

- ``GET /health`` -> 200, empty body (both engines serve this path).
- ``GET /v1/models`` -> the one served model.
- ``POST /v1/chat/completions`` and ``POST /v1/completions`` -> a canned, deterministic
  reply with ``usage`` counts. Whitespace-separated words stand in for tokens. With
  ``"stream": true`` the reply comes as server-sent events, one chunk per token every
  ``--token-interval-seconds``, in HTTP/1.1 chunked encoding as vLLM's server sends it
  (a process killed mid-stream leaves the response without its last chunk, which a client
  sees as a broken stream); ``stream_options.include_usage`` adds the usage chunk, and
  ``max_tokens`` above the canned reply's length repeats it. A client that goes away
  mid-stream is counted as an aborted request (``finished_reason="abort"``), as vLLM
  does.
- ``GET /metrics`` -> Prometheus text exposition built with prometheus-client. With
  ``--busy-metrics-latency-seconds S`` it answers S seconds late while a request runs: an
  engine whose event loop is busy with generation (vLLM's API server and SGLang's
  tokenizer manager serve /metrics on the same asyncio loop as the requests) answers
  late under load, and a preStop drain must not take that for an idle engine.
- With ``--echo N``, the reply is the request's text instead (the last message's content,
  or the prompt), streamed in pieces of N characters: a data-protection test plants data
  in the prompt and finds it in the answer, split across chunks.

With ``VLLM_API_KEY`` in its environment it checks the key as vLLM does
(``AuthenticationMiddleware`` in vllm/entrypoints: every ``/v1`` path needs
``Authorization: Bearer <key>``, else 401; ``/health`` and ``/metrics`` stay open).

Run it as ``python -m e2e.rig.model_server --port P --model NAME --pod POD --engine vllm``.
With ``--port 0`` the kernel picks a free port. Once the socket is bound the process prints
one line, ``READY_LINE_PREFIX`` followed by the port, to stdout, so a parent knows where
to reach it without racing for a port. SIGTERM or SIGINT stops it with exit code 0.

Metric names and labels follow the engines' own code:

- vLLM V1, ``vllm/v1/metrics/loggers.py`` (``PrometheusStatLogger``): labels ``model_name``
  and ``engine`` (engine-core index, ``"0"`` here); ``vllm:request_success_total`` also
  carries ``finished_reason`` (``stop``, ``length`` or ``abort``). Every reason's series is
  created at start-up, as vLLM does, so ``rate()`` sees the first request.
- SGLang, ``python/sglang/srt/metrics/collector.py`` and
  ``docs/references/production_metrics.md``: label ``model_name``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Literal, Protocol, TypeVar, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Engine = Literal["vllm", "sglang"]
ENGINES: tuple[str, ...] = get_args(Engine)
FinishReason = Literal["stop", "length", "abort"]

LISTEN_HOST = "127.0.0.1"
READY_LINE_PREFIX = "model-server listening on port "
# SGLang reports generation throughput as a recent average; 5 s is our choice of window.
THROUGHPUT_WINDOW_S = 5.0
# vLLM's default --max-num-seqs (sequences scheduled at once); more requests wait.
DEFAULT_MAX_NUM_SEQS = 256


class _Message(BaseModel):
    """A chat message as the OpenAI API takes it: `content` a string or a list of parts,
    or null in an assistant message that carries `tool_calls` (or `function_call`)."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _content_or_a_call(self) -> _Message:
        if self.content is None and not (self.role == "assistant"
                                         and (self.tool_calls or self.function_call)):
            raise ValueError("content is required unless an assistant message carries "
                             "tool_calls")
        return self

    @property
    def text(self) -> str:
        """The message's text: the string, the `text` of its parts, or ""."""
        if isinstance(self.content, str):
            return self.content
        return " ".join(part["text"] for part in self.content or ()
                        if isinstance(part.get("text"), str))


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class _ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None


class _CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    # as the OpenAI API: text, texts, one token-id list or several
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None


_Request = TypeVar("_Request", _ChatCompletionRequest, _CompletionRequest)


class RequestSlots:
    """Admission like an engine scheduler: up to ``max_num_seqs`` requests run, the rest wait.

    Also keeps the generated-token history behind the throughput gauge. Thread-safe.
    """

    def __init__(self, max_num_seqs: int) -> None:
        """Allow ``max_num_seqs`` (>= 1) requests to run at once.

        Raises:
            ValueError: ``max_num_seqs`` is below 1.
        """
        if max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {max_num_seqs}")
        self.max_num_seqs = max_num_seqs
        self._slots = threading.BoundedSemaphore(max_num_seqs)
        self._lock = threading.Lock()
        self._waiting = 0
        self._running = 0
        self._generated: deque[tuple[float, int]] = deque()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one running slot for the body of the ``with`` block, waiting for one if full."""
        with self._lock:
            self._waiting += 1
        self._slots.acquire()
        with self._lock:
            self._waiting -= 1
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
            self._slots.release()

    @property
    def waiting(self) -> int:
        """Requests queued for a slot."""
        with self._lock:
            return self._waiting

    @property
    def running(self) -> int:
        """Requests holding a slot."""
        with self._lock:
            return self._running

    def usage(self) -> float:
        """Fraction of slots in use, 0..1: our stand-in for KV-cache (token pool) usage."""
        return self.running / self.max_num_seqs

    def record_generated(self, tokens: int) -> None:
        """Remember that ``tokens`` completion tokens were produced now."""
        with self._lock:
            self._generated.append((time.monotonic(), tokens))

    def generation_throughput(self) -> float:
        """Completion tokens per second over the last ``THROUGHPUT_WINDOW_S`` seconds."""
        horizon = time.monotonic() - THROUGHPUT_WINDOW_S
        with self._lock:
            while self._generated and self._generated[0][0] < horizon:
                self._generated.popleft()
            return sum(tokens for _, tokens in self._generated) / THROUGHPUT_WINDOW_S


class EngineMetrics(Protocol):
    """The metrics one engine flavour exports; gauges read ``RequestSlots`` at scrape time."""

    registry: CollectorRegistry

    def record_finished(self, reason: FinishReason) -> None:
        """Count one finished request."""


class VllmMetrics:
    """vLLM V1 metric names and labels (see the module docstring for the source)."""

    def __init__(self, model: str, slots: RequestSlots) -> None:
        """Register the vLLM metrics for served model ``model`` in a fresh registry."""
        self.registry = CollectorRegistry()
        engine_index = "0"
        labels = ["model_name", "engine"]
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*labels, "finished_reason"],
            registry=self.registry,
        )
        self._success = {
            reason: success.labels(model, engine_index, reason)
            for reason in get_args(FinishReason)
        }
        gauges = {
            "vllm:num_requests_running": ("Number of requests in model execution batches.",
                                          lambda: float(slots.running)),
            "vllm:num_requests_waiting": ("Number of requests waiting to be processed.",
                                          lambda: float(slots.waiting)),
            "vllm:kv_cache_usage_perc": ("KV-cache usage. 1 means 100 percent usage.",
                                         slots.usage),
        }
        for name, (documentation, read) in gauges.items():
            gauge = Gauge(name, documentation, labels, registry=self.registry)
            gauge.labels(model, engine_index).set_function(read)

    def record_finished(self, reason: FinishReason) -> None:
        """Increment ``vllm:request_success_total{finished_reason=reason}``."""
        self._success[reason].inc()


class SglangMetrics:
    """SGLang metric names and labels (see the module docstring for the source)."""

    def __init__(self, model: str, slots: RequestSlots) -> None:
        """Register the SGLang metrics for served model ``model`` in a fresh registry."""
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        self._requests = Counter(
            "sglang:num_requests_total",
            "Number of requests processed.",
            labels,
            registry=self.registry,
        ).labels(model)
        gauges = {
            "sglang:num_running_reqs": ("The number of running requests.",
                                        lambda: float(slots.running)),
            "sglang:num_queue_reqs": ("The number of requests in the waiting queue.",
                                      lambda: float(slots.waiting)),
            "sglang:token_usage": ("The token usage.", slots.usage),
            "sglang:gen_throughput": ("The generation throughput (token/s).",
                                      slots.generation_throughput),
        }
        for name, (documentation, read) in gauges.items():
            gauge = Gauge(name, documentation, labels, registry=self.registry)
            gauge.labels(model).set_function(read)

    def record_finished(self, reason: FinishReason) -> None:
        """Increment ``sglang:num_requests_total`` (SGLang counts every finished request)."""
        self._requests.inc()


class ApiError(Exception):
    """A request the stand-in refuses, answered in the OpenAI error shape."""

    def __init__(self, status: HTTPStatus, message: str, param: str | None = None) -> None:
        """``param`` names the offending request field, when there is one."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}`` as the OpenAI API returns it."""
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param,
                          "code": int(self.status)}}


class StandInApp:
    """The stand-in's behaviour, free of HTTP plumbing: JSON bodies in, JSON documents out."""

    def __init__(self, *, model: str, pod: str, engine: Engine, max_num_seqs: int,
                 latency_s: float, token_interval_s: float = 0.0,
                 stamp_chunks: bool = False, echo: int = 0,
                 busy_metrics_latency_s: float = 0.0) -> None:
        """Serve ``model`` as pod ``pod`` with ``engine``-style metrics.

        ``latency_s`` (seconds, >= 0) is how long each request holds its running slot;
        ``token_interval_s`` (seconds, >= 0) the pause before each streamed token;
        ``stamp_chunks`` adds ``sent_at`` (epoch seconds) to each streamed chunk, for
        benchmarks that measure a chunk's way to the client; ``echo`` (characters, 0:
        off) answers with the request's text in pieces of that many characters;
        ``busy_metrics_latency_s`` (seconds) delays /metrics while a request runs.

        Raises:
            ValueError: ``engine`` is unknown, ``latency_s`` is negative or
                ``max_num_seqs`` is below 1.
        """
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        self.model = model
        self.pod = pod
        self.latency_s = latency_s
        self.token_interval_s = token_interval_s
        self.stamp_chunks = stamp_chunks
        self.echo = echo
        self.busy_metrics_latency_s = busy_metrics_latency_s
        self.slots = RequestSlots(max_num_seqs)
        self.metrics: EngineMetrics
        if engine == "vllm":
            self.metrics = VllmMetrics(model, self.slots)
        elif engine == "sglang":
            self.metrics = SglangMetrics(model, self.slots)
        else:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self._lock = threading.Lock()
        self._served = 0

    def reply_words(self) -> list[str]:
        """The canned reply, one list item per token."""
        reply = f"Hello from {self.pod}. This is the canned reply of the {self.model} stand-in."
        return reply.split()

    def models(self) -> dict[str, Any]:
        """The ``GET /v1/models`` document."""
        return {"object": "list",
                "data": [{"id": self.model, "object": "model", "created": 0,
                          "owned_by": "deepseek-operator-e2e"}]}

    def chat_completion(self, raw: bytes) -> dict[str, Any]:
        """Answer a ``POST /v1/chat/completions`` body.

        Raises:
            ApiError: the body is not JSON, misses or mistypes a field (named in the
                error), or asks for another model.
        """
        request = _parse(_ChatCompletionRequest, raw)
        prompt_tokens = sum(len(message.text.split()) for message in request.messages)
        words, reason = self._generate(request.model, request.max_tokens)
        content = " ".join(words)
        if self.echo:
            content = request.messages[-1].text
        return self._document("chat.completion", prompt_tokens, len(words), {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": reason,
        })

    def completion(self, raw: bytes) -> dict[str, Any]:
        """Answer a ``POST /v1/completions`` body.

        Raises:
            ApiError: as for ``chat_completion``.
        """
        request = _parse(_CompletionRequest, raw)
        prompts = _prompt_texts(request.prompt)
        prompt_tokens = sum(len(prompt.split()) for prompt in prompts)
        words, reason = self._generate(request.model, request.max_tokens)
        text = prompts[-1] if self.echo else " ".join(words)
        return self._document("text_completion", prompt_tokens, len(words), {
            "index": 0, "text": text, "finish_reason": reason,
        })

    def stream(self, path: str, raw: bytes) -> Iterator[bytes]:
        """Answer a ``stream: true`` body of ``path`` (chat or completions) as server-sent
        events, one per yielded item. The body is checked before the first item.

        Raises:
            ApiError: as for ``chat_completion``.
        """
        chat = path == "/v1/chat/completions"
        request: _ChatCompletionRequest | _CompletionRequest
        if chat:
            request = _parse(_ChatCompletionRequest, raw)
            prompt_tokens = sum(len(message.text.split()) for message in request.messages)
        else:
            request = _parse(_CompletionRequest, raw)
            prompts = _prompt_texts(request.prompt)
            prompt_tokens = sum(len(prompt.split()) for prompt in prompts)
        if request.model != self.model:
            raise ApiError(HTTPStatus.NOT_FOUND, f"The model `{request.model}` does not exist.",
                           "model")
        words = self.reply_words()
        count = request.max_tokens or len(words)
        tokens = [words[i % len(words)] if i == 0 else " " + words[i % len(words)]
                  for i in range(count)]
        if self.echo:
            text = (request.messages[-1].text if isinstance(request, _ChatCompletionRequest)
                    else prompts[-1])
            tokens = [text[i:i + self.echo] for i in range(0, len(text), self.echo)]
        include_usage = request.stream_options is not None and request.stream_options.include_usage
        kind = "chat.completion.chunk" if chat else "text_completion"
        with self._lock:
            self._served += 1
            ident = f"{kind}-{self.pod}-{self._served}"
        reason: FinishReason = "length" if request.max_tokens else "stop"

        def chunk(text: str | None, finish: str | None) -> bytes:
            if chat:
                choice: dict[str, Any] = {"index": 0, "delta": {} if text is None else
                                          {"content": text}, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "finish_reason": finish}
            document: dict[str, Any] = {"id": ident, "object": kind, "created": 0,
                                        "model": self.model, "choices": [choice]}
            if self.stamp_chunks:
                document["sent_at"] = time.time()
            return _event(document)

        def events() -> Iterator[bytes]:
            with self.slots.slot():
                for token in tokens:
                    if self.token_interval_s:
                        time.sleep(self.token_interval_s)
                    yield chunk(token, None)
                yield chunk(None, reason)
                if include_usage:
                    yield _event({"id": ident, "object": kind, "created": 0,
                                  "model": self.model, "choices": [],
                                  "usage": {"prompt_tokens": prompt_tokens,
                                            "completion_tokens": len(tokens),
                                            "total_tokens": prompt_tokens + len(tokens)}})
                yield b"data: [DONE]\n\n"
                self.slots.record_generated(len(tokens))
            self.metrics.record_finished(reason)

        return events()

    def metrics_text(self) -> bytes:
        """The Prometheus text exposition of this stand-in's registry (late by
        ``busy_metrics_latency_s`` while a request runs)."""
        if self.busy_metrics_latency_s and self.slots.running:
            time.sleep(self.busy_metrics_latency_s)
        return generate_latest(self.metrics.registry)

    def _generate(self, model: str, max_tokens: int | None) -> tuple[list[str], FinishReason]:
        if model != self.model:
            raise ApiError(HTTPStatus.NOT_FOUND, f"The model `{model}` does not exist.", "model")
        words = self.reply_words()
        reason: FinishReason = "stop"
        if max_tokens is not None and max_tokens < len(words):
            words, reason = words[:max_tokens], "length"
        with self.slots.slot():
            if self.latency_s:
                time.sleep(self.latency_s)
            self.slots.record_generated(len(words))
        self.metrics.record_finished(reason)
        return words, reason

    def _document(self, kind: str, prompt_tokens: int, completion_tokens: int,
                  choice: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._served += 1
            number = self._served
        return {
            "id": f"{kind}-{self.pod}-{number}",
            "object": kind,
            "created": 0,
            "model": self.model,
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


def _event(document: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(document).encode() + b"\n\n"


def _prompt_texts(prompt: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    """A completions prompt as texts: token ids become space-separated numbers, so one
    id counts as one token (words stand in for tokens)."""
    if isinstance(prompt, str):
        return [prompt]
    if not prompt or isinstance(prompt[0], str):
        return [p for p in prompt if isinstance(p, str)]
    if isinstance(prompt[0], int):
        return [" ".join(str(token) for token in prompt)]
    return [" ".join(str(token) for token in ids) for ids in prompt if isinstance(ids, list)]


def _parse(schema: type[_Request], raw: bytes) -> _Request:
    try:
        return schema.model_validate_json(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        where = f"field {field!r}: " if field else ""
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{where}{first['msg']}", field) from error


class StandInServer(ThreadingHTTPServer):
    """The HTTP server of one stand-in; ``app`` holds its behaviour.

    The standard library's threading HTTP server is enough: this is a tiny loopback test
    stand-in, so a web framework would add a dependency and nothing we need.
    """

    daemon_threads = True
    # The listen backlog: the standard library's 5 drops connections of a burst (a
    # benchmark's 256 streams opening at once) into SYN retransmits of a second or more.
    request_queue_size = 1024

    def __init__(self, port: int, app: StandInApp, api_key: str | None = None) -> None:
        """Bind ``LISTEN_HOST``:``port`` (0 = a free port chosen by the kernel); with
        ``api_key``, ``/v1`` paths need ``Authorization: Bearer <api_key>``."""
        self.app = app
        self.api_key = api_key
        super().__init__((LISTEN_HOST, port), _Handler)

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, so a load generator reuses them.
    protocol_version = "HTTP/1.1"
    server: StandInServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY the second
        # waits for the client's delayed ACK (~40 ms), which would swamp any latency
        # measured through the stand-in.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _authorized(self) -> bool:
        """True when no key is set, the path is outside /v1, or the bearer token is the
        key; otherwise answers 401 as vLLM does and returns False."""
        key = self.server.api_key
        if key is None or not self.path.startswith("/v1"):
            return True
        if hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {key}"):
            return True
        length = self.headers.get("Content-Length", "0")
        if length.isdigit():
            self.rfile.read(int(length))  # keep the connection usable
        self._send_json(HTTPStatus.UNAUTHORIZED, {"error": "Unauthorized"})
        return False

    def do_GET(self) -> None:
        app = self.server.app
        if not self._authorized():
            return
        if self.path == "/health":
            self._send(HTTPStatus.OK, b"", "text/plain")
        elif self.path == "/v1/models":
            self._send_json(HTTPStatus.OK, app.models())
        elif self.path == "/metrics":
            self._send(HTTPStatus.OK, app.metrics_text(), CONTENT_TYPE_LATEST)
        else:
            self._send_json(HTTPStatus.NOT_FOUND,
                            ApiError(HTTPStatus.NOT_FOUND, f"no route GET {self.path}").body())

    def do_POST(self) -> None:
        app = self.server.app
        routes = {"/v1/chat/completions": app.chat_completion, "/v1/completions": app.completion}
        handle = routes.get(self.path)
        if not self._authorized():
            return
        try:
            length = self.headers.get("Content-Length", "0")
            if not length.isdigit():
                raise ApiError(HTTPStatus.BAD_REQUEST,
                               f"header Content-Length: {length!r} is not a byte count")
            raw = self.rfile.read(int(length))
            if handle is None:
                raise ApiError(HTTPStatus.NOT_FOUND, f"no route POST {self.path}")
            if _wants_stream(raw):
                self._send_stream(app.stream(self.path, raw))
                return
            self._send_json(HTTPStatus.OK, handle(raw))
        except ApiError as error:
            self._send_json(error.status, error.body())

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Log only refused requests: at a steady load plus 1 s scrapes, success lines are noise.
        if isinstance(code, int) and code >= HTTPStatus.BAD_REQUEST:
            super().log_request(code, size)

    def _send_stream(self, events: Iterator[bytes]) -> None:
        """Send ``events`` as a chunked text/event-stream, each as soon as it is made; a
        client gone mid-stream counts as an abort (and ends the generator)."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for event in events:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            if isinstance(events, Generator):
                events.close()
            self.server.app.metrics.record_finished("abort")
            self.close_connection = True

    def _send_json(self, status: HTTPStatus, document: dict[str, Any]) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _wants_stream(raw: bytes) -> bool:
    try:
        document = json.loads(raw)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("stream") is True


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True, help="TCP port; 0 = any free port")
    parser.add_argument("--model", required=True, help="served model name")
    parser.add_argument("--pod", required=True, help="name of the pod this process plays")
    parser.add_argument("--engine", choices=ENGINES, required=True, help="metric flavour")
    parser.add_argument("--max-num-seqs", type=int, default=DEFAULT_MAX_NUM_SEQS,
                        help="requests running at once; more wait (default %(default)s)")
    parser.add_argument("--latency-seconds", type=float, default=0.0,
                        help="time each request holds its slot (default %(default)s)")
    parser.add_argument("--token-interval-seconds", type=float, default=0.0,
                        help="pause before each streamed token (default %(default)s)")
    parser.add_argument("--echo", type=int, default=0, metavar="N",
                        help="answer with the request's text, streamed N characters a "
                             "chunk (default 0: the canned reply)")
    parser.add_argument("--busy-metrics-latency-seconds", type=float, default=0.0,
                        help="answer /metrics this late while a request runs (default "
                             "%(default)s)")
    parser.add_argument("--stamp-chunks", action="store_true",
                        help="add sent_at (epoch seconds) to each streamed chunk")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; return the exit code (0)."""
    args = _arguments(argv)
    app = StandInApp(model=args.model, pod=args.pod, engine=args.engine,
                     max_num_seqs=args.max_num_seqs, latency_s=args.latency_seconds,
                     token_interval_s=args.token_interval_seconds,
                     stamp_chunks=args.stamp_chunks, echo=args.echo,
                     busy_metrics_latency_s=args.busy_metrics_latency_seconds)
    server = StandInServer(args.port, app, api_key=os.environ.get("VLLM_API_KEY") or None)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # serve_forever runs in a thread because shutdown() blocks until the loop exits and
    # would deadlock if called from a signal handler on the serving thread.
    serving = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    serving.start()
    print(f"{READY_LINE_PREFIX}{server.port}", flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    serving.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
