"""The claude-code executor: the real Claude Code CLI types the code, inside the sandbox.

Each turn is one ``claude -p --output-format stream-json`` run inside bubblewrap (the same
work sandbox as ``run_command``: the workspace writable, no network), whose only way out is
the egress proxy (``Workbench.egress``): the CLI sees ``ANTHROPIC_BASE_URL`` pointing at the
proxy's endpoint inside the sandbox and a placeholder key; the proxy injects the real key,
meters the call and checks budgets first.

One Claude Code session per task: the first turn starts it with ``--session-id``, every later
turn (the "nothing changed" question, each verify failure, the next subtask, a revise round)
``--resume``s it. Its state (``CLAUDE_CONFIG_DIR``: transcripts, settings) lives in the
task's state directory, bound writable into the sandbox and never holding a secret. The
session id is kept beside it on the host, where the sandbox cannot write.

The report comes through ``--json-schema``: Claude Code offers the model a StructuredOutput
tool with Errands' SubtaskReport schema and returns its input as ``structured_output``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from errands.agent.loop import QuestionAsked
from errands.agent.schemas import SubtaskReport
from errands.errors import AgentOutputError, ConfigError, LLMError, LLMUnavailable
from errands.executors.asking import ask_dir, ask_server, take_question
from errands.executors.base import Assignment, ExecutorReport, Usage, Workbench
from errands.mcp import claude_mcp_config
from errands.sandbox import create_sandbox

INSTALL = "npm install -g @anthropic-ai/claude-code"
NAME = "claude-code"

# Claude Code's own traffic besides model calls (telemetry, error reports, auto-update,
# release notes…) is turned off; were it attempted, the egress proxy refuses it anyway.
QUIET = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
}
# Tools that would reach the network past the model, or leave the work tree's flow.
DISALLOWED_TOOLS = ("WebFetch", "WebSearch", "EnterWorktree", "ExitWorktree", "RemoteTrigger")

TOOLS_NOTE = """In this session your tools are Claude Code's own: where these instructions name
edit_file or write_file use Edit or Write, for run_command use Bash, and instead of final_result
give your report through the StructuredOutput tool (summary, decisions, no_change_reason). Your
commands run in a sandbox without network access."""


def claude_path() -> str:
    path = shutil.which("claude")
    if path is None:
        raise ConfigError(
            f"The {NAME} executor needs the Claude Code CLI (`claude`) on the worker's PATH: "
            f"install it with `{INSTALL}`, or choose another executor (ERRANDS_EXECUTOR, "
            "errands project set P --executor native)."
        )
    return path


def _report_schema() -> str:
    return json.dumps(SubtaskReport.model_json_schema())


class ClaudeCodeSession:
    def __init__(self, bench: Workbench, assignment: Assignment, claude: str) -> None:
        if bench.egress is None:
            raise ConfigError(
                f"The {NAME} executor runs Claude Code inside the sandbox, whose only way to "
                "its model is the egress proxy, and none is configured for this job."
            )
        self.egress = bench.egress
        self.bench = bench
        self.assignment = assignment
        self.claude = claude
        root = bench.state_dir / NAME
        self.home = root / "home"  # CLAUDE_CONFIG_DIR: writable by the agent
        self.inbox = root / "in"  # prompts, written here and read-only inside
        self.session_file = root / "session-id"  # host only: the sandbox cannot write it
        for path in (self.home, self.inbox):
            path.mkdir(parents=True, exist_ok=True)
        self.turns = 0
        # The execute phase's model when it is Anthropic's; else Claude Code's own default.
        provider, _, name = (bench.model or "").partition(":")
        self.model = name if provider == "anthropic" and name else None

    def turn(self, prompt: str) -> ExecutorReport:
        self.turns += 1
        bench = self.bench
        prompt_file = self.inbox / f"{self.assignment.name}-{self.turns}.txt"
        prompt_file.write_text(prompt, encoding="utf-8")
        system_file = self.inbox / "system.txt"
        system_file.write_text(f"{self.assignment.instructions}\n\n{TOOLS_NOTE}", encoding="utf-8")
        # The project's MCP servers and Errands' ask_human, and only those (not a .mcp.json
        # the repository carries): Claude Code starts them as its children, in the sandbox.
        servers = (*bench.mcp_servers, ask_server(bench.state_dir))
        mcp_file = self.inbox / "mcp.json"
        mcp_file.write_text(json.dumps(claude_mcp_config(servers)), encoding="utf-8")
        endpoint = self.egress("anthropic")
        policy = endpoint.sandbox.policy  # the work sandbox's, with the egress grant
        env = {
            **policy.env,
            **QUIET,
            "CLAUDE_CONFIG_DIR": str(self.home),
            "ANTHROPIC_BASE_URL": endpoint.base_url,
            "ANTHROPIC_API_KEY": endpoint.placeholder_key,
        }
        if self.model:
            # Its small fast model too, so that every call names a model with a price.
            env["ANTHROPIC_SMALL_FAST_MODEL"] = self.model
        sandbox = create_sandbox(
            bench.backend,
            replace(
                policy,
                env=env,
                writable=(*policy.writable, self.home, ask_dir(bench.state_dir)),
                readable=(*policy.readable, self.inbox),
            ),
        )
        stream = StreamReader(bench, self.assignment.name)
        result = sandbox.run(
            self._command(prompt_file, system_file, mcp_file),
            timeout=bench.command_timeout,
            cancel=bench.cancel,
            on_line=stream.line,
        )
        bench.recorder.check_cancelled()
        final = stream.result
        session_id = final.get("session_id") if final else None
        if isinstance(session_id, str) and _UUID.fullmatch(session_id):
            self.session_file.write_text(session_id)
        asked = take_question(bench.state_dir)
        if asked is not None:
            # Before any failure: told to go on with its leaning, the session resumes.
            raise QuestionAsked(asked, [])
        if final is None or final.get("is_error") or not result.ok:
            raise _failure(final, result.describe(), stream.other)
        report = _report(final)
        usage = report.usage
        # As Claude Code counts them; what is charged is the proxy's metering (egress.call).
        bench.recorder.event(
            "executor.turn",
            f"{self.assignment.name}: Claude Code turn done ({usage.requests} turns, "
            f"{usage.input_tokens} in / {usage.output_tokens} out tokens by its count)",
            {
                "agent": self.assignment.name,
                "executor": NAME,
                "session_id": session_id,
                "requests": usage.requests,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": usage.cost_usd,
            },
        )
        return report

    def _command(self, prompt_file: Path, system_file: Path, mcp_file: Path) -> str:
        args = [
            self.claude,
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            # Inside the sandbox every permission is the sandbox's: nothing to ask anyone.
            "--permission-mode",
            "bypassPermissions",
            "--disallowedTools",
            ",".join(DISALLOWED_TOOLS),
            "--json-schema",
            _report_schema(),
            "--mcp-config",
            str(mcp_file),
            "--strict-mcp-config",
        ]
        if self.model:
            args += ["--model", self.model]
        quoted = " ".join(shlex.quote(arg) for arg in args)
        system = f'--append-system-prompt "$(cat {shlex.quote(str(system_file))})"'
        session = self._session_args()
        return f'{session}\nexec {quoted} {system} "$@" < {shlex.quote(str(prompt_file))}'

    def _session_args(self) -> str:
        """Shell lines that set "$@" to resume the task's session, or to start one.

        Claude Code keeps a session under its working directory's name, and each job has a
        workspace of its own: the transcript is copied over, inside the sandbox (the host
        never reads what the agent could have written)."""
        fresh = str(uuid.uuid4())
        known = self.session_file.read_text().strip() if self.session_file.is_file() else ""
        if not _UUID.fullmatch(known):
            return f"set -- --session-id {fresh}"
        here = re.sub(r"[^A-Za-z0-9]", "-", str(self.bench.path.resolve()))
        projects = '"$CLAUDE_CONFIG_DIR/projects"'
        # The newest copy: every job that resumed the session left one under its own
        # workspace's name, and only the last one's holds the whole conversation.
        mine = f"{projects}/{here}/{known}.jsonl"
        return (
            f"found=$(ls -t {projects}/*/{known}.jsonl 2>/dev/null | head -n 1)\n"
            f'if [ -n "$found" ]; then mkdir -p {projects}/{here} && '
            f'{{ [ "$found" = {mine} ] || cp "$found" {projects}/{here}/; }}; '
            f"set -- --resume {known}; else set -- --session-id {fresh}; fi"
        )


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class StreamReader:
    """Claude Code's stream-json lines, as they come, turned into the job's agent events."""

    def __init__(self, bench: Workbench, agent: str) -> None:
        self.recorder = bench.recorder
        self.agent = agent
        self.result: dict[str, Any] | None = None
        self.other: list[str] = []  # lines that are not events (its stderr)
        self.tools: dict[str, str] = {}  # tool_use id -> tool name

    def line(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            if text.strip():
                self.other = [*self.other[-40:], text[:2000]]  # for the error message only
            return
        kind = event.get("type")
        if kind == "result":
            self.result = event
        elif kind == "assistant":
            self._assistant(event.get("message") or {})
        elif kind == "user":
            self._tool_results(event.get("message") or {})
        elif kind == "system" and event.get("subtype") == "init":
            self._event(
                "agent.prompt",
                f"{self.agent}: Claude Code session {event.get('session_id')} "
                f"({event.get('model')})",
                session_id=event.get("session_id"),
                model=event.get("model"),
            )

    def _assistant(self, message: dict[str, Any]) -> None:
        usage = message.get("usage") or {}
        self._event(
            "agent.response",
            f"{self.agent}: model answered ({usage.get('input_tokens', 0)} in / "
            f"{usage.get('output_tokens', 0)} out tokens)",
            model=message.get("model"),
            input_tokens=usage.get("input_tokens", 0),
            output_tokens=usage.get("output_tokens", 0),
        )
        for block in message.get("content") or ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and str(block.get("text", "")).strip():
                text = str(block["text"])
                self._event("agent.text", f"{self.agent}: {text[:200]}", content=text)
            elif block.get("type") == "tool_use":
                name = str(block.get("name"))
                self.tools[str(block.get("id"))] = name
                args = block.get("input") if isinstance(block.get("input"), dict) else {}
                shown = json.dumps(args, default=str)
                shown = shown if len(shown) <= 160 else shown[:160] + "…"
                self._event(
                    "agent.tool_call", f"{self.agent}: {name}({shown})", tool=name, args=args
                )

    def _tool_results(self, message: dict[str, Any]) -> None:
        content = message.get("content")
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            value = block.get("content")
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            tool = self.tools.get(str(block.get("tool_use_id")), "?")
            self._event(
                "agent.tool_result",
                f"{self.agent}: {tool} returned {len(text)} characters",
                tool=tool,
                content=text,
            )

    def _event(self, kind: str, message: str, **data: Any) -> None:
        self.recorder.event(kind, message, {"agent": self.agent, **data})


def _failure(final: dict[str, Any] | None, how: str, other: list[str]) -> Exception:
    if final is None:
        tail = "\n".join(other[-10:]) or "no output"
        return LLMError(f"Claude Code ended ({how}) without a result: {tail[-1500:]}")
    errors = final.get("errors") or [final.get("result") or final.get("subtype")]
    detail = "; ".join(str(e) for e in errors)[:1500]
    status = final.get("api_error_status")
    if isinstance(status, int) and (status in (408, 409, 429) or status >= 500):
        return LLMUnavailable(f"Claude Code's model endpoint answered HTTP {status}: {detail}")
    return LLMError(f"Claude Code failed ({how}): {detail}")


def _report(final: dict[str, Any]) -> ExecutorReport:
    try:
        report = SubtaskReport.model_validate(final.get("structured_output"))
    except ValidationError as exc:
        raise AgentOutputError(
            f"Claude Code did not give a valid report (StructuredOutput): {exc}"
        ) from exc
    usage = final.get("usage") or {}
    cost = final.get("total_cost_usd")
    return ExecutorReport(
        summary=report.summary,
        decisions=list(report.decisions),
        no_change_reason=report.no_change_reason,
        usage=Usage(
            requests=int(final.get("num_turns") or 0),
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            cost_usd=float(cost) if isinstance(cost, int | float) else None,
        ),
    )


class ClaudeCodeExecutor:
    name = NAME
    report_hint = "give your report through the StructuredOutput tool"

    def __init__(self) -> None:
        self.claude = claude_path()

    def start(self, bench: Workbench, assignment: Assignment) -> ClaudeCodeSession:
        return ClaudeCodeSession(bench, assignment, self.claude)
