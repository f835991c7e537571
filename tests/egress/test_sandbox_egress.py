"""From inside bubblewrap, the egress proxy is the only way out: the model routes work with
the real key injected outside (the sandbox holds a placeholder), and everything else — other
paths, other hosts, a direct IP, the host's loopback ports, a CONNECT to a host not allowed,
DNS — is refused or unreachable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from errands.egress import PLACEHOLDER_KEY, EgressProxy, parse_host
from errands.sandbox import BubblewrapSandbox, CommandResult, SandboxPolicy
from errands.sandbox.bubblewrap import bwrap_problem
from tests.egress.conftest import ANTHROPIC_KEY, GOOGLE_KEY, OPENAI_KEY, Edge, start_proxy

PROBLEM = bwrap_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"bubblewrap: {PROBLEM}")

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@contextmanager
def sandboxed(
    tmp_path: Path, edge: Edge, **config: Any
) -> Iterator[tuple[EgressProxy, BubblewrapSandbox]]:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    with start_proxy(edge, **config) as proxy:
        policy = SandboxPolicy(workspace=workspace, env=ENV, egress=proxy.grant)
        yield proxy, BubblewrapSandbox(policy)


def run(sandbox: BubblewrapSandbox, command: str) -> CommandResult:
    return sandbox.run(command, timeout=60)


def test_a_model_call_from_inside_carries_the_real_key_only_outside(
    tmp_path: Path, edge: Edge
) -> None:
    with sandboxed(tmp_path, edge) as (_, sandbox):
        result = run(
            sandbox,
            "env; cat /proc/self/environ /proc/1/environ | tr '\\0' '\\n'; "
            'curl -sS --max-time 10 -H "x-api-key: $ANTHROPIC_API_KEY" '
            "-H 'content-type: application/json' "
            '-d \'{"model": "claude-sonnet-4-5", "messages": []}\' '
            '"$ANTHROPIC_BASE_URL/v1/messages"; echo; '
            'curl -sS --max-time 10 -H "authorization: Bearer $OPENAI_API_KEY" '
            '-d \'{"model": "gpt-5", "input": "hi"}\' "$OPENAI_BASE_URL/responses"',
        )
    assert result.ok, result.output
    assert f"ANTHROPIC_API_KEY={PLACEHOLDER_KEY}" in result.output
    assert f"OPENAI_API_KEY={PLACEHOLDER_KEY}" in result.output
    assert f"GEMINI_API_KEY={PLACEHOLDER_KEY}" in result.output
    assert "GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:" in result.output
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:" in result.output
    assert '"usage"' in result.output  # both answers came back
    for secret in (ANTHROPIC_KEY, OPENAI_KEY, GOOGLE_KEY):
        assert secret not in result.output
    anthropic, openai = edge.seen
    assert anthropic.path == "/v1/messages" and anthropic.headers["x-api-key"] == ANTHROPIC_KEY
    assert openai.path == "/v1/responses"
    assert openai.headers["authorization"] == f"Bearer {OPENAI_KEY}"


def test_nothing_else_leaves_the_sandbox(tmp_path: Path, edge: Edge) -> None:
    edge_port = edge.url.rsplit(":", 1)[1]
    proxy_url = '"${ANTHROPIC_BASE_URL%/anthropic}"'
    checks = {
        # the proxy answers, and refuses
        "telemetry": '"$ANTHROPIC_BASE_URL/api/event_logging/batch" -d "{}"',
        "statsig": '"${ANTHROPIC_BASE_URL%/anthropic}/statsig/v1/initialize" -d "{}"',
        "absolute": f"-x {proxy_url} http://127.0.0.1:{edge_port}/v1/messages -d '{{}}'",
        "connect": f"-p -x {proxy_url} https://statsig.anthropic.com/",
        "chatgpt": f"-p -x {proxy_url} https://ab.chatgpt.com/",
        "sentry": f"-p -x {proxy_url} https://o1.ingest.sentry.io/",
        "connect_edge": f"-p -x {proxy_url} http://127.0.0.1:{edge_port}/",
        # nothing answers at all
        "host_loopback": f"http://127.0.0.1:{edge_port}/v1/messages -d '{{}}'",
        "direct_ip": "http://1.1.1.1/",
        "by_name": "https://api.anthropic.com/v1/messages",
    }
    script = "; ".join(
        # A refused CONNECT's status is curl's http_connect; any other answer's, http_code.
        f"echo {name}=$(curl -s -o /dev/null -w '%{{http_code}}%{{http_connect}}' "
        f"--max-time 5 {args})"
        for name, args in checks.items()
    )
    with sandboxed(tmp_path, edge) as (proxy, sandbox):
        result = run(sandbox, f"{script}; getent hosts example.com; echo getent=$?")
    output = result.output
    for name in ("telemetry", "statsig", "absolute"):
        assert f"{name}=403000" in output, output
    for name in ("connect", "chatgpt", "sentry", "connect_edge"):
        assert f"{name}=000403" in output, output
    for name in ("host_loopback", "direct_ip", "by_name"):
        assert f"{name}=000000" in output, output
    assert "getent=2" in output
    assert edge.seen == []
    refused = {r.target for r in proxy.refusals}
    assert "CONNECT statsig.anthropic.com:443" in refused
    assert f"CONNECT 127.0.0.1:{edge_port}" in refused


def test_a_tunnel_reaches_only_the_allowed_host(tmp_path: Path, edge: Edge) -> None:
    """Setup commands' way out: CONNECT and plain HTTP through HTTP(S)_PROXY, to the hosts
    allowed only. A loopback host needs the operator's say-so (private_hosts)."""
    edge_host = edge.url.removeprefix("http://")
    allowed = parse_host(edge_host)
    with sandboxed(
        tmp_path, edge, hosts=(allowed, parse_host("127.0.0.1:9")), private_hosts=(allowed,)
    ) as (_, sandbox):
        # The stand-in registry is on loopback, which NO_PROXY sends direct (to the
        # forwarder's base URLs): --noproxy '' makes curl use HTTP_PROXY for it as for any host.
        result = run(
            sandbox,
            "env | grep -i _proxy; curl() { command curl --noproxy '' \"$@\"; }; "
            f"curl -sS --max-time 10 http://{edge_host}/v1/models; echo plain=$?; "
            f"curl -sS --max-time 10 -p http://{edge_host}/v1/models; echo tunnel=$?; "
            "curl -sS --max-time 10 -o /dev/null -w '%{http_code}' http://127.0.0.2:80/; "
            "echo other=$?; "
            "curl -sS --max-time 10 -p -o /dev/null http://127.0.0.1:9/; echo private=$?",
        )
    output = result.output
    assert "plain=0" in output and "tunnel=0" in output, output
    assert output.count('{"data": []}') == 2
    assert "other=0" in output and "403" in output  # answered by the proxy: refused
    assert "private=56" in output  # allowed by the project, but loopback: not without the operator
    assert [s.path for s in edge.seen] == ["/v1/models", "/v1/models"]
    # No key travels on a tunnel.
    assert all("authorization" not in s.headers and "x-api-key" not in s.headers for s in edge.seen)


def test_the_refusal_names_what_and_why(tmp_path: Path, edge: Edge) -> None:
    with sandboxed(tmp_path, edge) as (_, sandbox):
        result = run(sandbox, 'curl -sS "$OPENAI_BASE_URL/files" -d "{}"')
    body = json.loads(result.output)
    assert body["refused"] == "POST /openai/files"
    assert body["error"]["code"] == "not_allowed"
    assert "allowlist" in body["error"]["message"]
