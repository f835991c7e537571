"""Driving the real Codex CLI inside bubblewrap, its only way out the egress proxy (with the
real key, outside), to the scripted Responses server on loopback."""

from __future__ import annotations

import json
import os
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errands.accounts.errors import BudgetReached
from errands.egress import EgressConfig, ModelCall, Refusal, Route, Usage, egress_proxy
from errands.errors import Cancelled, ConfigError
from errands.executors import create_executor
from errands.executors.asking import ask_dir, ask_server, take_question
from errands.executors.codex import codex_model
from errands.executors.codex_cli import (
    CodexEndpoint,
    CodexError,
    CodexSession,
    _follow,
    codex_binary,
    codex_event,
    codex_policy,
    parse_report,
    toml_value,
)
from errands.mcp import McpServer
from errands.sandbox import BubblewrapSandbox, SandboxPolicy
from errands.settings import sandbox_env
from errands.testing import ChatRequest, Reply, ScriptedLLM
from tests.executors.claude_support import MCP_SERVER, QUESTION
from tests.executors.codex_support import (
    codex_or_skip,
    codex_phase,
    last_turn_results,
    report,
    shell,
)
from tests.sandbox.conftest import requires_bwrap

REAL_KEY = "sk-real-key-never-in-the-sandbox-4242"
REVISE = "Errands phase: revise."


class Ledger:
    """The proxy's meter: what a job would record, and a cap on the number of calls."""

    def __init__(self, allowed_calls: int = 1000) -> None:
        self.allowed_calls = allowed_calls
        self.calls: list[tuple[ModelCall, Usage | None]] = []
        self.refusals: list[Refusal] = []

    def check_before(self, call: ModelCall) -> None:
        if len(self.calls) >= self.allowed_calls:
            raise BudgetReached(f"Budget reached: {self.allowed_calls} calls are all it has")

    def record(self, call: ModelCall, usage: Usage | None) -> None:
        self.calls.append((call, usage))

    def refused(self, refusal: Refusal) -> None:
        self.refusals.append(refusal)


Events = list[tuple[str, str, dict[str, Any]]]


@contextmanager
def codex_session(
    llm: ScriptedLLM,
    workspace: Path,
    state: Path,
    events: Events,
    ledger: Ledger | None = None,
    **options: Any,
) -> Iterator[CodexSession]:
    """A Codex session in bubblewrap whose model calls go through a running egress proxy."""
    route = Route("openai", llm.base_url, REAL_KEY)
    with egress_proxy(EgressConfig(routes=(route,)), ledger or Ledger()) as proxy:
        policy = SandboxPolicy(workspace=workspace, env=sandbox_env(), egress=proxy.grant)
        options.setdefault("instructions", "Errands phase: execute.")
        with_codex = codex_policy(policy, state)
        # As the codex executor adds it: where Errands' ask_human server writes a question.
        writable = (*with_codex.writable, ask_dir(state))
        yield CodexSession(
            sandbox=BubblewrapSandbox(replace(with_codex, writable=writable)),
            workspace=workspace,
            state_dir=state,
            endpoint=CodexEndpoint(
                proxy.grant.env["OPENAI_BASE_URL"], proxy.grant.env["OPENAI_API_KEY"], "scripted"
            ),
            timeout=120,
            on_event=lambda kind, message, data: events.append((kind, message, data)),
            binary=codex_or_skip(),
            **options,
        )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    (path / "README.md").write_text("# demo\n")
    return path


# -- the real CLI in the real sandbox ------------------------------------------------------


@requires_bwrap
def test_turns_run_inside_bubblewrap_through_the_proxy_and_resume_the_session(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", REAL_KEY)  # the worker's own: must stay outside

    def script(req: ChatRequest) -> Reply:
        done = last_turn_results(req)
        if "second turn" in (req.last_user or ""):
            return (
                report("nothing more", no_change_reason="already done") if done else shell("id -u")
            )
        if not done:
            return shell(
                "printf 'x = 1\\n' > new.py && env && id -u && cat new.py; "
                "curl -sS --max-time 5 https://example.com/; echo other-host=$?; "
                f"curl -sS --max-time 5 http://127.0.0.1:{llm.port}/v1/models; echo loopback=$?"
            )
        return report("added new.py", "x is 1")

    events: Events = []
    ledger = Ledger()
    state = tmp_path / "state"
    with ScriptedLLM(script) as llm:
        with codex_session(llm, workspace, state, events, ledger) as codex:
            first = codex.turn("first turn: add new.py")
            second = codex.turn("second turn: anything left?")
        # The next assignment (a revise round) resumes the session with its own instructions.
        with codex_session(llm, workspace, state, events, instructions=REVISE) as revise:
            third = revise.turn("second turn again")

    assert llm.script_errors == []
    assert (workspace / "new.py").read_text() == "x = 1\n"
    assert first.report.summary == "added new.py"
    assert first.report.decisions == ["x is 1"]
    assert second.report.no_change_reason == "already done"
    # One session: each later turn resumed it, with the history before it.
    assert first.thread_id == second.thread_id == third.thread_id
    assert llm.requests[-1].n_assistant >= 4
    assert any("x = 1" in result for _, result in llm.requests[-1].tool_results)
    assert (llm.requests[-1].last_user or "").startswith(REVISE)
    assert codex_phase(llm.requests[-1]) == "revise"
    assert codex_phase(llm.requests[2]) == "execute"
    # Codex's commands ran inside the sandbox: our uid, our environment (a placeholder key,
    # the forwarder's address), and no way out but the model route.
    [output] = last_turn_results(llm.requests[1])
    assert "\n1000\n" in output
    assert REAL_KEY not in output
    assert "OPENAI_API_KEY=errands-placeholder" in output
    assert "other-host=0" not in output and "loopback=0" not in output
    assert "other-host=" in output and "loopback=" in output
    # The real key went on outside: in every request's header, never in a body.
    assert {r.headers["authorization"] for r in llm.received} == {f"Bearer {REAL_KEY}"}
    assert all(REAL_KEY not in r.body for r in llm.received)
    assert {(r.method, r.path) for r in llm.received} == {("POST", "/v1/responses")}
    # Every call was metered, with the usage the server reported.
    assert len(ledger.calls) == 4
    assert all(usage is not None and usage.input_tokens > 0 for _, usage in ledger.calls)
    assert first.input_tokens + second.input_tokens == sum(
        usage.input_tokens for _, usage in ledger.calls if usage is not None
    )
    # Codex asked the proxy for nothing else (no telemetry, update check, model list), and
    # says its analytics are off in each request's metadata.
    assert ledger.refusals == []
    assert all(
        '"analytics_enabled":false' in r.headers["x-codex-turn-metadata"] for r in llm.received
    )
    kinds = [kind for kind, _, _ in events]
    assert kinds.count("codex.session") == 3
    assert "agent.tool_call" in kinds and "agent.tool_result" in kinds
    call = next(data for kind, _, data in events if kind == "agent.tool_call")
    assert "new.py" in call["args"]["command"]


@requires_bwrap
def test_the_project_mcp_servers_run_inside_the_sandbox(workspace: Path, tmp_path: Path) -> None:
    (workspace / "tools").mkdir()
    (workspace / "tools" / "mcp_probe.py").write_text(MCP_SERVER)
    probe = McpServer("probe", "python3", ("tools/mcp_probe.py",), (("PROBE_MODE", "on"),))

    def script(req: ChatRequest) -> Reply:
        done = last_turn_results(req)
        if not done:
            assert "mcp__probe.where" in req.tools, req.tools
            return Reply.call("mcp__probe.where")
        return report(done[-1])

    events: Events = []
    with (
        ScriptedLLM(script) as llm,
        codex_session(llm, workspace, tmp_path / "state", events, mcp_servers=(probe,)) as codex,
    ):
        turn = codex.turn("where does the probe run?")

    assert llm.script_errors == []
    # Started by Codex inside the sandbox: its hostname, our uid there, the workspace.
    assert f"MCP host=sandbox uid=1000 cwd={workspace}" in turn.report.summary
    calls = [data for kind, _, data in events if kind == "agent.tool_call"]
    results = [data for kind, _, data in events if kind == "agent.tool_result"]
    assert calls[0]["tool"] == "probe.where"
    assert "uid=1000" in results[0]["content"]


@requires_bwrap
def test_codex_asks_the_human_with_errands_ask_human_server(
    workspace: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"

    def script(req: ChatRequest) -> Reply:
        if not last_turn_results(req):
            assert "mcp__errands.ask_human" in req.tools, req.tools
            return Reply.call("mcp__errands.ask_human", **QUESTION)
        return report("Asked; ending the turn.")

    with (
        ScriptedLLM(script) as llm,
        codex_session(llm, workspace, state, [], mcp_servers=(ask_server(state),)) as codex,
    ):
        codex.turn("the task leaves a choice open: ask")

    assert llm.script_errors == []
    asked = take_question(state)
    assert asked is not None and asked.question == QUESTION["question"]
    assert [o.label for o in asked.options] == ["Round", "Exact"]


@requires_bwrap
def test_a_spent_budget_stops_codex_before_the_next_call(workspace: Path, tmp_path: Path) -> None:
    def script(req: ChatRequest) -> Reply:
        return report("done") if last_turn_results(req) else shell("echo working")

    ledger = Ledger(allowed_calls=1)
    with (
        ScriptedLLM(script) as llm,
        codex_session(llm, workspace, tmp_path / "state", [], ledger) as codex,
        pytest.raises(CodexError, match="Budget reached"),
    ):
        codex.turn("do it")

    assert len(llm.requests) == 1  # the second call never left the proxy
    assert {refusal.code for refusal in ledger.refusals} == {"budget_reached"}


@requires_bwrap
def test_a_lost_session_starts_a_new_one(workspace: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "codex").mkdir(parents=True)
    gone = "01a24999-3c07-76d2-a457-ae9fe33bd600"
    (state / "codex" / "session.json").write_text(json.dumps({"thread_id": gone}))
    events: Events = []
    with (
        ScriptedLLM(lambda req: report("fresh")) as llm,
        codex_session(llm, workspace, state, events) as codex,
    ):
        turn = codex.turn("do it")

    assert turn.report.summary == "fresh"
    assert turn.thread_id != gone
    assert any("starting a new one" in message for _, message, _ in events)
    assert json.loads((state / "codex" / "session.json").read_text())["thread_id"] == turn.thread_id


@requires_bwrap
def test_an_error_answer_fails_the_turn_saying_why(workspace: Path, tmp_path: Path) -> None:
    with (
        ScriptedLLM(lambda req: Reply.error(400, "model scripted does not exist")) as llm,
        codex_session(llm, workspace, tmp_path / "state", []) as codex,
        pytest.raises(CodexError, match="model scripted does not exist"),
    ):
        codex.turn("do it")


@requires_bwrap
def test_cancel_stops_codex(workspace: Path, tmp_path: Path) -> None:
    cancel = threading.Event()
    with (
        ScriptedLLM(lambda req: report("late").with_delay(30)) as llm,
        codex_session(llm, workspace, tmp_path / "state", [], cancel=cancel) as codex,
    ):
        threading.Timer(1.0, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(Cancelled):
            codex.turn("do it")
    assert time.monotonic() - started < 20


# -- without the CLI -----------------------------------------------------------------------


def test_a_missing_cli_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="npm install -g @openai/codex"):
        codex_binary()
    with pytest.raises(ConfigError, match="npm install -g @openai/codex"):
        create_executor("codex")


def test_codex_asks_for_the_execute_phase_openai_model() -> None:
    assert codex_model("openai:gpt-5.2-codex") == "gpt-5.2-codex"
    for other in ("anthropic:claude-sonnet-4-5", None, "openai:"):
        with pytest.raises(ConfigError, match="ERRANDS_EXECUTE_MODEL"):
            codex_model(other)


@given(st.text(), st.lists(st.text(), max_size=3), st.dictionaries(st.text(), st.text()))
def test_settings_are_quoted_as_toml_whatever_they_hold(
    text: str, items: list[str], table: dict[str, str]
) -> None:
    value = {"text": text, "items": items, "table": table, "on": True, "retries": 1}
    assert tomllib.loads(f"value = {toml_value(value)}")["value"] == value


def test_the_report_is_read_from_the_final_message() -> None:
    plain = parse_report("  I added the file.  ")
    assert (plain.summary, plain.decisions, plain.no_change_reason) == (
        "I added the file.",
        [],
        None,
    )
    full = parse_report(
        json.dumps({"summary": "s", "decisions": ["a", "b"], "no_change_reason": " done "})
    )
    assert (full.summary, full.decisions, full.no_change_reason) == ("s", ["a", "b"], "done")
    assert parse_report('{"summary": 3}').summary == '{"summary": 3}'


def test_codex_events_map_to_ours() -> None:
    def kind(event: dict[str, Any]) -> str | None:
        mapped = codex_event(event)
        return None if mapped is None else mapped[0]

    command = {"id": "i", "type": "command_execution", "command": "ls", "exit_code": 0}
    assert kind({"type": "thread.started", "thread_id": "t"}) == "codex.session"
    assert kind({"type": "item.started", "item": command}) == "agent.tool_call"
    assert kind({"type": "item.completed", "item": {**command, "aggregated_output": "a"}}) == (
        "agent.tool_result"
    )
    assert kind({"type": "item.completed", "item": {"type": "agent_message", "text": "hi"}}) == (
        "agent.text"
    )
    patch = {"type": "file_change", "changes": [{"path": "a.py", "kind": "add"}]}
    mapped = codex_event({"type": "item.completed", "item": patch})
    assert mapped is not None and mapped[2]["args"]["changes"] == [{"path": "a.py", "kind": "add"}]
    assert kind({"type": "turn.completed", "usage": {"input_tokens": 5}}) == "agent.response"
    assert kind({"type": "turn.failed", "error": {"message": "no"}}) == "codex.error"
    assert kind({"type": "turn.started"}) is None
    assert kind({"type": "item.completed", "item": "not an object"}) is None
    huge = codex_event(
        {"type": "item.completed", "item": {"type": "agent_message", "text": "x" * 10**6}}
    )
    assert huge is not None and len(huge[2]["content"]) < 30_000


# -- what the sandbox wrote is read as data only -------------------------------------------


def read_all(directory: Path, name: str, write: Callable[[], None] | None = None) -> list[Any]:
    done = threading.Event()
    if write is None:
        done.set()
    found: list[Any] = []
    reader = threading.Thread(target=lambda: found.extend(_follow(directory, name, done)))
    reader.start()
    if write is not None:
        write()
        done.set()
    reader.join(timeout=10)
    assert not reader.is_alive()
    return found


def test_the_event_log_is_followed_as_it_grows(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"

    def write() -> None:
        with log.open("w") as out:
            out.write('{"type": "a"}\nnot json\n[1, 2]\n{"type"')
            out.flush()
            time.sleep(0.6)
            out.write(': "b"}\n{"type": "c"}')

    assert read_all(tmp_path, "events.jsonl", write) == [
        {"type": "a"},
        {"type": "b"},
        {"type": "c"},
    ]


def test_a_link_or_fifo_in_place_of_the_event_log_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text('{"type": "item.completed", "secret": "host file"}\n')
    (tmp_path / "events.jsonl").symlink_to(secret)
    assert read_all(tmp_path, "events.jsonl") == []
    os.mkfifo(tmp_path / "fifo.jsonl")
    assert read_all(tmp_path, "fifo.jsonl") == []  # and did not block
