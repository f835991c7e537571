"""Driving the real Codex CLI (``codex exec --json``) inside our sandbox.

Codex runs as one sandboxed command per turn: the whole CLI, and every command it starts,
inside the bubblewrap sandbox the native loop's ``run_command`` uses. Its own sandbox
(bubblewrap, landlock/seccomp) is off (``--dangerously-bypass-approvals-and-sandbox``,
``sandbox_mode = "danger-full-access"``, approvals ``never``): it cannot nest inside ours,
and ours is the confinement; the project's MCP servers are its children there too. It
reaches its model only at the ``base_url`` it is given (the egress proxy's forwarder inside
the sandbox), sending a placeholder key; telemetry, update checks, web search and the hosted
tools are off.

What lives where, per task (``state_dir`` on the host):

- ``codex/home/`` -- ``CODEX_HOME``: Codex's sessions and its SQLite state, bound writable
  into the sandbox so a later turn, fix attempt or subtask resumes the same session
  (``codex exec resume <id>``). It never holds a secret; its config file is never read
  (``--ignore-user-config``: every setting is on the command line). Whatever is in it was
  written inside the sandbox, so the host reads from it only the turn's event log, and only
  as a capped regular file (never a link or a FIFO).
- ``codex/turn/`` -- the prompt and the report's JSON schema, written by the host and bound
  read-only.
- ``codex/session.json`` -- the session id and its token totals, kept by the host only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from errands.errors import Cancelled, ConfigError, LLMError
from errands.mcp import McpServer
from errands.sandbox import Sandbox, SandboxPolicy
from errands.sandbox.base import CommandResult

__all__ = [
    "CODEX_INSTALL",
    "CodexEndpoint",
    "CodexError",
    "CodexReport",
    "CodexSession",
    "CodexTurn",
    "codex_binary",
    "codex_event",
    "codex_policy",
]

CODEX_INSTALL = "npm install -g @openai/codex"
PROVIDER_ID = "errands"  # the model provider the command line defines
KEY_VARIABLE = "ERRANDS_MODEL_KEY"  # the environment variable Codex reads its key from
EVENTS_NAME = "events.jsonl"  # in CODEX_HOME: the turn's --json output
MAX_EVENT_LOG = 64 * 1024 * 1024  # bytes of event log read per turn, at most
MAX_EVENT_CHARS = 20_000  # characters of one event's text kept in our event stream
POLL_SECONDS = 0.25

_THREAD_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

# Off, whatever Codex's defaults become: what would phone home, update itself, or offer the
# model tools that act outside the workspace (hosted search, image generation, sub-agents,
# apps and plugins from OpenAI's servers).
_SETTINGS: Mapping[str, object] = {
    "approval_policy": "never",
    "sandbox_mode": "danger-full-access",
    "check_for_update_on_startup": False,
    "web_search": "disabled",
    "analytics.enabled": False,
    "feedback.enabled": False,
    "otel.exporter": "none",
    "otel.trace_exporter": "none",
    "otel.metrics_exporter": "none",
    "otel.log_user_prompt": False,
    "agents.enabled": False,
    "features.apps": False,
    "features.plugins": False,
    "features.image_generation": False,
    "features.computer_use": False,
    "features.browser_use": False,
    "features.memories": False,
    "features.goals": False,
}

REPORT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "decisions": {"type": "array", "items": {"type": "string"}},
        "no_change_reason": {"type": ["string", "null"]},
    },
    "required": ["summary", "decisions", "no_change_reason"],
    "additionalProperties": False,
}

CODEX_NOTE = """You are working through the Codex CLI for Errands. Where these instructions name
Errands' tools, use yours: read and search with shell commands, edit with apply_patch (or
shell commands), run tests with shell commands. Your commands run in a sandbox with no network.
Your final message is your report, "final_result": JSON with "summary", "decisions" (a list)
and "no_change_reason" (null unless you changed nothing on purpose)."""


class CodexError(LLMError):
    """The Codex CLI failed a turn: it exited with an error, or its model did."""

    code = "codex_error"


def codex_binary() -> str:
    """The ``codex`` on PATH, or a ConfigError saying how to install it."""
    path = shutil.which("codex")
    if path is None:
        raise ConfigError(
            f"The codex executor needs the Codex CLI on PATH: install it with `{CODEX_INSTALL}` "
            "(Node.js 18 or newer), or choose another executor."
        )
    return path


@dataclass(frozen=True)
class CodexEndpoint:
    """Where Codex, inside the sandbox, sends its model calls, and what it sends."""

    base_url: str  # e.g. http://127.0.0.1:PORT/v1 (Codex appends /responses)
    placeholder_key: str  # never a real key: the proxy swaps in the real one
    model: str  # the model name Codex asks for


@dataclass(frozen=True)
class CodexReport:
    summary: str
    decisions: list[str] = field(default_factory=list)
    no_change_reason: str | None = None


@dataclass(frozen=True)
class CodexTurn:
    """What one ``codex exec`` did."""

    thread_id: str | None
    report: CodexReport
    final_message: str
    requests: int  # model calls the turn made (turn.completed usage gives no count: estimated)
    input_tokens: int
    output_tokens: int
    duration: float


def toml_value(value: object) -> str:
    """``value`` as a TOML literal for ``codex -c key=value``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = []
        for char in value:
            if char in '"\\':
                escaped.append("\\" + char)
            elif char == "\n":
                escaped.append("\\n")
            elif ord(char) < 0x20 or ord(char) == 0x7F:
                escaped.append(f"\\u{ord(char):04x}")
            else:
                escaped.append(char)
        return '"' + "".join(escaped) + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        # Keys quoted too: an environment variable's name is not always a bare TOML key.
        pairs = (f"{toml_value(str(key))} = {toml_value(item)}" for key, item in value.items())
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(f"no TOML literal for {type(value).__name__}")


def mcp_settings(servers: Sequence[McpServer]) -> dict[str, object]:
    """The project's MCP servers as Codex settings: each a stdio server Codex starts as its
    own child, inside the sandbox."""
    return {
        f"mcp_servers.{server.name}": {
            "command": server.command,
            "args": list(server.args),
            "env": dict(server.env),
        }
        for server in servers
    }


def codex_policy(base: SandboxPolicy, state_dir: Path) -> SandboxPolicy:
    """``base`` plus what Codex needs: its home writable, its turn inputs read-only."""
    home, inputs = _dirs(state_dir)
    return replace(
        base,
        writable=(*base.writable, home),
        readable=(*base.readable, inputs),
    )


def _dirs(state_dir: Path) -> tuple[Path, Path]:
    root = state_dir / "codex"
    return root / "home", root / "turn"


class CodexSession:
    """One conversation with Codex for a task: each :meth:`turn` runs ``codex exec`` (the
    first) or ``codex exec resume <id>`` (later ones, also in later jobs on this machine),
    inside ``sandbox``, and returns its report.

    ``sandbox`` must be built from :func:`codex_policy` over the same ``state_dir``.
    ``on_event`` gets each of Codex's events, mapped by :func:`codex_event`, while it runs.
    """

    def __init__(
        self,
        *,
        sandbox: Sandbox,
        workspace: Path,
        state_dir: Path,
        endpoint: CodexEndpoint,
        instructions: str,
        timeout: float,
        cancel: threading.Event | None = None,
        on_event: Callable[[str, str, dict[str, Any]], None] | None = None,
        binary: str = "codex",
        agent: str = "codex",
        mcp_servers: Sequence[McpServer] = (),
    ) -> None:
        self.sandbox = sandbox
        self.workspace = workspace
        self.endpoint = endpoint
        self.instructions = instructions
        self.timeout = timeout
        self.cancel = cancel
        self.on_event = on_event
        self.binary = binary
        self.agent = agent  # names the events, e.g. "subtask-2"
        self.mcp_servers = tuple(mcp_servers)
        self.home, self.inputs = _dirs(state_dir)
        self.session_file = state_dir / "codex" / "session.json"
        self.turns = 0  # turns this assignment has had
        for directory in (self.home, self.inputs):
            directory.mkdir(parents=True, exist_ok=True)

    # -- the host-side session record ----------------------------------------------------

    def _saved(self) -> tuple[str | None, int, int]:
        """(thread id, input tokens, output tokens so far) of this task's Codex session."""
        try:
            saved = json.loads(self.session_file.read_text())
            thread = saved.get("thread_id")
            if isinstance(thread, str) and _THREAD_ID.match(thread):
                return thread, int(saved.get("input_tokens", 0)), int(saved.get("output_tokens", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        return None, 0, 0

    def _save(self, thread_id: str, input_tokens: int, output_tokens: int) -> None:
        record = {
            "thread_id": thread_id,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }
        temporary = self.session_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        temporary.replace(self.session_file)

    def forget(self) -> None:
        """Start the next turn in a fresh Codex session."""
        self.session_file.unlink(missing_ok=True)

    # -- one turn ------------------------------------------------------------------------

    def command(self, thread_id: str | None) -> str:
        """The shell command of one turn (run by ``bash -c`` inside the sandbox)."""
        provider = f"model_providers.{PROVIDER_ID}"
        settings: dict[str, object] = {
            "model": self.endpoint.model,
            "model_provider": PROVIDER_ID,
            f"{provider}.name": "Errands egress",
            f"{provider}.base_url": self.endpoint.base_url,
            f"{provider}.env_key": KEY_VARIABLE,
            f"{provider}.wire_api": "responses",
            # One retry of a dropped call, no more: the proxy refuses a call past a budget or
            # off its allowlist again, and the turn should fail saying so, not back off.
            f"{provider}.request_max_retries": 1,
            f"{provider}.stream_max_retries": 1,
            **_SETTINGS,
            **mcp_settings(self.mcp_servers),
            "developer_instructions": f"{self.instructions}\n\n{CODEX_NOTE}",
        }
        argv = [self.binary, "exec", "--json", "--ignore-user-config", "--ignore-rules"]
        # Codex's own name for "already sandboxed outside": no approvals asked of anyone (an
        # MCP tool's call included), none of its own sandboxing.
        argv += ["--dangerously-bypass-approvals-and-sandbox"]
        argv += ["--skip-git-repo-check", "--color", "never"]
        for key, value in settings.items():
            argv += ["-c", f"{key}={toml_value(value)}"]
        argv += ["--output-schema", str(self.inputs / "schema.json")]
        if thread_id is not None:
            argv += ["resume", thread_id]
        argv += ["-"]  # the prompt: from stdin
        variables = {
            "CODEX_HOME": str(self.home),
            KEY_VARIABLE: self.endpoint.placeholder_key,
            "NO_COLOR": "1",
        }
        assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items())
        prompt = shlex.quote(str(self.inputs / "prompt.md"))
        events = shlex.quote(str(self.home / EVENTS_NAME))
        return (
            f"cd {shlex.quote(str(self.workspace))} && "
            f"env {assignments} {shlex.join(argv)} < {prompt} > {events}"
        )

    def turn(self, prompt: str) -> CodexTurn:
        """Run one turn with ``prompt``; resumes the task's session when there is one."""
        thread_id, seen_in, seen_out = self._saved()
        (self.inputs / "schema.json").write_text(json.dumps(REPORT_SCHEMA))
        self._write_prompt(prompt, resumed=thread_id is not None)
        _remove(self.home, EVENTS_NAME)
        result, events = self._run(thread_id)
        if thread_id is not None and _unknown_thread(result, events):
            # The session is gone (a fresh machine, a cleared state): start a new one.
            self._event("codex.session", "Codex session not found; starting a new one", {})
            thread_id, seen_in, seen_out = None, 0, 0
            self.forget()
            self._write_prompt(prompt, resumed=False)
            _remove(self.home, EVENTS_NAME)
            result, events = self._run(None)
        self.turns += 1
        return self._finish(result, events, thread_id, seen_in, seen_out)

    def _write_prompt(self, prompt: str, *, resumed: bool) -> None:
        """A resumed session keeps the developer instructions it started with (Codex applies
        ``developer_instructions`` only to a new session): the first turn of an assignment in
        a resumed session carries this assignment's instructions (a revise round's, say) at
        the head of its prompt."""
        if resumed and self.turns == 0:
            prompt = f"{self.instructions}\n\n{CODEX_NOTE}\n\n{prompt}"
        (self.inputs / "prompt.md").write_text(prompt)

    def _run(self, thread_id: str | None) -> tuple[CommandResult, list[dict[str, Any]]]:
        events: list[dict[str, Any]] = []
        done = threading.Event()

        def follow() -> None:
            for event in _follow(self.home, EVENTS_NAME, done):
                events.append(event)
                mapped = codex_event(event, self.agent)
                if mapped is not None:
                    self._event(*mapped)

        reader = threading.Thread(target=follow, name="codex-events", daemon=True)
        reader.start()
        try:
            result = self.sandbox.run(
                self.command(thread_id), timeout=self.timeout, cancel=self.cancel
            )
        finally:
            done.set()
            reader.join(timeout=30)
        return result, events

    def _finish(
        self,
        result: CommandResult,
        events: list[dict[str, Any]],
        resumed: str | None,
        seen_in: int,
        seen_out: int,
    ) -> CodexTurn:
        if result.cancelled:
            raise Cancelled("the Codex turn was cancelled")
        thread_id = resumed
        final = ""
        totals: tuple[int, int] | None = None
        failure: str | None = None
        last_error: str | None = None
        calls = 0
        for event in events:
            kind = event.get("type")
            raw_item = event.get("item")
            item: dict[str, Any] = raw_item if isinstance(raw_item, dict) else {}
            if kind == "thread.started" and isinstance(event.get("thread_id"), str):
                thread_id = event["thread_id"]
            elif kind == "turn.completed":
                totals = _usage(event.get("usage"))
            elif kind == "turn.failed":
                failure = _message(event.get("error")) or "the turn failed"
            elif kind == "error":  # also a retry it then recovered from: a reason, not a failure
                last_error = _message(event) or last_error
            elif kind == "item.completed" and item.get("type") == "agent_message":
                final = str(item.get("text") or "")
                calls += 1
            elif kind == "item.started" and item.get("type") in _TOOL_ITEMS:
                calls += 1
        if result.timed_out:
            raise CodexError(f"Codex did not finish within {self.timeout:.0f} s")
        if failure is not None or result.exit_code != 0 or totals is None:
            reason = failure or last_error or _tail(result.output) or result.describe()
            raise CodexError(f"Codex failed ({result.describe()}): {reason}")
        if thread_id is None or not _THREAD_ID.match(thread_id):
            raise CodexError("Codex did not say which session it ran")
        total_in, total_out = totals
        # Codex reports the session's running totals; a resumed session counts on from the
        # last turn (and if its totals ever restart, the turn's own figures are the totals).
        turn_in = total_in - seen_in if thread_id == resumed and total_in >= seen_in else total_in
        turn_out = (
            total_out - seen_out if thread_id == resumed and total_out >= seen_out else total_out
        )
        self._save(thread_id, total_in, total_out)
        return CodexTurn(
            thread_id=thread_id,
            report=parse_report(final),
            final_message=final,
            requests=max(1, calls),
            input_tokens=turn_in,
            output_tokens=turn_out,
            duration=result.duration,
        )

    def _event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(kind, message, data)


_TOOL_ITEMS = ("command_execution", "file_change", "mcp_tool_call", "web_search")


def parse_report(text: str) -> CodexReport:
    """The report in Codex's final message: JSON per :data:`REPORT_SCHEMA`; any other text
    is taken as the summary."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("summary"), str):
        return CodexReport(summary=text.strip())
    decisions = data.get("decisions")
    reason = data.get("no_change_reason")
    return CodexReport(
        summary=data["summary"].strip(),
        decisions=[str(d) for d in decisions] if isinstance(decisions, list) else [],
        no_change_reason=reason.strip() or None if isinstance(reason, str) else None,
    )


def _usage(value: object) -> tuple[int, int]:
    if not isinstance(value, dict):
        return 0, 0

    def number(name: str) -> int:
        raw = value.get(name)
        return raw if isinstance(raw, int) and raw >= 0 else 0

    return number("input_tokens"), number("output_tokens")


def _message(value: object) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return _cut(value["message"], 2_000)
    return None


def _tail(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return _cut("\n".join(lines[-5:]), 2_000)


def _cut(text: str, limit: int = MAX_EVENT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"


def _unknown_thread(result: CommandResult, events: list[dict[str, Any]]) -> bool:
    """Whether ``codex exec resume`` failed because it has no such session."""
    if result.ok or any(event.get("type") == "turn.started" for event in events):
        return False
    text = (result.output + " ".join(str(_message(e)) for e in events)).lower()
    return "no conversation" in text or "not found" in text or "no rollout" in text


def codex_event(
    event: Mapping[str, Any], agent: str = "codex"
) -> tuple[str, str, dict[str, Any]] | None:
    """One of Codex's ``--json`` events as one of ours: (kind, message, data), the kinds the
    native loop uses where they mean the same; None for what says nothing new."""
    kind = event.get("type")
    item = event.get("item")
    if kind == "thread.started":
        thread = str(event.get("thread_id"))
        return "codex.session", f"{agent}: session {thread}", {"thread_id": thread}
    if kind == "turn.completed":
        total_in, total_out = _usage(event.get("usage"))
        return (
            "agent.response",
            f"{agent}: turn done ({total_in} in / {total_out} out tokens in this session)",
            {
                "agent": agent,
                "session_input_tokens": total_in,
                "session_output_tokens": total_out,
            },
        )
    if kind in ("turn.failed", "error"):
        message = _message(event.get("error") if kind == "turn.failed" else event) or str(kind)
        return "codex.error", f"{agent}: {message[:200]}", {"agent": agent, "content": message}
    if not isinstance(item, dict):
        return None
    item_type = item.get("type")
    if item_type == "mcp_tool_call" and kind in ("item.started", "item.completed"):
        return _mcp_event(kind, item, agent)
    if kind == "item.started" and item_type == "command_execution":
        command = _cut(str(item.get("command", "")), 2_000)
        return (
            "agent.tool_call",
            f"{agent}: run {command[:160]}",
            {"agent": agent, "tool": "command", "args": {"command": command}},
        )
    if kind != "item.completed":
        return None
    if item_type == "command_execution":
        output = _cut(str(item.get("aggregated_output") or ""))
        code = item.get("exit_code")
        return (
            "agent.tool_result",
            f"{agent}: command exited {code} ({len(output)} characters of output)",
            {"agent": agent, "tool": "command", "exit_code": code, "content": output},
        )
    if item_type == "agent_message":
        text = _cut(str(item.get("text") or ""))
        return "agent.text", f"{agent}: {text[:200]}", {"agent": agent, "content": text}
    if item_type == "reasoning":
        text = _cut(str(item.get("text") or ""))
        return "agent.reasoning", f"{agent} thinks: {text[:200]}", {"agent": agent, "content": text}
    if item_type == "file_change":
        changes = [
            {"path": str(change.get("path")), "kind": str(change.get("kind"))}
            for change in item.get("changes") or ()
            if isinstance(change, dict)
        ][:200]
        shown = ", ".join(f"{c['kind']} {c['path']}" for c in changes[:5])
        return (
            "agent.tool_call",
            f"{agent}: patch {shown}",
            {"agent": agent, "tool": "apply_patch", "args": {"changes": changes}},
        )
    if item_type == "todo_list":
        todos = [
            {"text": _cut(str(t.get("text")), 500), "completed": bool(t.get("completed"))}
            for t in item.get("items") or ()
            if isinstance(t, dict)
        ][:100]
        return (
            "codex.plan",
            f"{agent}: plan of {len(todos)} steps",
            {"agent": agent, "items": todos},
        )
    if item_type == "error":
        message = _cut(str(item.get("message") or ""), 2_000)
        return "codex.warning", f"{agent}: {message[:200]}", {"agent": agent, "content": message}
    if item_type == "web_search":
        return "agent.tool_call", f"{agent}: web_search", {"agent": agent, "tool": "web_search"}
    return None


def _mcp_event(
    kind: object, item: Mapping[str, Any], agent: str
) -> tuple[str, str, dict[str, Any]]:
    """A call of an MCP server's tool: started, then its result (or error)."""
    tool = f"{item.get('server')}.{item.get('tool')}"
    if kind == "item.started":
        raw = item.get("arguments")
        args: dict[str, Any] = raw if isinstance(raw, dict) else {}
        shown = json.dumps(args, default=str)
        if len(shown) > 2_000:
            args = {"truncated": _cut(shown, 2_000)}
        return (
            "agent.tool_call",
            f"{agent}: {tool}({shown[:160]})",
            {"agent": agent, "tool": tool, "args": args},
        )
    raw_result = item.get("result")
    result: dict[str, Any] = raw_result if isinstance(raw_result, dict) else {}
    raw_parts = result.get("content")
    parts: list[Any] = raw_parts if isinstance(raw_parts, list) else []
    text = "\n".join(str(p.get("text")) for p in parts if isinstance(p, dict) and "text" in p)
    text = _cut(text or _message(item.get("error")) or "")
    return (
        "agent.tool_result",
        f"{agent}: {tool} returned {len(text)} characters",
        {"agent": agent, "tool": tool, "content": text},
    )


# -- reading what the sandbox wrote --------------------------------------------------------


def _remove(directory: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _open_regular(directory: Path, name: str) -> int | None:
    """A read descriptor on ``directory/name`` if it is a regular file (never following a
    link, never blocking on a FIFO), else None."""
    try:
        fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _follow(directory: Path, name: str, done: threading.Event) -> Iterator[dict[str, Any]]:
    """The JSON objects of ``directory/name``, one a line, as the sandbox appends them, until
    ``done`` is set and the rest is read; at most :data:`MAX_EVENT_LOG` bytes."""
    fd: int | None = None
    buffer = b""
    read = 0
    try:
        while True:
            finished = done.is_set()
            if fd is None:
                fd = _open_regular(directory, name)
            if fd is not None:
                while read < MAX_EVENT_LOG:
                    chunk = os.read(fd, min(1 << 16, MAX_EVENT_LOG - read))
                    if not chunk:
                        break
                    read += len(chunk)
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        event = _parse(line)
                        if event is not None:
                            yield event
            if finished:
                event = _parse(buffer)
                if event is not None:
                    yield event
                return
            time.sleep(POLL_SECONDS)
    finally:
        if fd is not None:
            os.close(fd)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
