"""A task whose work changes nothing is said to be so, and is never merged as an empty commit:
the agent is asked why a subtask changed nothing, the reason is shown on the subtask (API,
CLI, task page, hand-off), review says there is nothing to merge, and approve answers 409."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.conftest import run_git
from tests.support import (
    CalcScript,
    add_project,
    add_task,
    events_of,
    final,
    phase_of,
    running_server,
    settings_for,
    to_review,
    wait_for,
    wait_for_state,
)

ALREADY_DONE = "calc.add already adds; README documents it. Nothing to change."
ASKED_WHY = "The function is already there: calc.py line 1."


class NothingToDo:
    """No questions; two subtasks. The first says at once why it changes nothing; the second
    changes nothing without a word and, asked why, gives its reason."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, req: ChatRequest) -> Reply:
        phase = phase_of(req)
        if phase == "research":
            return final(overview="calc adds.", requirements=["add adds"], questions=[])
        if phase == "plan":
            return final(
                subtasks=[
                    {"title": "Make add add", "steps": ["Check calc.add"]},
                    {"title": "Define add", "steps": ["Check calc.py"]},
                ]
            )
        if phase == "execute" and "subtask 1 of 2" in req.user:
            return final(summary="Nothing to do.", no_change_reason=ALREADY_DONE)
        if phase == "execute" and "subtask 2 of 2" in req.user:
            if "You changed no file" in req.user:
                self.asked.append(req.user)
                return final(summary="Nothing.", no_change_reason=ASKED_WHY)
            return final(summary="Looked at it.")
        raise AssertionError(f"unexpected request in phase {phase}")


def _cli(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERRANDS_", "OPENAI_"))}
    env["ERRANDS_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "errands.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout + done.stderr


def test_a_task_that_changes_nothing_is_not_merged(sample_repo: Path, home: Path) -> None:
    main_before = run_git(sample_repo, "rev-parse", "main").strip()
    script = NothingToDo()
    with ScriptedLLM(script) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        task_id = add_task(client, add_project(client, sample_repo), title="Make add add")
        task = wait_for_state(client, task_id, "in_review")

        # Asked once, for the subtask that gave no reason; each reason is on its subtask.
        assert len(script.asked) == 1
        assert [s["state"] for s in task["subtasks"]] == ["empty", "empty"]
        assert [s["no_change_reason"] for s in task["subtasks"]] == [ALREADY_DONE, ASKED_WHY]
        assert [s["commit_sha"] for s in task["subtasks"]] == [None, None]
        assert task["no_change"] is True
        assert "Nothing to merge" in task["handoff"]
        assert ALREADY_DONE in task["handoff"] and ASKED_WHY in task["handoff"]
        kinds = [e["kind"] for e in events_of(client, task_id)]
        assert kinds.count("subtask.empty") == 2 and "subtask.nothing_changed" in kinds
        review_event = [e for e in events_of(client, task_id) if e["kind"] == "task.state"][-1]
        assert "Nothing to review" in review_event["message"]

        approved = client.post(f"/api/tasks/{task_id}/approve")
        assert approved.status_code == 409, approved.text
        error = approved.json()["error"]
        assert error["code"] == "nothing_to_merge"
        assert "changed nothing" in error["message"] and "cancel" in error["message"]
        assert client.get(f"/api/tasks/{task_id}").json()["state"] == "in_review"

        page = client.get(f"/tasks/{task_id}")
        assert page.status_code == 200
        assert 'id="no-change"' in page.text and ALREADY_DONE in page.text
        review = client.get(f"/tasks/{task_id}/review")
        assert review.status_code == 200
        assert "Nothing to merge" in review.text and ASKED_WHY in review.text

        shown = _cli(home, "task", "show", str(task_id))
        assert f"no change: {ALREADY_DONE}" in shown and "Nothing to merge" in shown
        assert "nothing to merge" in _cli(home, "approve", str(task_id))

        cancelled = client.post(f"/api/tasks/{task_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
    # Nothing landed.
    assert run_git(sample_repo, "rev-parse", "main").strip() == main_before


def test_a_branch_the_base_already_has_is_not_merged(sample_repo: Path, home: Path) -> None:
    with ScriptedLLM(CalcScript()) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        task_id, task = to_review(client, sample_repo)
        assert task["no_change"] is False
        # Meanwhile someone lands the very same change on main.
        changed = client.get(f"/api/tasks/{task_id}/diff").json()
        paths = [f["path"] for f in changed["files"]]
        branch = task["branch"]
        for path in paths:
            content = run_git(sample_repo, "show", f"{branch}:{path}")
            target = sample_repo / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        run_git(sample_repo, "add", "-A")
        run_git(sample_repo, "commit", "-q", "-m", "multiply, by hand")
        main_before = run_git(sample_repo, "rev-parse", "main").strip()

        assert client.post(f"/api/tasks/{task_id}/approve").status_code == 200

        def merge_refused() -> dict[str, Any] | None:
            now: dict[str, Any] = client.get(f"/api/tasks/{task_id}").json()
            assert now["state"] != "merged", "an empty squash was merged"
            return now if now["merge_error"] else None

        now = wait_for(merge_refused, timeout=60, what="merge refused")
        assert now["state"] == "in_review"
        assert "nothing to merge" in now["merge_error"]
        failed = [e for e in events_of(client, task_id) if e["kind"] == "merge.failed"]
        assert failed and failed[-1]["data"]["code"] == "nothing_to_merge"
    assert run_git(sample_repo, "rev-parse", "main").strip() == main_before
