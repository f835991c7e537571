"""Which executor types the code: per phase, from the project's settings in Errands, then
`.errands.toml`, then the server's settings; unknown names are refused with the choices."""

from __future__ import annotations

from typing import Any

import pytest

from errands.errors import ConfigError, InvalidInput
from errands.executors import EXECUTORS, ExecutorPhase, create_executor
from errands.settings import Settings
from errands.store import Project
from errands.workflow.actions import _executor_name
from errands.workflow.project_config import effective_config, parse_repo_config


def project(repo: dict[str, Any] | None = None, **overrides: Any) -> Project:
    return Project(
        name="p",
        origin="/x",
        base_branch="main",
        repo_config=repo or {},
        detected_commands=[],
        **overrides,
    )


def executors(project: Project, **settings: Any) -> dict[ExecutorPhase, str]:
    return effective_config(project, Settings(**settings)).executors


def test_native_by_default_and_revise_follows_execute() -> None:
    assert executors(project()) == {"execute": "native", "revise": "native"}
    assert executors(project(), executor="claude-code") == {
        "execute": "claude-code",
        "revise": "claude-code",
    }
    assert executors(project(), executor="claude-code", revise_executor="native") == {
        "execute": "claude-code",
        "revise": "native",
    }


def test_project_wins_over_repository_file_over_settings() -> None:
    repo = {"executor": {"execute": "claude-code"}}  # as the index stores the file
    assert executors(project(repo)) == {"execute": "claude-code", "revise": "claude-code"}
    assert executors(project(repo, executor="native")) == {
        "execute": "native",
        "revise": "native",
    }
    assert executors(project(repo, revise_executor="native"), executor="native") == {
        "execute": "claude-code",
        "revise": "native",
    }


def test_unknown_executor_names_are_refused_with_the_choices() -> None:
    choices = ", ".join(sorted(EXECUTORS))
    with pytest.raises(InvalidInput, match=rf"executor.execute: .*'aider'.*{choices}"):
        parse_repo_config('[executor]\nexecute = "aider"\n')
    with pytest.raises(InvalidInput, match="Unknown executor 'aider'"):
        _executor_name("aider")
    assert _executor_name("") is None  # clears the project's choice


def test_a_missing_cli_is_a_clear_error_naming_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="npm install -g @anthropic-ai/claude-code"):
        create_executor("claude-code")
