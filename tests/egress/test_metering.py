"""Every model call the proxy forwards is metered from the provider's own usage fields,
streamed or not, for Anthropic Messages, OpenAI Chat Completions and OpenAI Responses; the
real key replaces the placeholder; a stream reaches the client event by event; a meter that
refuses stops the call before the upstream sees it."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

import pytest

from errands.accounts.errors import BudgetReached
from errands.egress import (
    PLACEHOLDER_KEY,
    EgressConfig,
    ModelCall,
    Refusal,
    Route,
    Usage,
    egress_proxy,
)
from errands.egress import proxy as proxy_module
from tests.egress.conftest import (
    ANTHROPIC_KEY,
    ANTHROPIC_USAGE,
    CHAT_USAGE,
    GEMINI_USAGE,
    GOOGLE_KEY,
    OPENAI_KEY,
    RESPONSES_USAGE,
    Edge,
    client_for,
    start_proxy,
)


class Ledger:
    """A meter that writes down what it is told, and refuses once told to."""

    def __init__(self) -> None:
        self.checked: list[ModelCall] = []
        self.recorded: list[tuple[ModelCall, Usage | None]] = []
        self.refusals: list[Refusal] = []
        self.refuse = False

    def check_before(self, call: ModelCall) -> None:
        self.checked.append(call)
        if self.refuse:
            raise BudgetReached("Budget reached: task 7 has spent $1.00 of its $1.00 cap.")

    def record(self, call: ModelCall, usage: Usage | None) -> None:
        self.recorded.append((call, usage))

    def refused(self, refusal: Refusal) -> None:
        self.refusals.append(refusal)


CASES = [
    # (path, request body, expected (input, output), key header, key value)
    (
        "/anthropic/v1/messages?beta=true",
        {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": []},
        (
            ANTHROPIC_USAGE["input_tokens"] + ANTHROPIC_USAGE["cache_read_input_tokens"],
            ANTHROPIC_USAGE["output_tokens"],
        ),
        "x-api-key",
        ANTHROPIC_KEY,
    ),
    (
        "/openai/chat/completions",
        {"model": "gpt-4.1", "messages": []},
        (CHAT_USAGE["prompt_tokens"], CHAT_USAGE["completion_tokens"]),
        "authorization",
        f"Bearer {OPENAI_KEY}",
    ),
    (
        "/openai/responses",
        {"model": "gpt-5", "input": "hi"},
        (RESPONSES_USAGE["input_tokens"], RESPONSES_USAGE["output_tokens"]),
        "authorization",
        f"Bearer {OPENAI_KEY}",
    ),
    (
        "/google/v1beta/models/gemini-2.5-pro:{method}?key=" + PLACEHOLDER_KEY,
        {"model": "gemini-2.5-pro", "contents": []},
        (
            GEMINI_USAGE["promptTokenCount"],
            GEMINI_USAGE["candidatesTokenCount"] + GEMINI_USAGE["thoughtsTokenCount"],
        ),
        "x-goog-api-key",
        GOOGLE_KEY,
    ),
]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("path", "body", "tokens", "header", "key"), CASES, ids=lambda c: "")
def test_each_protocol_is_metered_from_the_providers_usage(
    edge: Edge,
    stream: bool,
    path: str,
    body: dict[str, Any],
    tokens: tuple[int, int],
    header: str,
    key: str,
) -> None:
    expected_model = body["model"]
    meter = Ledger()
    if "{method}" in path:  # Gemini: the path says whether to stream, and which model
        path = path.format(method="streamGenerateContent" if stream else "generateContent")
        path += "&alt=sse" if stream else ""
        body = {"contents": []}
    else:
        body = {**body, "stream": stream}
    with start_proxy(edge, meter) as proxy, client_for(proxy) as client:
        answer = client.post(
            path,
            json=body,
            headers={
                "x-api-key": PLACEHOLDER_KEY,
                "x-goog-api-key": PLACEHOLDER_KEY,
                "authorization": f"Bearer {PLACEHOLDER_KEY}",
            },
        )
        assert answer.status_code == 200, answer.text
        if stream:
            assert answer.headers["content-type"].startswith("text/event-stream")
            assert "data: " in answer.text

    (seen,) = edge.seen
    assert seen.headers[header] == key  # the real key, put there by the proxy
    assert PLACEHOLDER_KEY not in json.dumps(seen.headers) + seen.path
    others = {"authorization", "x-api-key", "x-goog-api-key"} - {header}
    assert not others & {name.lower() for name in seen.headers}
    ((call, usage),) = meter.recorded
    assert meter.checked == [call]
    assert call.model == expected_model and call.stream is stream
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == tokens


def test_a_streamed_chat_completion_is_asked_for_its_usage(edge: Edge) -> None:
    meter = Ledger()
    with start_proxy(edge, meter) as proxy, client_for(proxy) as client:
        client.post(
            "/openai/chat/completions",
            json={"model": "gpt-4.1", "stream": True, "stream_options": {"x": 1}},
        )
    assert edge.seen[0].json()["stream_options"] == {"x": 1, "include_usage": True}


def test_a_gemini_stream_as_one_json_array_is_metered(edge: Edge) -> None:
    """streamGenerateContent without alt=sse answers a JSON array of chunks."""
    meter = Ledger()
    with start_proxy(edge, meter) as proxy, client_for(proxy) as client:
        path = "/google/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        answer = client.post(path, json={"contents": []})
    assert isinstance(answer.json(), list)
    ((call, usage),) = meter.recorded
    assert call.model == "gemini-2.5-flash" and call.stream
    assert usage is not None and usage.input_tokens == GEMINI_USAGE["promptTokenCount"]


def test_a_stream_is_relayed_as_it_arrives(edge: Edge) -> None:
    """The first event reaches the client while the upstream still holds the rest."""
    edge.hold = threading.Event()
    meter = Ledger()
    with start_proxy(edge, meter) as proxy, client_for(proxy) as client:
        body = {"model": "claude-sonnet-4-5", "stream": True, "messages": []}
        with client.stream("POST", "/anthropic/v1/messages", json=body) as answer:
            lines = answer.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            assert "message_start" in first
            assert not meter.recorded  # the call is still open upstream
            edge.hold.set()
            rest = list(lines)
        assert any("message_stop" in line for line in rest)
    ((_, usage),) = meter.recorded
    assert usage is not None and usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]


def test_a_refusing_meter_stops_the_call_before_the_upstream(edge: Edge) -> None:
    meter = Ledger()
    meter.refuse = True
    with start_proxy(edge, meter) as proxy, client_for(proxy) as client:
        answer = client.post(
            "/anthropic/v1/messages", json={"model": "claude-sonnet-4-5", "messages": []}
        )
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "budget_reached" and "Budget reached" in error["message"]
    assert edge.seen == []
    assert meter.recorded == []
    assert [r.code for r in meter.refusals] == ["budget_reached"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/anthropic/api/event_logging/batch"),
        ("GET", "/anthropic/api/hello"),
        ("POST", "/anthropic/v1/messages/batches"),
        ("POST", "/anthropic/v1/files"),
        ("POST", "/openai/files"),
        ("POST", "/openai/v1/chat/completions"),  # the upstream base already ends in /v1
        ("GET", "/openai/responses"),
        ("POST", "/statsig/v1/initialize"),
        ("POST", "/sentry/api/1/envelope/"),
        ("POST", "/google/v1beta/models/gemini-2.5-pro:predict"),
        ("POST", "/google/v1beta/files"),
        ("POST", "/google/v1beta/cachedContents"),
        ("POST", "/google/upload/v1beta/files"),
        ("GET", "/"),
    ],
)
def test_everything_but_the_model_calls_is_refused(edge: Edge, method: str, path: str) -> None:
    meter = Ledger()
    with start_proxy(edge, meter) as proxy, client_for(proxy) as client:
        answer = client.request(method, path, content=b"{}")
    assert answer.status_code == 403
    body = answer.json()
    assert body["error"]["code"] == "not_allowed"
    assert body["refused"].startswith(method)
    assert edge.seen == [] and meter.checked == []


@pytest.mark.parametrize(
    "target",
    [
        "/anthropic/../openai/responses",
        "/openai/models/..",
        "/openai/chat%2Fcompletions",
        "/openai/chat/completions/../../files",
        "/google/v1beta/models/../files:generateContent",
        "http://127.0.0.1:1/openai/responses",
        "evil.example:443",
    ],
)
def test_targets_a_client_would_normalise_are_refused_as_sent(edge: Edge, target: str) -> None:
    with start_proxy(edge) as proxy:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(proxy.socket))
        sock.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        head = sock.recv(65536).decode()
        sock.close()
    assert head.startswith("HTTP/1.1 403"), head
    assert edge.seen == []


def test_a_model_call_without_a_json_body_is_refused(edge: Edge) -> None:
    with start_proxy(edge) as proxy, client_for(proxy) as client:
        answer = client.post("/openai/responses", content=b"not json")
    assert answer.status_code == 400
    assert edge.seen == []


def test_unmetered_reads_pass_with_the_key(edge: Edge) -> None:
    meter = Ledger()
    with start_proxy(edge, meter) as proxy, client_for(proxy) as client:
        assert client.get("/openai/models").status_code == 200
        assert client.get("/anthropic/v1/models").status_code == 200
        assert client.get("/google/v1beta/models?key=x&pageSize=5").status_code == 200
        # A CLI's connectivity check of its base URL is answered by the proxy itself.
        head = client.head("/anthropic")
        assert head.status_code == 200 and head.content == b""
        refused = client.head("/anthropic/api/hello")
        assert refused.status_code == 403 and refused.content == b""
    paths = ["/v1/models", "/v1/models", "/v1beta/models?pageSize=5"]
    assert [s.path for s in edge.seen] == paths
    assert edge.seen[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert edge.seen[2].headers["x-goog-api-key"] == GOOGLE_KEY
    assert meter.checked == [] and meter.recorded == []


def test_the_socket_directory_is_private_and_removed(edge: Edge) -> None:
    with start_proxy(edge) as proxy:
        directory = proxy.directory
        assert directory.stat().st_mode & 0o777 == 0o700
        assert proxy.socket.exists()
    assert not directory.exists()


def test_no_real_key_reaches_a_log(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    """Calls that pass, are refused, or fail upstream, logged at every level: no key."""
    caplog.set_level(logging.DEBUG)
    dead = Route("anthropic", "http://127.0.0.1:9", ANTHROPIC_KEY)  # nothing listens there
    with start_proxy(edge) as proxy, client_for(proxy) as client:
        client.post("/anthropic/v1/messages", json={"model": "claude-sonnet-4-5", "stream": True})
        client.post("/openai/responses", json={"model": "gpt-5", "input": "x"})
        client.post("/google/v1beta/models/g:generateContent?key=x", json={})
        client.post("/anthropic/api/event_logging/batch", json={})
    with (
        egress_proxy(EgressConfig(routes=(dead,))) as proxy,
        client_for(proxy) as client,
    ):
        failed = client.post("/anthropic/v1/messages", json={"model": "claude-sonnet-4-5"})
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "upstream_failed"
    assert ANTHROPIC_KEY not in failed.text
    assert caplog.records  # something was logged
    for secret in (ANTHROPIC_KEY, OPENAI_KEY, GOOGLE_KEY):
        assert secret not in caplog.text


def test_a_sandbox_cannot_hold_connections_without_end(
    edge: Edge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy_module, "MAX_CONNECTIONS", 4)
    with start_proxy(edge) as proxy:

        def connect() -> socket.socket:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(10)
            sock.connect(str(proxy.socket))
            return sock

        def asks(sock: socket.socket) -> bytes:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return sock.recv(100)

        held = [connect() for _ in range(4)]
        assert asks(held[0]).startswith(b"HTTP/1.1 403")  # all four are being served
        assert asks(connect()).startswith(b"HTTP/1.1 503")  # a fifth is refused at once
        held.pop().close()
        time.sleep(0.2)
        assert asks(connect()).startswith(b"HTTP/1.1 403")  # room again
        for sock in held:
            sock.close()
