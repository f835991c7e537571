"""A scripted LLM that speaks the OpenAI-compatible chat-completions HTTP protocol on loopback
(and, translated to the same script, the OpenAI Responses API's ``POST /v1/responses`` that
the Codex CLI uses -- see :mod:`errands.testing.responses_api` --, Anthropic's Messages API
``POST /v1/messages`` that Claude Code uses -- :mod:`errands.testing.anthropic_api` --, and
the Gemini API's ``generateContent``: see :attr:`ScriptedLLM.gemini_base_url`).

Every request it receives, whatever its path, is kept as it arrived in
:attr:`ScriptedLLM.received` (method, path, headers, body), so a test can assert what an
agent did and did not send (:meth:`ScriptedLLM.sightings` of a secret).

Tests point a real OpenAI client (and so pydantic-ai's ``OpenAIChatModel``) at
:attr:`ScriptedLLM.base_url`; a *script* -- a plain function from the parsed request to a
:class:`Reply` -- decides each answer. Nothing reaches a paid API and nothing is mocked below
the HTTP layer.

Example::

    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.call("read_file", path="README.md")
        return Reply.call(output_tool_name(req), summary="done")

    with ScriptedLLM(script) as llm:
        model = OpenAIChatModel(
            "scripted", provider=OpenAIProvider(base_url=llm.base_url, api_key="test")
        )
        ...
    assert not llm.script_errors
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Literal, Self

from errands.testing.anthropic_api import (
    anthropic_error,
    chat_as_message,
    count_tokens,
    message_events,
    messages_as_chat,
)
from errands.testing.responses_api import chat_as_response, response_events, responses_as_chat

__all__ = [
    "DEFAULT_OUTPUT_TOOL_NAME",
    "FAST_RETRY_HEADERS",
    "Api",
    "ChatRequest",
    "Received",
    "Reply",
    "Script",
    "ScriptedLLM",
    "ToolCall",
    "output_tool_name",
]

DEFAULT_OUTPUT_TOOL_NAME = "final_result"
"""The name pydantic-ai gives its output tool when an agent has a single structured output type.

With several output types (``output_type=[A, B]``) each tool is named ``final_result_<TypeName>``;
an explicit ``ToolOutput(..., name=...)`` may use any name. :func:`output_tool_name` handles all of
these by looking at the tools actually offered in the request.
"""

FAST_RETRY_HEADERS: Mapping[str, str] = MappingProxyType({"retry-after-ms": "1"})
"""Headers that make the openai SDK retry after 1 ms instead of its exponential backoff.

``retry-after: 0`` does *not* do that: the SDK only honours a positive retry-after and otherwise
falls back to 0.5 s, 1 s, 2 s ... (x 0.75-1 jitter).
"""

_EMPTY_HEADERS: Mapping[str, str] = MappingProxyType({})

Api = Literal["chat", "responses", "gemini", "anthropic"]
"""Which protocol a request came in: chat completions, the Responses API, Gemini's, Anthropic's
Messages API."""


@dataclass(frozen=True)
class Received:
    """One HTTP request exactly as it arrived (any method and path, answered or not)."""

    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: str  # decoded as UTF-8, undecodable bytes replaced

    def holds(self, text: str) -> bool:
        """Whether ``text`` appears anywhere in the request: path, a header, the body."""
        return (
            text in self.path
            or text in self.body
            or any(text in f"{name}: {value}" for name, value in self.headers.items())
        )


@dataclass(frozen=True)
class ToolCall:
    """One function call the scripted model makes; ``args`` is sent as a JSON string."""

    name: str
    args: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """What the script answers to one request."""

    text: str | None = None
    """Assistant text; for a non-200 ``status``, the error message."""
    tool_calls: Sequence[ToolCall] = ()
    status: int = 200
    """Non-200 answers with an OpenAI-style error body (unless ``raw_body`` is set)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra response headers, e.g. ``{"retry-after-ms": "1"}`` with a 429."""
    raw_body: str | None = None
    """Send exactly this body (with ``status``) instead of a chat completion / error JSON."""
    delay: float = 0.0
    """Seconds to sleep before answering, to simulate model latency."""

    @classmethod
    def say(cls, text: str, *, delay: float = 0.0) -> Reply:
        return cls(text=text, delay=delay)

    @classmethod
    def call(cls, name: str, /, **args: object) -> Reply:
        return cls(tool_calls=(ToolCall(name, args),))

    @classmethod
    def calls(cls, *calls: ToolCall, text: str | None = None, delay: float = 0.0) -> Reply:
        return cls(text=text, tool_calls=tuple(calls), delay=delay)

    @classmethod
    def error(
        cls,
        status: int,
        message: str = "scripted error",
        *,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        return cls(
            status=status,
            text=message,
            headers=dict(headers or {}),
            delay=delay,
        )

    @classmethod
    def garbage(cls, body: str = "<html>oops", *, status: int = 200) -> Reply:
        return cls(status=status, raw_body=body)

    def with_delay(self, delay: float) -> Reply:
        return Reply(
            text=self.text,
            tool_calls=self.tool_calls,
            status=self.status,
            headers=self.headers,
            raw_body=self.raw_body,
            delay=delay,
        )


def _content_text(content: object) -> str:
    """Text of a message ``content``: a string, or a list of ``{"type": "text", ...}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


class ChatRequest:
    """A parsed incoming ``POST /v1/chat/completions`` request."""

    def __init__(
        self,
        body: dict[str, object],
        headers: Mapping[str, str] | None = None,
        *,
        api: Api = "chat",
        original: Mapping[str, Any] | None = None,
    ) -> None:
        # ``body`` is in chat-completions form; a Responses or Gemini request was translated,
        # and ``original`` is what the client sent.
        self.body = body
        self.api: Api = api
        self.original: Mapping[str, Any] = body if original is None else original
        # The HTTP headers it came with (lower-cased names), e.g. to see which key was sent.
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        model = body.get("model")
        self.model: str = model if isinstance(model, str) else ""
        raw_messages = body.get("messages")
        self.messages: list[dict[str, Any]] = (
            [m for m in raw_messages if isinstance(m, dict)]
            if isinstance(raw_messages, list)
            else []
        )
        self.stream: bool = body.get("stream") is True

        tools: list[str] = []
        raw_tools = body.get("tools")
        if isinstance(raw_tools, list):
            for tool in raw_tools:
                if isinstance(tool, dict):
                    function = tool.get("function")
                    if isinstance(function, dict) and isinstance(function.get("name"), str):
                        tools.append(function["name"])
        self.tools: list[str] = tools

        system: list[str] = []
        user: list[str] = []
        call_names: dict[str, str] = {}
        tool_results: list[tuple[str, str]] = []
        n_assistant = 0
        for message in self.messages:
            role = message.get("role")
            if role in ("system", "developer"):
                system.append(_content_text(message.get("content")))
            elif role == "user":
                user.append(_content_text(message.get("content")))
            elif role == "assistant":
                n_assistant += 1
                for call in message.get("tool_calls") or ():
                    if isinstance(call, dict):
                        function = call.get("function")
                        if isinstance(function, dict):
                            call_names[str(call.get("id"))] = str(function.get("name", ""))
            elif role == "tool":
                name = call_names.get(str(message.get("tool_call_id")), "")
                tool_results.append((name, _content_text(message.get("content"))))
        self.system: str = "\n\n".join(s for s in system if s)
        self.user: str = "\n\n".join(u for u in user if u)
        self.n_assistant: int = n_assistant
        self.tool_results: list[tuple[str, str]] = tool_results

    @property
    def prompt_chars(self) -> int:
        """Characters of the conversation sent (the messages as JSON), what
        ``ScriptedLLM(context_limit=...)`` measures."""
        return len(json.dumps(self.messages))

    @property
    def last_tool_result(self) -> str | None:
        return self.tool_results[-1][1] if self.tool_results else None

    @property
    def last_message(self) -> dict[str, Any] | None:
        return self.messages[-1] if self.messages else None

    @property
    def last_user(self) -> str | None:
        """Text of the last user message (pydantic-ai puts validation-retry prompts there too)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _content_text(message.get("content"))
        return None

    def tool_schema(self, name: str) -> dict[str, Any] | None:
        """The JSON schema (``parameters``) of the offered tool ``name``."""
        raw_tools = self.body.get("tools")
        if isinstance(raw_tools, list):
            for tool in raw_tools:
                if isinstance(tool, dict):
                    function = tool.get("function")
                    if isinstance(function, dict) and function.get("name") == name:
                        params = function.get("parameters")
                        return params if isinstance(params, dict) else None
        return None

    def __repr__(self) -> str:
        return (
            f"ChatRequest(model={self.model!r}, n_assistant={self.n_assistant}, "
            f"tools={self.tools!r}, last_tool_result={self.last_tool_result!r})"
        )


Script = Callable[[ChatRequest], Reply]


def output_tool_name(request: ChatRequest, output_type: str | None = None) -> str:
    """The pydantic-ai output tool offered in ``request``.

    pydantic-ai names it ``final_result`` for a single output type and ``final_result_<Type>``
    for several; pass ``output_type`` (the type's name) to pick one of several. Raises
    ``LookupError`` if no output tool is offered (e.g. a plain ``str`` output type).
    """
    if output_type is not None:
        wanted = f"{DEFAULT_OUTPUT_TOOL_NAME}_{output_type}"
        if wanted in request.tools:
            return wanted
    if DEFAULT_OUTPUT_TOOL_NAME in request.tools:
        return DEFAULT_OUTPUT_TOOL_NAME
    candidates = [t for t in request.tools if t.startswith(DEFAULT_OUTPUT_TOOL_NAME + "_")]
    if len(candidates) == 1 or (candidates and output_type is None):
        return candidates[0]
    raise LookupError(f"no output tool among offered tools {request.tools!r}")


def _approx_tokens(n_chars: int) -> int:
    return max(1, n_chars // 4)


_ERROR_TYPES: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def _error_body(status: int, message: str) -> dict[str, object]:
    err_type, code = _ERROR_TYPES.get(
        status, ("server_error", "server_error") if status >= 500 else ("api_error", "error")
    )
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


# -- the Gemini API's generateContent, translated to and from a chat completion -------------


def _camel(obj: Mapping[str, Any], name: str) -> Any:
    """``obj[name]`` under its camelCase or snake_case spelling (google-genai sends camelCase)."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return obj.get(name, obj.get(snake))


def _gemini_as_chat(body: Mapping[str, Any], model: str) -> dict[str, object]:
    """A generateContent request as the chat-completions body a script reads: the system
    instruction, user and model turns, function calls and their responses, the tools."""
    messages: list[dict[str, Any]] = []
    system = _camel(body, "systemInstruction")
    if isinstance(system, dict):
        text = "\n".join(str(p.get("text", "")) for p in system.get("parts") or ())
        messages.append({"role": "system", "content": text})
    pending: list[tuple[str, str]] = []  # calls not yet answered: (id, name)
    ids = itertools.count(1)
    for content in body.get("contents") or ():
        parts = [p for p in content.get("parts") or () if isinstance(p, dict)]
        if content.get("role") == "model":
            text = "".join(str(p["text"]) for p in parts if "text" in p)
            calls = []
            for part in parts:
                call = _camel(part, "functionCall")
                if isinstance(call, dict):
                    call_id = str(call.get("id") or f"gemini_{next(ids)}")
                    pending.append((call_id, str(call.get("name"))))
                    arguments = json.dumps(call.get("args") or {})
                    calls.append(
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": call.get("name"), "arguments": arguments},
                        }
                    )
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = calls
            messages.append(message)
            continue
        for part in parts:
            answer = _camel(part, "functionResponse")
            if isinstance(answer, dict):
                name = str(answer.get("name"))
                call_id = answer.get("id") or next((i for i, n in pending if n == name), name)
                pending = [(i, n) for i, n in pending if i != call_id]
                response = answer.get("response")
                value = response.get("return_value", response) if isinstance(response, dict) else ""
                text = value if isinstance(value, str) else json.dumps(value)
                messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
            elif "text" in part:
                messages.append({"role": "user", "content": str(part["text"])})
    tools = []
    for tool in body.get("tools") or ():
        for declaration in _camel(tool, "functionDeclarations") or ():
            parameters = _camel(declaration, "parametersJsonSchema") or _camel(
                declaration, "parameters"
            )
            tools.append(
                {
                    "type": "function",
                    "function": {"name": declaration.get("name"), "parameters": parameters},
                }
            )
    return {"model": model, "messages": messages, "tools": tools}


def _chat_as_gemini(completion: Mapping[str, Any]) -> dict[str, object]:
    message = completion["choices"][0]["message"]
    parts: list[dict[str, object]] = []
    if message.get("content"):
        parts.append({"text": message["content"]})
    for call in message.get("tool_calls") or ():
        function = call["function"]
        parts.append(
            {"functionCall": {"name": function["name"], "args": json.loads(function["arguments"])}}
        )
    usage = completion["usage"]
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": usage["prompt_tokens"],
            "candidatesTokenCount": usage["completion_tokens"],
            "totalTokenCount": usage["total_tokens"],
        },
        "modelVersion": completion["model"],
        "responseId": completion["id"],
    }


_GEMINI_STATUS: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


def _gemini_error(status: int, message: str) -> dict[str, object]:
    name = _GEMINI_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": message, "status": name}}


def _context_length_error(
    prompt_chars: int, limit_chars: int, param: str = "messages"
) -> dict[str, object]:
    """The body OpenAI answers (HTTP 400) for a prompt longer than the model's window."""
    return {
        "error": {
            "message": f"This model's maximum context length is {_approx_tokens(limit_chars)} "
            f"tokens. However, your messages resulted in {_approx_tokens(prompt_chars)} tokens. "
            "Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": param,
            "code": "context_length_exceeded",
        }
    }


class ScriptedLLM:
    """A threaded loopback HTTP server answering chat completions from a script.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        script: Script,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        context_limit: int | None = None,
    ) -> None:
        """``context_limit``: a request whose :attr:`ChatRequest.prompt_chars` exceed it is
        answered, without asking the script, with OpenAI's own 400 for a prompt longer than
        the model's context window (``code: context_length_exceeded``)."""
        self.script = script
        self.context_limit = context_limit
        self.host = host
        self.port = port
        self.requests: list[ChatRequest] = []
        self.received: list[Received] = []
        self.script_errors: list[BaseException] = []
        self.seconds_inside: float = 0.0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def gemini_base_url(self) -> str:
        """E.g. ``http://127.0.0.1:54321/`` -- for a Gemini client (``generateContent``)."""
        if self._server is None:
            raise RuntimeError("ScriptedLLM is not started")
        return f"http://{self.host}:{self.port}/"

    @property
    def responses_url(self) -> str:
        """E.g. ``http://127.0.0.1:54321/v1/responses`` -- the Responses API (the Codex CLI's
        ``model_providers.<id>.base_url`` is :attr:`base_url`: it appends ``/responses``)."""
        return f"{self.base_url}/responses"

    @property
    def base_url(self) -> str:
        """E.g. ``http://127.0.0.1:54321/v1`` -- what ``OPENAI_BASE_URL`` should be set to."""
        if self._server is None:
            raise RuntimeError("ScriptedLLM is not started")
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> None:
        if self._server is not None:
            return
        server = _Server((self.host, self.port), _make_handler(self))
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"scripted-llm:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- bookkeeping -----------------------------------------------------------------------

    def _record(self, request: ChatRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _receive(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def sightings(self, text: str) -> list[Received]:
        """The requests received so far that hold ``text`` anywhere (e.g. a real API key)."""
        if not text:
            raise ValueError("sightings of an empty text: every request holds it")
        with self._lock:
            return [received for received in self.received if received.holds(text)]

    def _record_error(self, error: BaseException) -> None:
        with self._lock:
            self.script_errors.append(error)

    def _add_inside(self, seconds: float) -> None:
        with self._lock:
            self.seconds_inside += seconds

    def _next_call_id(self) -> str:
        with self._lock:
            n = next(self._ids)
        return f"call_{n}_{uuid.uuid4().hex[:12]}"

    # -- response building -----------------------------------------------------------------

    def completion(self, request: ChatRequest, reply: Reply, request_chars: int) -> dict[str, Any]:
        """A ``chat.completion`` object for a successful ``reply``."""
        tool_calls: list[dict[str, Any]] = []
        reply_chars = len(reply.text or "")
        for call in reply.tool_calls:
            arguments = json.dumps(dict(call.args))
            reply_chars += len(call.name) + len(arguments)
            tool_calls.append(
                {
                    "id": self._next_call_id(),
                    "type": "function",
                    "function": {"name": call.name, "arguments": arguments},
                }
            )
        message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        prompt_tokens = _approx_tokens(request_chars)
        completion_tokens = _approx_tokens(reply_chars)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _stream_chunks(completion: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``chat.completion.chunk`` events equivalent to ``completion`` (ending with a usage chunk)."""
    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
    }
    choice = completion["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    yield chunk({"role": "assistant", "content": ""})
    text = message.get("content")
    if text:
        step = 16
        for i in range(0, len(text), step):
            yield chunk({"content": text[i : i + step]})
    for index, call in enumerate(message.get("tool_calls") or ()):
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""},
                    }
                ]
            }
        )
        arguments: str = call["function"]["arguments"]
        step = 24
        for i in range(0, len(arguments), step):
            yield chunk(
                {
                    "tool_calls": [
                        {"index": index, "function": {"arguments": arguments[i : i + step]}}
                    ]
                }
            )
    yield chunk({}, choice["finish_reason"])
    yield {**base, "choices": [], "usage": completion["usage"]}


class _Server(ThreadingHTTPServer):
    """Daemon-threaded, quiet, and able to drop kept-alive connections on stop."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # A response is written in two sends (the headers, then the body). With Nagle's
        # algorithm on, the second waits for the client to acknowledge the first, and the
        # client delays that acknowledgement by up to 40 ms: every request stalled ~40 ms,
        # which no real endpoint does and the benchmarks counted as Errands' own time.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            # shutdown only: the handler thread still owns the socket and closes it itself
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Swallow per-connection errors (e.g. a client hanging up) instead of printing them."""


def _make_handler(llm: ScriptedLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        owner: ClassVar[ScriptedLLM] = llm

    return Handler


class _Handler(BaseHTTPRequestHandler):
    owner: ClassVar[ScriptedLLM]
    protocol_version = "HTTP/1.1"
    server_version = "ScriptedLLM/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    def _send(
        self,
        status: int,
        body: str | bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] = _EMPTY_HEADERS,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_json(
        self, status: int, obj: object, headers: Mapping[str, str] = _EMPTY_HEADERS
    ) -> None:
        self._send(status, json.dumps(obj), headers=headers)

    def _log_received(self, body: bytes) -> None:
        self.owner._receive(
            Received(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body.decode("utf-8", errors="replace"),
            )
        )

    def do_GET(self) -> None:
        self._log_received(b"")
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models") and "anthropic-version" in self.headers:
            model = {"type": "model", "id": "scripted", "display_name": "Scripted"}
            self._send_json(
                200,
                {
                    "data": [{**model, "created_at": "2026-01-01T00:00:00Z"}],
                    "has_more": False,
                    "first_id": "scripted",
                    "last_id": "scripted",
                },
            )
        elif path in ("/v1/models", "/models"):
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": "scripted", "object": "model", "created": 0, "owned_by": "errands"}
                    ],
                },
            )
        else:
            self._send_json(404, _error_body(404, f"no route GET {self.path}"))

    def do_POST(self) -> None:
        started = time.perf_counter()
        try:
            self._handle_post()
        finally:
            self.owner._add_inside(time.perf_counter() - started)

    def _handle_post(self) -> None:
        llm = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self._log_received(raw)
        path = self.path.split("?", 1)[0].rstrip("/")
        gemini_method = path.rsplit(":", 1)[-1] if "/models/" in path else ""
        api: Api
        if path in ("/v1/chat/completions", "/chat/completions"):
            api = "chat"
        elif path in ("/v1/responses", "/responses"):
            api = "responses"
        elif gemini_method in ("generateContent", "streamGenerateContent"):
            api = "gemini"
        elif path in ("/v1/messages", "/messages"):
            api = "anthropic"
        elif path in ("/v1/messages/count_tokens", "/messages/count_tokens"):
            self._send_json(200, count_tokens(json.loads(raw or b"{}")))
            return
        else:
            self._send_json(404, _error_body(404, f"no route POST {self.path}"))
            return
        gemini = api == "gemini"
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise TypeError("request body is not a JSON object")
        except (ValueError, TypeError) as e:
            self._send_json(400, _error_body(400, f"invalid JSON body: {e}"))
            return
        original = body
        if gemini:
            model = path.rsplit("/models/", 1)[1].removesuffix(f":{gemini_method}")
            body = _gemini_as_chat(body, model)
        elif api == "responses":
            body = responses_as_chat(body)
        elif api == "anthropic":
            body = messages_as_chat(body)
        request = ChatRequest(body, dict(self.headers.items()), api=api, original=original)
        llm._record(request)
        if llm.context_limit is not None and request.prompt_chars > llm.context_limit:
            if gemini:
                self._send_json(
                    400,
                    _gemini_error(
                        400,
                        f"The input token count ({_approx_tokens(request.prompt_chars)}) exceeds "
                        "the maximum number of tokens allowed "
                        f"({_approx_tokens(llm.context_limit)}).",
                    ),
                )
            elif api == "anthropic":
                self._send_json(
                    400,
                    anthropic_error(
                        400,
                        f"prompt is too long: {_approx_tokens(request.prompt_chars)} tokens > "
                        f"{_approx_tokens(llm.context_limit)} maximum",
                    ),
                )
            else:
                param = "input" if api == "responses" else "messages"
                self._send_json(
                    400, _context_length_error(request.prompt_chars, llm.context_limit, param)
                )
            return
        try:
            reply = llm.script(request)
            if not isinstance(reply, Reply):
                raise TypeError(f"script returned {type(reply).__name__}, not Reply")
        except Exception as e:
            llm._record_error(e)
            self._send_json(500, _error_body(500, f"script raised {type(e).__name__}: {e}"))
            return
        if reply.delay > 0:
            time.sleep(reply.delay)

        if reply.raw_body is not None:
            self._send(
                reply.status, reply.raw_body, content_type="text/html", headers=reply.headers
            )
            return
        if reply.status != 200:
            message = reply.text or f"scripted HTTP {reply.status}"
            error = (
                _gemini_error if gemini else anthropic_error if api == "anthropic" else _error_body
            )
            self._send_json(reply.status, error(reply.status, message), reply.headers)
            return

        completion = llm.completion(request, reply, len(raw))
        if gemini_method == "streamGenerateContent":
            # One server-sent event carrying the whole answer (what `?alt=sse` streams).
            event = f"data: {json.dumps(_chat_as_gemini(completion))}\r\n\r\n"
            self._send(200, event, content_type="text/event-stream", headers=reply.headers)
            return
        if gemini:
            self._send_json(200, _chat_as_gemini(completion), reply.headers)
            return
        if api == "responses":
            response = chat_as_response(completion, original, completion["created"])
            if request.stream:
                self._send_events(response_events(response), reply.headers)
            else:
                self._send_json(200, response, reply.headers)
            return
        if api == "anthropic":
            answer = chat_as_message(completion)
            if request.stream:
                self._send_events(message_events(answer), reply.headers)
            else:
                self._send_json(200, answer, reply.headers)
            return
        if not request.stream:
            self._send_json(200, completion, reply.headers)
            return
        self._send_stream(completion, reply.headers)

    def _send_events(self, events: Iterator[dict[str, Any]], headers: Mapping[str, str]) -> None:
        """A streamed Responses or Messages answer: named server-sent events, no ``[DONE]``."""
        payload = "".join(
            f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in events
        )
        self._send(200, payload, content_type="text/event-stream", headers=headers)

    def _send_stream(self, completion: dict[str, Any], headers: Mapping[str, str]) -> None:
        payload = (
            "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in _stream_chunks(completion))
            + "data: [DONE]\n\n"
        )
        self._send(200, payload, content_type="text/event-stream", headers=headers)
