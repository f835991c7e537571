"""The research agent stands on the code index: its first prompt holds the ranked files and an
outline, and it can call search_code. `errands index` and `errands locate` use the same index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.support import (
    CalcScript,
    add_project,
    add_task,
    events_of,
    phase_of,
    running_server,
    settings_for,
    wait_for,
    wait_for_state,
)


class SearchingScript(CalcScript):
    def __call__(self, req: ChatRequest) -> Reply:
        if phase_of(req) == "research" and req.n_assistant == 0:
            return Reply.call("search_code", query="add numbers")
        return super().__call__(req)


def test_research_prompt_holds_the_ranking_and_search_code_works(
    home: Path, sample_repo: Path
) -> None:
    with ScriptedLLM(SearchingScript()) as llm:
        settings = settings_for(home, llm.base_url)
        with running_server(settings) as url:
            client = httpx.Client(base_url=url, timeout=30)
            project_id = add_project(client, sample_repo)
            wait_for(lambda: client.get(f"/api/projects/{project_id}").json()["indexed_at"])
            # Adding the project parked a checkout for its first job (the index job's
            # prewarm), named after the base commit it holds.
            base = subprocess.check_output(
                ["git", "rev-parse", "HEAD"], cwd=sample_repo, text=True
            ).strip()
            pool = settings.workspaces_dir / f"project-{project_id}"
            assert [p.name.rpartition("-")[2] for p in pool.glob(".idle-*")] == [base]
            task_id = add_task(client, project_id, title="Add multiply next to add in calc")
            task = wait_for_state(client, task_id, "awaiting_answers")
            events = events_of(client, task_id)
        research = [r for r in llm.requests if phase_of(r) == "research"]

    first = research[0].user
    assert "Files the code index ranks as most relevant" in first
    assert "1. calc.py — " in first
    assert "Outline of the top files" in first and "add" in first.split("Outline")[1]
    assert task["research"]["located"][0]["path"] == "calc.py"
    assert task["research"]["located"][0]["reasons"]
    searched = next(
        e for e in events if e["kind"] == "agent.tool_result" and e["data"]["tool"] == "search_code"
    )
    assert "calc.py:" in searched["data"]["content"]
    assert "search_code" in research[0].tools


def test_index_and_locate_from_the_cli(home: Path, sample_repo: Path, tmp_path: Path) -> None:
    env = {**os.environ, "ERRANDS_HOME": str(home)}  # conftest removed ERRANDS_* etc.

    def errands(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "errands.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    missing = subprocess.run(
        [sys.executable, "-m", "errands.cli", "locate", "nope", "x"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1 and "does not exist" in missing.stderr

    errands("project", "add", str(sample_repo))
    not_yet = subprocess.run(
        [sys.executable, "-m", "errands.cli", "locate", "calc", "x"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "run `errands index calc`" in not_yet.stderr
    assert "Indexed 5 files" in errands("index", "calc")
    traceback = (
        'Traceback (most recent call last):\n  File "/src/calc.py", line 2, in add\nTypeError'
    )
    ranked = json.loads(errands("locate", "calc", traceback, "--json"))
    assert ranked[0]["path"] == "calc.py"
    assert any("traceback" in reason.lower() for reason in ranked[0]["reasons"])
    assert ranked[0]["symbols"][0]["name"] == "add"
    table = errands("locate", "calc", "multiply in calc")
    assert "calc.py" in table
    # A SQLite store is read without SQLAlchemy, and the store found without Settings
    # (pydantic-settings): importing either costs more than the rest of a locate.
    imported = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "errands.cli",
            "locate",
            "1",
            "multiply in calc",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "calc.py" in imported.stdout
    assert "sqlalchemy" not in imported.stderr
    assert "pydantic_settings" not in imported.stderr
    # It answers from the query file, reading only what the query needs, not the index.
    pickled = home / "index" / "project-1.idx"
    assert pickled.is_file() and (home / "index" / "project-1.query").is_file()
    pickled.unlink()
    assert json.loads(errands("locate", "calc", traceback, "--json")) == ranked


def test_a_moved_base_is_reindexed_incrementally_before_research(
    home: Path, sample_repo: Path
) -> None:
    from tests.conftest import run_git

    with ScriptedLLM(CalcScript()) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        project_id = add_project(client, sample_repo)
        wait_for(lambda: client.get(f"/api/projects/{project_id}").json()["indexed_at"])
        (sample_repo / "geometry.py").write_text("def hypotenuse(a, b):\n    return 0\n")
        run_git(sample_repo, "add", "geometry.py")
        run_git(sample_repo, "commit", "-qm", "Add geometry")
        task_id = add_task(client, project_id, title="Fix `hypotenuse` returning 0")
        task = wait_for_state(client, task_id, "awaiting_answers")
        events = events_of(client, task_id)

    updated = next(e for e in events if e["kind"] == "index.updated")
    assert updated["data"]["files"] == ["geometry.py"]
    assert task["research"]["located"][0]["path"] == "geometry.py"
