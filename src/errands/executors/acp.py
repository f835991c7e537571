"""The ``acp`` executor: any agent speaking the Agent Client Protocol on stdio (Gemini CLI's
``gemini --acp``, ``claude-code-acp``, ``codex-acp``, opencode …) does the subtask.

The agent's command comes from the project (``.errands.toml [acp] command``, or
ERRANDS_ACP_COMMAND) and runs inside the sandbox whose only way out is the egress proxy: it
sees the proxy's address and a placeholder key for its provider (``[acp] provider``), never
the real key. Its file and terminal requests are served by ``errands.acp`` inside the
workspace and the work sandbox; the project's MCP servers are handed to it in
``session/new`` (it starts them, inside its sandbox). One agent process and one ACP session
last the whole subtask: the verify-failure feedback is another prompt in the same session.
The report is the JSON object the agent ends its last message with.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from errands.agent.loop import QuestionAsked
from errands.errors import ConfigError
from errands.executors.asking import ask_dir, ask_server, take_question
from errands.executors.base import Assignment, ExecutorReport, Usage, Workbench
from errands.sandbox import create_sandbox

if TYPE_CHECKING:
    from errands.acp import AcpSession

TURN_TIMEOUT = 3600.0  # seconds one prompt may take, end to end
SUMMARY_CHARS = 4_000
# Node-based agents (Gemini CLI, claude-code-acp) instantiate WebAssembly, whose guard
# regions reserve more address space than the sandbox's memory limit (RLIMIT_AS) allows;
# without the trap handler V8 bounds-checks instead and needs no reservation.
NODE_OPTIONS = "--disable-wasm-trap-handler"

ACP_NOTE = """You are working for Errands through the Agent Client Protocol. Where these
instructions name Errands' tools (read_file, write_file, edit_file, run_command,
final_result), use your own tools for the same things. Your commands run in a sandbox with no
network. End your LAST message of each turn with your report as one JSON object, alone on the
last lines: {"summary": "...", "decisions": ["..."], "no_change_reason": null} (set
"no_change_reason" to why, if you deliberately changed nothing)."""

REPORT_HINT = (
    'end your last message with your report as one JSON object ("summary", "decisions", '
    '"no_change_reason")'
)


def _install_hint(program: str) -> str:
    known = {
        "gemini": "npm install -g @google/gemini-cli",
        "claude-code-acp": "npm install -g @zed-industries/claude-code-acp",
        "codex-acp": "npm install -g @zed-industries/codex-acp",
        "opencode": "npm install -g opencode-ai",
    }
    return known.get(program, "install it, or fix [acp] command")


class AcpExecutorSession:
    def __init__(self, bench: Workbench, assignment: Assignment) -> None:
        self.bench = bench
        self.assignment = assignment
        command = bench.acp_command
        if not command:
            raise ConfigError(
                "The acp executor needs an agent command: set [acp] command in .errands.toml "
                "(e.g. 'gemini --acp') or ERRANDS_ACP_COMMAND."
            )
        if bench.acp_provider is None:
            raise ConfigError(
                "The acp executor needs the agent's model endpoint: set [acp] provider in "
                ".errands.toml (anthropic, openai or google) or ERRANDS_ACP_PROVIDER."
            )
        try:
            program = shlex.split(command)[0]
        except (ValueError, IndexError) as exc:
            raise ConfigError(f"[acp] command {command!r} is not a command line: {exc}") from exc
        if shutil.which(program) is None:
            raise ConfigError(
                f"The acp executor's agent {program!r} is not installed on this machine: "
                f"{_install_hint(program)}."
            )
        if bench.egress is None:
            raise ConfigError(
                "The acp executor's agent reaches its model only through the egress proxy, "
                "and none can be had here (the bubblewrap sandbox is required)."
            )
        self.command = command
        # Opened now, before any work: a provider with no endpoint fails the subtask at once,
        # and the proxy outlives the agent (closed after this session's close).
        self.endpoint = bench.egress(bench.acp_provider)
        self.session: AcpSession | None = None
        self.turns = 0

    def _start(self) -> AcpSession:
        try:
            from errands.acp import AcpSession
        except ImportError as exc:  # the optional extra is not installed
            raise ConfigError(
                "The acp executor needs the agent-client-protocol package: "
                "pip install 'errands[acp]'."
            ) from exc
        bench = self.bench
        policy = self.endpoint.sandbox.policy
        agent_sandbox = create_sandbox(
            bench.backend,
            replace(
                policy,
                env={**policy.env, "NODE_OPTIONS": NODE_OPTIONS},
                writable=(*policy.writable, ask_dir(bench.state_dir)),
            ),
        )
        session = AcpSession(
            name=self.assignment.name,
            command=self.command,
            workspace=bench.path,
            agent_sandbox=agent_sandbox,
            work_sandbox=bench.sandbox,
            command_timeout=bench.command_timeout,
            mcp_servers=(*bench.mcp_servers, ask_server(bench.state_dir)),
        )
        session.start()
        info = session.agent_info
        bench.recorder.event(
            "executor.agent",
            f"{self.assignment.name}: ACP agent {info.name if info else self.command} started",
            {
                "agent": self.assignment.name,
                "command": self.command,
                "name": info.name if info else None,
                "version": info.version if info else None,
                "mcp_servers": [server.name for server in bench.mcp_servers],
            },
        )
        return session

    def turn(self, prompt: str) -> ExecutorReport:
        if self.session is None:
            self.session = self._start()
        self.turns += 1
        text = prompt
        if self.turns == 1:
            text = f"{self.assignment.instructions}\n\n{ACP_NOTE}\n\n{prompt}"
        recorder = self.bench.recorder
        outcome = self.session.prompt(
            text,
            on_event=lambda event: recorder.event(event.kind, event.message, event.data),
            check=recorder.check_cancelled,
            timeout=TURN_TIMEOUT,
        )
        asked = take_question(self.bench.state_dir)
        if asked is not None:
            raise QuestionAsked(asked, [])  # told to go on, the same ACP session continues
        report = parse_report(outcome.text)
        return ExecutorReport(
            summary=str(report.get("summary") or _fallback_summary(outcome.text)),
            decisions=[str(d) for d in report.get("decisions") or () if str(d).strip()],
            no_change_reason=str(reason) if (reason := report.get("no_change_reason")) else None,
            usage=Usage(
                requests=0,
                input_tokens=outcome.input_tokens or 0,
                output_tokens=outcome.output_tokens or 0,
            ),
        )

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


class AcpExecutor:
    name = "acp"
    report_hint = REPORT_HINT

    def start(self, bench: Workbench, assignment: Assignment) -> AcpExecutorSession:
        return AcpExecutorSession(bench, assignment)


_REPORT_START = re.compile(r'\{\s*"summary"')


def parse_report(text: str) -> dict[str, Any]:
    """The last JSON object in the agent's message that starts with "summary" (bare or in a
    fenced block), or {} when there is none."""
    for match in reversed(list(_REPORT_START.finditer(text))):
        try:
            found = json.JSONDecoder().raw_decode(text, match.start())[0]
        except ValueError:
            continue
        if isinstance(found, dict):
            return found
    return {}


def _fallback_summary(text: str) -> str:
    text = text.strip()
    if not text:
        return "The agent gave no summary."
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"
