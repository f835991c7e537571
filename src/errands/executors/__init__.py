"""Executors: what types the code of a subtask (see ``errands.executors.base``).

``EXECUTORS`` maps each name users can choose (settings, ``.errands.toml``, the project page,
the CLI) to a factory; ``register`` adds one. A factory is called once per subtask and
returns an ``Executor``; it may raise ``ConfigError`` (say, its CLI is not installed) with a
message naming how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable

from errands.errors import ConfigError
from errands.executors.acp import AcpExecutor
from errands.executors.base import (
    EXECUTOR_PHASES,
    Assignment,
    EgressEndpoint,
    Executor,
    ExecutorPhase,
    ExecutorReport,
    ExecutorSession,
    Provider,
    Usage,
    Workbench,
)
from errands.executors.claude_code import ClaudeCodeExecutor
from errands.executors.codex import CodexExecutor
from errands.executors.native import NativeExecutor

__all__ = [
    "EXECUTORS",
    "EXECUTOR_PHASES",
    "Assignment",
    "EgressEndpoint",
    "Executor",
    "ExecutorPhase",
    "ExecutorReport",
    "ExecutorSession",
    "Provider",
    "Usage",
    "Workbench",
    "check_executor_name",
    "create_executor",
    "register",
]

ExecutorFactory = Callable[[], Executor]

EXECUTORS: dict[str, ExecutorFactory] = {
    "native": NativeExecutor,
    "claude-code": ClaudeCodeExecutor,
    "codex": CodexExecutor,
    "acp": AcpExecutor,
}


def register(name: str, factory: ExecutorFactory) -> None:
    EXECUTORS[name] = factory


def check_executor_name(name: str) -> str:
    if name not in EXECUTORS:
        raise ConfigError(
            f"Unknown executor {name!r}: choose one of {', '.join(sorted(EXECUTORS))}."
        )
    return name


def create_executor(name: str) -> Executor:
    return EXECUTORS[check_executor_name(name)]()
