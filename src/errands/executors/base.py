"""The Executor seam: whatever agent types the code of one subtask.

Errands keeps everything around an executor: planning, the per-subtask verify-and-fix loop,
one commit per subtask, the hand-off, cost and budgets. An executor gets a prepared
workspace (its sandbox included) and an ``Assignment`` (a subtask or a revise round, with the
task's context), makes the change and reports what it did. The verify failure of a subtask
goes back to the same ``ExecutorSession`` as another turn, so the agent keeps its context
(the native loop its message history; Claude Code its ``--resume`` session).

Nothing here knows the store or the workflow: the recorder (a job's ``JobContext``) is a
Protocol from ``errands.agent.loop``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from errands.agent.loop import AgentConfig, Recorder
from errands.agent.tools import WorkspaceTools
from errands.mcp import McpServer
from errands.sandbox import Backend, Sandbox

ExecutorPhase = Literal["execute", "revise"]
# A model endpoint an agent inside the sandbox calls through the egress proxy.
Provider = Literal["anthropic", "openai", "google"]
EXECUTOR_PHASES: tuple[ExecutorPhase, ...] = ("execute", "revise")


@dataclass(frozen=True)
class Usage:
    """Model usage of one turn, as the executor saw it (for the report; the job's own usage
    ledger is written by whoever forwarded the calls: the native loop, or the egress proxy)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None  # what the agent itself computed, when it says


@dataclass(frozen=True)
class ExecutorReport:
    """What one turn of an executor did: for the commit message, the hand-off and the log."""

    summary: str
    decisions: list[str] = field(default_factory=list)
    no_change_reason: str | None = None
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class Assignment:
    """One subtask (or revise round) to do."""

    name: str  # "subtask-2": names its events
    instructions: str  # the role: errands.agent.prompts.SUBTASK or REVISE
    prompt: str  # the task, research, answers and this subtask, framed (prompts.frame)


@dataclass(frozen=True)
class EgressEndpoint:
    """How an agent inside the sandbox reaches its model: only through the egress proxy.

    ``sandbox`` is the work sandbox whose policy also holds the proxy's grant
    (``SandboxPolicy.egress``): its only network is the proxy's forwarder, at ``base_url``
    inside the sandbox (the proxy's grant also puts ``<PROVIDER>_BASE_URL`` and the
    placeholder ``<PROVIDER>_API_KEY`` in every command's environment). Build a variant with
    ``create_sandbox(bench.backend, replace(endpoint.sandbox.policy, …))``. The proxy
    injects the real key, meters every call under the job and checks budgets before it."""

    base_url: str
    placeholder_key: str
    sandbox: Sandbox


@dataclass(frozen=True)
class Workbench:
    """Everything an executor gets for one job."""

    task_id: int
    job_id: int
    phase: ExecutorPhase
    path: Path  # the workspace (a git work tree on the task branch); the agent's cwd
    sandbox: Sandbox  # the work sandbox: no network, the workspace writable
    backend: Backend  # which sandbox backend the project uses
    tools: WorkspaceTools  # the native loop's tools (read, edit, run_command, search)
    agent: AgentConfig  # the native loop's model (the execute phase's)
    recorder: Recorder  # the job: events, usage, cancellation (and a BudgetGuard)
    cancel: threading.Event
    command_timeout: float  # the project's per-command limit
    # Per task and executor, kept across subtasks, fix attempts and jobs on this machine:
    # an external agent's session state. Never holds a secret; may be bound into the sandbox.
    state_dir: Path
    model: str | None  # the execute phase's provider:name, if any is configured
    # The way out to a provider's model for an agent inside the sandbox: the proxy is opened
    # on the first call and closed when the subtask ends; raises ConfigError when the
    # provider has no endpoint configured. None where no proxy can be had.
    egress: Callable[[Provider], EgressEndpoint] | None = None
    # The project's MCP servers (each executor that takes them starts them in the sandbox).
    mcp_servers: tuple[McpServer, ...] = ()
    # The acp executor's agent command and the model endpoint it calls.
    acp_command: str | None = None
    acp_provider: Provider | None = None


class ExecutorSession(Protocol):
    """One subtask's conversation with an executor. Each ``turn`` continues it: the first
    with the assignment's prompt, later ones with "nothing changed, why?" or a verify failure.
    A session that holds a process may also have ``close()``: called when the subtask ends,
    however it ends."""

    def turn(self, prompt: str) -> ExecutorReport: ...


class Executor(Protocol):
    """A way of doing one subtask. Registered by name in ``errands.executors``."""

    name: str
    # How this executor is asked for its report in a follow-up turn, e.g. "answer with
    # final_result" (the native loop's output tool): ends the follow-up prompts.
    report_hint: str

    def start(self, bench: Workbench, assignment: Assignment) -> ExecutorSession: ...
