"""`.errands.toml` in the repository: verify and setup commands, sandbox, limits — and the
precedence of Errands' own project settings over it."""

from __future__ import annotations

from pathlib import Path

import httpx

from errands.testing.scripted_llm import ScriptedLLM
from tests.conftest import run_git
from tests.support import (
    CalcScript,
    add_project,
    events_of,
    running_server,
    settings_for,
    to_review,
    wait_for,
)

CONFIG = """
[verify]
commands = ["python3 -m pytest -q tests"]

[setup]
commands = ["echo installed > .setup-marker", "printenv PIP_CACHE_DIR"]

[limits]
command_timeout = 120
"""


def indexed(client: httpx.Client, project_id: int) -> dict[str, object]:
    project: dict[str, object] = wait_for(
        lambda: (p := client.get(f"/api/projects/{project_id}").json())["indexed_at"] and p
    )
    return project


def test_repository_config_drives_setup_and_verify(home: Path, sample_repo: Path) -> None:
    (sample_repo / ".errands.toml").write_text(CONFIG)
    (sample_repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n.setup-marker\n")
    run_git(sample_repo, "add", "-A")
    run_git(sample_repo, "commit", "-qm", "Configure Errands")
    with ScriptedLLM(CalcScript()) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        task_id, task = to_review(client, sample_repo)
        project = client.get(f"/api/projects/{task['project_id']}").json()
        assert project["effective"]["verify_commands"] == ["python3 -m pytest -q tests"]
        assert project["effective"]["setup_commands"][0].startswith("echo installed")
        assert project["effective"]["setup_network"] is False
        assert project["effective"]["command_timeout"] == 120
        assert task["subtasks"][0]["verification"][0]["command"] == "python3 -m pytest -q tests"

        setups = [e for e in events_of(client, task_id) if e["kind"] == "setup.finished"]
        assert [e["data"]["exit_code"] for e in setups] == [0, 0]
        # Package managers cache into the project's cache directory.
        assert "cache/project-1/pip" in setups[1]["data"]["output"]
        # Setup output is the workspace's, never committed (ignored) nor left for the next job.
        assert ".setup-marker" not in run_git(sample_repo, "show", "--stat", task["branch"])

        # Errands' own project settings win over the file.
        client.patch(
            f"/api/projects/{task['project_id']}",
            json={"verify_commands": ["true"], "setup_commands": [], "sandbox_backend": "none"},
        )
        effective = client.get(f"/api/projects/{task['project_id']}").json()["effective"]
        assert effective["verify_commands"] == ["true"]
        assert effective["setup_commands"] == []
        assert effective["sandbox"] == "none"


def test_an_invalid_repository_config_fails_the_index_clearly(
    home: Path, sample_repo: Path
) -> None:
    (sample_repo / ".errands.toml").write_text("[setup]\ncomands = ['x']\n")
    run_git(sample_repo, "add", "-A")
    run_git(sample_repo, "commit", "-qm", "Broken config")
    with ScriptedLLM(CalcScript()) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        project_id = add_project(client, sample_repo)
        failure = wait_for(
            lambda: next(
                (
                    e
                    for e in client.get(f"/api/projects/{project_id}/events").json()
                    if e["kind"] == "job.failed"
                ),
                None,
            ),
            timeout=30,
        )
        assert ".errands.toml is invalid" in failure["message"]
        assert "setup.comands" in failure["message"]
        assert client.get(f"/api/projects/{project_id}").json()["indexed_at"] is None
