"""The acp executor before its agent runs (what must be set, what must be installed) and
after (its report: the JSON object the agent ends its last message with)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import pytest

from errands.errors import ConfigError
from errands.executors import Assignment, Workbench
from errands.executors.acp import AcpExecutor, parse_report


def test_the_last_report_object_wins_bare_or_fenced() -> None:
    text = (
        'Earlier I thought {"summary": "draft"} would do.\n'
        "Done: added multiply.\n```json\n"
        '{"summary": "Added multiply.", "decisions": ["plain product"], "no_change_reason": null}'
        "\n```"
    )
    assert parse_report(text) == {
        "summary": "Added multiply.",
        "decisions": ["plain product"],
        "no_change_reason": None,
    }


def test_no_report_is_an_empty_one() -> None:
    assert parse_report("I changed calc.py.") == {}
    assert parse_report('{"summary": broken') == {}
    assert parse_report('{"summary": "a"} trailing words') == {"summary": "a"}


def bench(**fields: Any) -> Workbench:
    """A workbench for the checks made before any agent starts (the rest is unused there)."""
    unused = cast(Any, None)
    values: dict[str, Any] = {
        "task_id": 1,
        "job_id": 1,
        "phase": "execute",
        "path": Path("/nonexistent"),
        "sandbox": unused,
        "backend": "bubblewrap",
        "tools": unused,
        "agent": unused,
        "recorder": unused,
        "cancel": threading.Event(),
        "command_timeout": 60,
        "state_dir": Path("/nonexistent"),
        "model": None,
        "acp_command": "gemini --acp",
        "acp_provider": "google",
        "egress": lambda provider: unused,
    }
    values.update(fields)
    return Workbench(**values)


ASSIGNMENT = Assignment("subtask-1", "Errands phase: execute.", "Do it.")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"acp_command": None}, r"set \[acp\] command"),
        ({"acp_provider": None}, r"set \[acp\] provider"),
        ({"acp_command": "no-such-agent-xyz --acp"}, "'no-such-agent-xyz' is not installed"),
        ({"acp_command": "'unclosed"}, "is not a command line"),
        ({"acp_command": "bash", "egress": None}, "egress proxy"),
    ],
)
def test_an_agent_that_cannot_run_fails_saying_what_to_set(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        AcpExecutor().start(bench(**fields), ASSIGNMENT)


def test_a_missing_known_agent_names_its_npm_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine where gemini is not installed
    with pytest.raises(ConfigError, match="npm install -g @google/gemini-cli"):
        AcpExecutor().start(bench(), ASSIGNMENT)
