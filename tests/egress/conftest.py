"""A fake provider edge on loopback (the third-party side of the egress proxy): answers
Anthropic Messages, OpenAI Chat Completions and OpenAI Responses with fixed, provider-shaped
bodies and usage, streamed (server-sent events) when the request says ``stream``, and logs
every request it receives with its headers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from errands.egress import EgressConfig, EgressProxy, Meter, Route, egress_proxy

ANTHROPIC_KEY = "sk-ant-real-key-0123456789"
OPENAI_KEY = "sk-openai-real-key-9876543210"
GOOGLE_KEY = "AIza-google-real-key-5555555"

# (input, output) tokens each fake answer reports. Anthropic's input counts cache reads.
ANTHROPIC_USAGE = {"input_tokens": 120, "cache_read_input_tokens": 30, "output_tokens": 42}
CHAT_USAGE = {"prompt_tokens": 200, "completion_tokens": 17, "total_tokens": 217}
RESPONSES_USAGE = {"input_tokens": 300, "output_tokens": 60, "total_tokens": 360}
GEMINI_USAGE = {"promptTokenCount": 400, "candidatesTokenCount": 70, "thoughtsTokenCount": 5}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Edge:
    url: str
    seen: list[Seen] = field(default_factory=list)
    # Set to hold a stream after its first event until the test releases it.
    hold: threading.Event | None = None


def _gemini(path: str, done: bool) -> dict[str, Any]:
    model = path.rpartition("/")[2].partition(":")[0]
    usage = GEMINI_USAGE if done else {"promptTokenCount": GEMINI_USAGE["promptTokenCount"]}
    part = {"content": {"parts": [{"text": "hi"}], "role": "model"}}
    return {"candidates": [part], "modelVersion": model, "usageMetadata": usage}


def _events(path: str, request: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    model = request.get("model", "")
    if ":" in path:
        return [(None, _gemini(path, False)), (None, _gemini(path, True))]
    if path.endswith("/messages"):
        return [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "model": f"{model}-20250929",
                        "role": "assistant",
                        "content": [],
                        "usage": {**ANTHROPIC_USAGE, "output_tokens": 1},
                    },
                },
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
            ),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    if path.endswith("/chat/completions"):
        chunk = {"id": "c1", "model": model, "object": "chat.completion.chunk"}
        events: list[tuple[str | None, dict[str, Any]]] = [
            (None, {**chunk, "choices": [{"index": 0, "delta": {"content": "hi"}}]}),
            (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        ]
        # Like OpenAI: a streamed completion reports usage only when asked to.
        if (request.get("stream_options") or {}).get("include_usage"):
            events.append((None, {**chunk, "choices": [], "usage": CHAT_USAGE}))
        return events
    response = {"id": "resp_1", "model": model, "status": "in_progress", "usage": None}
    return [
        ("response.created", {"type": "response.created", "response": response}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "hi"}),
        (
            "response.completed",
            {
                "type": "response.completed",
                "response": {**response, "status": "completed", "usage": RESPONSES_USAGE},
            },
        ),
    ]


def _body(path: str, request: dict[str, Any]) -> Any:
    model = request.get("model", "")
    if path.endswith(":streamGenerateContent"):  # without alt=sse: one JSON array
        return [_gemini(path, False), _gemini(path, True)]
    if ":" in path:
        return _gemini(path, True)
    if path.endswith("/messages"):
        return {"id": "msg_1", "type": "message", "model": model, "usage": ANTHROPIC_USAGE}
    if path.endswith("/chat/completions"):
        return {"id": "c1", "object": "chat.completion", "model": model, "usage": CHAT_USAGE}
    return {"id": "resp_1", "object": "response", "model": model, "usage": RESPONSES_USAGE}


@pytest.fixture
def edge() -> Iterator[Edge]:
    state = Edge(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(b"")

        def do_POST(self) -> None:
            self._answer(self.rfile.read(int(self.headers.get("content-length", "0"))))

        def _answer(self, body: bytes) -> None:
            path = self.path.partition("?")[0]
            state.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            request = json.loads(body) if body else {}
            calls = ("/messages", "/chat/completions", "/responses", "Content")
            if not path.endswith(calls):
                self._send(200, "application/json", b'{"data": []}')
            elif request.get("stream") or "alt=sse" in self.path:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for number, (name, data) in enumerate(_events(path, request)):
                    event = (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
                    self._chunk(event.encode())
                    if number == 0 and state.hold is not None:
                        state.hold.wait(10)
                if path.endswith("/chat/completions"):
                    self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
            else:
                self._send(200, "application/json", json.dumps(_body(path, request)).encode())

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _send(self, status: int, kind: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()


def model_routes_to(edge: Edge) -> tuple[Route, ...]:
    return (
        Route("anthropic", edge.url, ANTHROPIC_KEY),
        Route("openai", f"{edge.url}/v1", OPENAI_KEY),
        Route("google", edge.url, GOOGLE_KEY),
    )


def start_proxy(edge: Edge, meter: Meter | None = None, **config: Any) -> Any:
    return egress_proxy(EgressConfig(routes=model_routes_to(edge), **config), meter)


def client_for(proxy: EgressProxy) -> httpx.Client:
    """A client on the host talking to the proxy's socket, as the forwarder does."""
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(proxy.socket)),
        base_url=f"http://127.0.0.1:{proxy.port}",
        timeout=20,
    )


def socket_dir(proxy: EgressProxy) -> Path:
    return proxy.directory
