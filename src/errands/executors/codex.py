"""The ``codex`` executor: the real Codex CLI types the code, inside our sandbox, reaching
its model only through the egress proxy (see :mod:`errands.executors.codex_cli` for how it
is driven).

One Codex session per task: the first turn of the task starts it, and every later turn -- the
"nothing changed, why?" question, each verify failure, the next subtask, a revise round in a
later job on this machine -- resumes it. The model is the execute phase's, which must be an
OpenAI one (``openai:<model>``): Codex speaks the Responses API.
"""

from __future__ import annotations

from dataclasses import replace

from errands.agent.loop import QuestionAsked
from errands.errors import ConfigError
from errands.executors.asking import ask_dir, ask_server, take_question
from errands.executors.base import Assignment, ExecutorReport, Usage, Workbench
from errands.executors.codex_cli import (
    CodexEndpoint,
    CodexSession,
    codex_binary,
    codex_policy,
)
from errands.sandbox import create_sandbox

__all__ = ["CodexExecutor", "codex_model", "turn_timeout"]

MIN_TURN_SECONDS = 1800.0


def codex_model(model: str | None) -> str:
    """The model Codex asks for: the name of the execute phase's ``openai:<name>``."""
    provider, _, name = (model or "").partition(":")
    if provider != "openai" or not name:
        shown = f"is {model}" if model else "is not set"
        raise ConfigError(
            "The codex executor speaks OpenAI's Responses API: set ERRANDS_EXECUTE_MODEL (or "
            "ERRANDS_MODEL) to openai:<model>, e.g. openai:gpt-5.6-sol (the execute model "
            f"{shown})."
        )
    return name


def turn_timeout(command_timeout: float) -> float:
    """How long one Codex turn (many model calls and commands) may run: four times the
    project's per-command limit, and at least half an hour."""
    return max(4 * command_timeout, MIN_TURN_SECONDS)


class CodexExecutorSession:
    def __init__(self, bench: Workbench, assignment: Assignment, binary: str) -> None:
        if bench.egress is None:
            raise ConfigError(
                "The codex executor runs Codex inside the sandbox, whose only way to its model "
                "is the egress proxy, and none is configured for this job."
            )
        self.egress = bench.egress
        self.bench = bench
        self.assignment = assignment
        self.binary = binary
        self.model = codex_model(bench.model)
        self.codex: CodexSession | None = None

    def _session(self) -> CodexSession:
        """Codex behind this subtask's proxy (opened on the first call, closed with the
        subtask), in the work sandbox plus Codex's own directories."""
        bench = self.bench
        endpoint = self.egress("openai")
        policy = codex_policy(endpoint.sandbox.policy, bench.state_dir)
        return CodexSession(
            sandbox=create_sandbox(
                bench.backend,
                replace(policy, writable=(*policy.writable, ask_dir(bench.state_dir))),
            ),
            workspace=bench.path,
            state_dir=bench.state_dir,
            endpoint=CodexEndpoint(endpoint.base_url, endpoint.placeholder_key, self.model),
            instructions=self.assignment.instructions,
            timeout=turn_timeout(bench.command_timeout),
            cancel=bench.cancel,
            on_event=bench.recorder.event,
            binary=self.binary,
            agent=self.assignment.name,
            mcp_servers=(*bench.mcp_servers, ask_server(bench.state_dir)),
        )

    def turn(self, prompt: str) -> ExecutorReport:
        name = self.assignment.name
        recorder = self.bench.recorder
        if self.codex is None:
            self.codex = self._session()
        recorder.event("agent.prompt", f"{name}: prompt", {"agent": name, "content": prompt})
        turn = self.codex.turn(prompt)
        recorder.check_cancelled()
        asked = take_question(self.bench.state_dir)
        if asked is not None:
            raise QuestionAsked(asked, [])  # told to go on, the thread continues
        # As Codex counts them; what is charged is the proxy's metering of every call.
        recorder.event(
            "executor.turn",
            f"{name}: Codex turn done ({turn.input_tokens} in / {turn.output_tokens} out "
            "tokens by its count)",
            {
                "agent": name,
                "executor": "codex",
                "session_id": turn.thread_id,
                "input_tokens": turn.input_tokens,
                "output_tokens": turn.output_tokens,
                "seconds": round(turn.duration, 3),
            },
        )
        return ExecutorReport(
            summary=turn.report.summary,
            decisions=turn.report.decisions,
            no_change_reason=turn.report.no_change_reason,
            usage=Usage(
                requests=turn.requests,
                input_tokens=turn.input_tokens,
                output_tokens=turn.output_tokens,
            ),
        )


class CodexExecutor:
    name = "codex"
    report_hint = (
        "finish with your final message: the JSON report (summary, decisions, no_change_reason)"
    )

    def __init__(self) -> None:
        self.binary = codex_binary()  # a missing CLI fails the job saying how to install it

    def start(self, bench: Workbench, assignment: Assignment) -> CodexExecutorSession:
        return CodexExecutorSession(bench, assignment, self.binary)
