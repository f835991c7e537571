"""Rebasing onto a moved base, on a local project (asked for with POST /api/tasks/{id}/rebase):
fenced like any job — a worker frozen in the middle of one (here while the agent resolves a
conflict) that wakes after another worker took the job over and published its own restack
pushes nothing and records nothing — and never silent: a conflict the agent leaves fails the
rebase, the reviewed stack stays, and the task page says so."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from errands import runtime
from errands.domain import JobKind, JobState, TaskState
from errands.jobs import ledger
from errands.jobs.ledger import Lease
from errands.jobs.worker import Outcome
from errands.store import Event, Job, Task
from errands.store.models import utcnow
from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from errands.workflow import actions
from errands.workflow.runner import Dispatcher
from tests.conftest import run_git
from tests.support import (
    add_project,
    add_task,
    final,
    phase_of,
    running_server,
    settings_for,
    wait_for_event,
    wait_for_state,
)

MULTIPLY = "\n\ndef multiply(a, b):\n    return a * b\n"


def test_a_stale_rebase_wakes_after_a_newer_one_and_pushes_nothing(
    sample_repo: Path, home: Path
) -> None:
    newer: list[Lease] = []
    outcomes: list[Outcome] = []
    resolutions = iter(["stale", "newer"])

    def model(req: ChatRequest) -> Reply:
        phase = phase_of(req)
        if phase == "research":
            return final(overview="c", requirements=[], relevant_files=[], risks=[], questions=[])
        if phase == "plan":
            return final(subtasks=[{"title": "Multiply", "steps": ["calc.py"]}], out_of_scope=[])
        if phase == "execute":
            if req.n_assistant == 0:
                return Reply.call(
                    "edit_file",
                    path="calc.py",
                    old_text="    return a + b\n",
                    new_text="    return a + b\n" + MULTIPLY,
                )
            return final(summary="Added multiply.", decisions=[])
        assert phase == "revise" and "conflicted" in req.user, req.user
        if req.n_assistant > 0:
            return final(summary="Resolved.", decisions=[])
        who = next(resolutions)
        if who == "stale":
            # This worker freezes past its lease; another claims the job and finishes the
            # rebase (its own model call is the next one); then this one wakes.
            with db.session() as session:
                expires = session.scalars(
                    select(Job.lease_expires_at).where(Job.kind == JobKind.REBASE)
                ).one()
            while expires is not None and utcnow() <= expires:
                time.sleep(0.05)
            claimed = ledger.claim(db, "another-worker", 600)
            assert claimed is not None and claimed.kind == JobKind.REBASE
            newer.append(claimed)
            thread = threading.Thread(
                target=lambda: outcomes.append(Dispatcher(services)(claimed, threading.Event()))
            )
            thread.start()
            thread.join(timeout=300)
        content = "def add(a, b):\n    return a - -b\n" + MULTIPLY
        if who == "stale":
            content += "\n\nSTALE = True\n"
        return Reply.call("write_file", path="calc.py", content=content)

    with ScriptedLLM(model) as llm:
        settings = settings_for(home, llm.base_url, job_max_attempts=3)
        with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
            task_id = add_task(client, add_project(client, sample_repo), title="Multiply")
            task = wait_for_state(client, task_id, "in_review")
        branch = task["branch"]
        # main moves under the task, in the same lines as its subtask.
        (sample_repo / "calc.py").write_text("def add(a, b):\n    return a - -b\n")
        run_git(sample_repo, "commit", "-q", "-am", "Subtract a negative")
        moved = run_git(sample_repo, "rev-parse", "HEAD").strip()

        db = runtime.open_database(settings)
        services = runtime.build_services(settings, db)
        with db.session() as session:
            actions.rebase(session, settings, task_id)
        stale = ledger.claim(db, "frozen-worker", 10)
        assert stale is not None and stale.kind == JobKind.REBASE
        stale_outcome = Dispatcher(services)(stale, threading.Event())
        assert llm.script_errors == []

    assert newer and outcomes, "the job was never taken over"
    assert outcomes[0].state is JobState.SUCCEEDED
    assert stale_outcome.state is JobState.QUEUED  # abandoned: lease lost
    tip = run_git(sample_repo, "rev-parse", branch).strip()
    calc = run_git(sample_repo, "show", f"{tip}:calc.py")
    assert "STALE" not in calc and "return a - -b" in calc and "multiply" in calc
    assert run_git(sample_repo, "merge-base", branch, "main").strip() == moved
    with db.session() as session:
        task_row = session.get_one(Task, task_id)
        assert task_row.state == TaskState.IN_REVIEW
        assert task_row.base_commit == moved
        assert [s.commit_sha for s in task_row.subtasks] == [tip]
        stale_events = session.scalars(
            select(Event.kind).where(Event.job_id == stale.job_id, Event.kind == "task.rebased")
        ).all()
        assert len(stale_events) == 1  # the newer attempt's only
    db.dispose()


def test_a_conflict_the_agent_leaves_fails_the_rebase_loudly_and_keeps_the_stack(
    sample_repo: Path, home: Path
) -> None:
    def model(req: ChatRequest) -> Reply:
        phase = phase_of(req)
        if phase == "research":
            return final(overview="c", requirements=[], relevant_files=[], risks=[], questions=[])
        if phase == "plan":
            return final(subtasks=[{"title": "Multiply", "steps": ["calc.py"]}], out_of_scope=[])
        if phase == "execute" and req.n_assistant == 0:
            return Reply.call(
                "edit_file",
                path="calc.py",
                old_text="    return a + b\n",
                new_text="    return a + b\n" + MULTIPLY,
            )
        # Executing, then the conflict: the agent says it is done without resolving it.
        return final(summary="Done.", decisions=[])

    with ScriptedLLM(model) as llm:
        settings = settings_for(home, llm.base_url)
        with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
            task_id = add_task(client, add_project(client, sample_repo), title="Multiply")
            task = wait_for_state(client, task_id, "in_review")
            before = run_git(sample_repo, "rev-parse", task["branch"]).strip()
            (sample_repo / "calc.py").write_text("def add(a, b):\n    return a - -b\n")
            run_git(sample_repo, "commit", "-q", "-am", "Subtract a negative")
            moved = run_git(sample_repo, "rev-parse", "HEAD").strip()

            assert client.post(f"/api/tasks/{task_id}/rebase").status_code == 200
            failed = wait_for_event(client, task_id, "task.rebase_failed")
            task = wait_for_state(client, task_id, "in_review")
            assert "conflict markers are still in calc.py" in failed["message"]
            assert task["base_commit"] != moved and task["base_moved_to"] == moved
            assert [s["state"] for s in task["subtasks"]] == ["committed"]
            assert run_git(sample_repo, "rev-parse", task["branch"]).strip() == before
            page = client.get(f"/tasks/{task_id}").text
            assert "Rebase failed:" in page and 'id="base-moved"' in page
        assert llm.script_errors == []
