"""Every model call the proxy forwards is metered from the provider's own usage fields,
streamed or not, for Anthropic Messages, OpenAI Chat Completions and OpenAI Responses; the
real key replaces the placeholder; a stream reaches the client event by event; a meter that
refuses stops the call before the upstream sees it."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import pytest

from errands.accounts.errors import BudgetReached
from errands.egress import PLACEHOLDER_KEY, ModelCall, Refusal, Usage
from tests.egress.conftest import (
    ANTHROPIC_KEY,
    ANTHROPIC_USAGE,
    CHAT_USAGE,
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
    meter = Ledger()
    with start_proxy(edge, meter) as proxy, client_for(proxy) as client:
        answer = client.post(
            path,
            json={**body, "stream": stream},
            headers={
                "x-api-key": PLACEHOLDER_KEY,
                "authorization": f"Bearer {PLACEHOLDER_KEY}",
            },
        )
        assert answer.status_code == 200, answer.text
        if stream:
            assert answer.headers["content-type"].startswith("text/event-stream")
            assert "data: " in answer.text

    (seen,) = edge.seen
    assert seen.headers[header] == key  # the real key, put there by the proxy
    assert PLACEHOLDER_KEY not in json.dumps(seen.headers)
    other = "authorization" if header == "x-api-key" else "x-api-key"
    assert other not in {name.lower() for name in seen.headers}
    ((call, usage),) = meter.recorded
    assert meter.checked == [call]
    assert call.model == body["model"] and call.stream is stream
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
    assert [s.path for s in edge.seen] == ["/v1/models", "/v1/models"]
    assert edge.seen[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert meter.checked == [] and meter.recorded == []


def test_the_socket_directory_is_private_and_removed(edge: Edge) -> None:
    with start_proxy(edge) as proxy:
        directory = proxy.directory
        assert directory.stat().st_mode & 0o777 == 0o700
        assert proxy.socket.exists()
    assert not directory.exists()
