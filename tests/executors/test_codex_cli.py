"""Driving the real Codex CLI inside bubblewrap against the scripted Responses server.

Until a sandbox has the egress proxy's forwarder, these tests give the sandbox the host's
network (a setup command's grant) so Codex can reach the scripted model on loopback; the
executor tests run it through the proxy."""

from __future__ import annotations

import json
import os
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errands.errors import Cancelled, ConfigError
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
from errands.sandbox import BubblewrapSandbox, CommandResult, SandboxPolicy
from errands.settings import sandbox_env
from errands.testing import ChatRequest, Reply, ScriptedLLM
from tests.executors.codex_support import codex_or_skip, last_turn_results, report, shell
from tests.sandbox.conftest import requires_bwrap

REAL_KEY = "sk-real-key-never-in-the-sandbox-4242"
PLACEHOLDER = "errands-placeholder-key"


class NetworkedSandbox(BubblewrapSandbox):
    """Our bubblewrap sandbox with the host's network on, as for a setup command: the
    stand-in for the egress forwarder these driver tests do without."""

    def run(self, command: str, **options: Any) -> CommandResult:
        return super().run(command, **{**options, "network": True})


Events = list[tuple[str, str, dict[str, Any]]]


def session(
    llm: ScriptedLLM, workspace: Path, state: Path, events: Events, **options: Any
) -> CodexSession:
    policy = SandboxPolicy(workspace=workspace, env=dict(sandbox_env()), network=True)
    return CodexSession(
        sandbox=NetworkedSandbox(codex_policy(policy, state)),
        workspace=workspace,
        state_dir=state,
        endpoint=CodexEndpoint(llm.base_url, PLACEHOLDER, "scripted"),
        instructions="Errands phase: execute.",
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
def test_turns_run_inside_bubblewrap_resume_the_session_and_hold_no_key(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", REAL_KEY)  # the worker's own key: must stay outside

    def script(req: ChatRequest) -> Reply:
        done = last_turn_results(req)
        if "second turn" in (req.last_user or ""):
            return (
                report("nothing more", no_change_reason="already done") if done else shell("id -u")
            )
        if not done:
            return shell("printf 'x = 1\\n' > new.py && env && id -u && cat new.py")
        return report("added new.py", "x is 1")

    events: Events = []
    with ScriptedLLM(script) as llm:
        codex = session(llm, workspace, tmp_path / "state", events)
        first = codex.turn("first turn: add new.py")
        second = codex.turn("second turn: anything left?")

    assert llm.script_errors == []
    assert (workspace / "new.py").read_text() == "x = 1\n"
    assert first.report.summary == "added new.py"
    assert first.report.decisions == ["x is 1"]
    assert second.report.no_change_reason == "already done"
    # One session: the second turn resumed it, with the first turn's history.
    assert second.thread_id == first.thread_id
    last = llm.requests[-1]
    assert last.n_assistant >= 3
    assert any("x = 1" in result for _, result in last.tool_results)
    assert first.input_tokens > 0 and second.input_tokens > 0
    # Codex's commands ran inside the sandbox: our uid there, our scrubbed environment.
    [output, *_] = [r for r in last_turn_results(llm.requests[1])]
    assert "\n1000\n" in output
    assert "CODEX_HOME=" in output
    assert REAL_KEY not in output
    assert f"ERRANDS_MODEL_KEY={PLACEHOLDER}" in output
    # Every request carried the placeholder, none the real key; only the model was called.
    assert llm.sightings(REAL_KEY) == []
    assert {r.headers["authorization"] for r in llm.received} == {f"Bearer {PLACEHOLDER}"}
    assert {(r.method, r.path) for r in llm.received} == {("POST", "/v1/responses")}
    # Telemetry is off (Codex says so in each request's metadata).
    assert all(
        '"analytics_enabled":false' in r.headers["x-codex-turn-metadata"] for r in llm.received
    )
    kinds = [kind for kind, _, _ in events]
    assert kinds.count("codex.session") == 2
    assert "agent.tool_call" in kinds and "agent.tool_result" in kinds
    call = next(data for kind, _, data in events if kind == "agent.tool_call")
    assert "new.py" in call["args"]["command"]


@requires_bwrap
def test_a_lost_session_starts_a_new_one(workspace: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "codex").mkdir(parents=True)
    gone = "01a24999-3c07-76d2-a457-ae9fe33bd600"
    (state / "codex" / "session.json").write_text(json.dumps({"thread_id": gone}))
    events: Events = []
    with ScriptedLLM(lambda req: report("fresh")) as llm:
        turn = session(llm, workspace, state, events).turn("do it")

    assert turn.report.summary == "fresh"
    assert turn.thread_id != gone
    assert any("starting a new one" in message for _, message, _ in events)
    assert json.loads((state / "codex" / "session.json").read_text())["thread_id"] == turn.thread_id


@requires_bwrap
def test_a_refused_model_call_fails_the_turn_saying_why(workspace: Path, tmp_path: Path) -> None:
    with ScriptedLLM(lambda req: Reply.error(403, "task budget reached")) as llm:
        codex = session(llm, workspace, tmp_path / "state", [])
        with pytest.raises(CodexError, match="task budget reached"):
            codex.turn("do it")


@requires_bwrap
def test_cancel_stops_codex(workspace: Path, tmp_path: Path) -> None:
    cancel = threading.Event()
    with ScriptedLLM(lambda req: report("late").with_delay(30)) as llm:
        codex = session(llm, workspace, tmp_path / "state", [], cancel=cancel)
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


@given(st.text())
def test_settings_are_quoted_as_toml_whatever_they_hold(text: str) -> None:
    assert tomllib.loads(f"value = {toml_value(text)}")["value"] == text


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
