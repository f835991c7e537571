"""The seam between Errands and the commands it runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from errands.sandbox.policy import Limits, SandboxPolicy


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int | None  # None when the command was killed
    output: str  # stdout and stderr interleaved, head and tail kept when long
    duration: float
    timed_out: bool = False
    cancelled: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled

    def describe(self) -> str:
        if self.timed_out:
            return f"timed out after {self.duration:.0f}s"
        if self.cancelled:
            return "cancelled"
        return f"exit code {self.exit_code}"


@dataclass(frozen=True)
class Launch:
    """How to start one long-running command of a sandbox (an ACP agent, an MCP server) as
    a child with pipes, rather than ``run`` it to completion: what to execute, with which
    host environment, where, under which limits (see ``errands.sandbox.spawn``)."""

    command: str
    argv: list[str]
    env: dict[str, str]  # the environment of the process started on the host (bwrap: none)
    cwd: Path
    limits: Limits
    helper_tasks: int = 0  # processes of the wrapper itself, granted on top of the limit
    cleanup: tuple[Path, ...] = field(default=())  # directories to remove when it ends


class Sandbox(Protocol):
    """Runs commands under one policy (one workspace). ``network=True`` is for the project's
    declared setup commands only; the agent's commands never get it."""

    name: str
    policy: SandboxPolicy

    def run(
        self,
        command: str,
        *,
        timeout: float,
        cancel: threading.Event | None = None,
        network: bool = False,
        on_output: Callable[[str], None] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult: ...

    def launch(self, command: str) -> Launch:
        """How to start ``command`` as a long-running process of this sandbox (never with
        the network, whatever the policy)."""
        ...
