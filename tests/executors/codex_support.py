"""The real Codex CLI for the tests: found on PATH, or the test is skipped with the reason
(a failure under ``ERRANDS_TEST_SERVICES=require``, where ``.ci/run`` installs it); and a
scripted model that drives it through a subtask the way a coding model would."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from errands.executors.codex_cli import CODEX_INSTALL
from errands.testing import ChatRequest, Reply


def codex_or_skip() -> str:
    path = shutil.which("codex")
    if path is None:
        message = f"the Codex CLI is not installed ({CODEX_INSTALL})"
        if os.environ.get("ERRANDS_TEST_SERVICES") == "require":
            pytest.fail(message)
        pytest.skip(message)
    return path


def report(summary: str, *decisions: str, no_change_reason: str | None = None) -> Reply:
    """Codex's final message: the JSON its output schema asks for."""
    text = json.dumps(
        {"summary": summary, "decisions": list(decisions), "no_change_reason": no_change_reason}
    )
    return Reply.say(text)


def shell(command: str) -> Reply:
    """A call of Codex's shell tool."""
    return Reply.call("exec_command", cmd=command)


def last_turn_results(request: ChatRequest) -> list[str]:
    """The tool results since the last user message: what this turn's commands printed."""
    results: list[str] = []
    for message in request.messages:
        if message.get("role") == "user":
            results = []
        elif message.get("role") == "tool":
            results.append(str(message.get("content")))
    return results
