"""What the chaos tests share: the workers' settings and the checks of the end state."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from errands.domain import JobState, TaskState
from errands.settings import Settings
from errands.store import Event, Job, Subtask, Task
from tests.support import settings_for


def chaos_settings(home: Path, llm_url: str, setup: dict[str, Any]) -> Settings:
    extra: dict[str, Any] = {}
    if setup["database_url"]:
        extra["database_url"] = setup["database_url"]
    if setup["redis"]:
        extra["redis_url"], extra["queue_name"] = setup["redis"]
    return settings_for(
        home,
        llm_url,
        worker_concurrency=2,
        worker_poll_interval=0.2,
        job_lease_seconds=3.0,
        job_max_attempts=25,
        job_retry_delay=0.2,
        project_max_jobs=4,
        **extra,
    )


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def reasons(db: Any, task_ids: list[int]) -> dict[int, str | None]:
    with db.session() as session:
        return {i: session.get_one(Task, i).failure_reason for i in task_ids}


def check_exactly_once(db: Any, task_ids: list[int], project_id: int) -> None:
    with db.session() as session:
        events = session.execute(
            select(Event.task_id, Event.kind, Event.data).where(Event.task_id.in_(task_ids))
        ).all()
        merged = Counter(task_id for task_id, kind, _ in events if kind == "task.merged")
        reviews = Counter(
            task_id
            for task_id, kind, data in events
            if kind == "task.state" and (data or {}).get("state") == TaskState.IN_REVIEW
        )
        assert merged == dict.fromkeys(task_ids, 1), "a task merged twice or not at all"
        assert reviews == dict.fromkeys(task_ids, 1), "a task was handed to review twice"

        # No job is left running or leased: every lease ended with its job.
        leftover = session.execute(
            select(Job.id, Job.kind, Job.state, Job.lease_expires_at).where(
                Job.project_id == project_id,
                (Job.state == JobState.RUNNING) | (Job.lease_owner.is_not(None)),
            )
        ).all()
        assert leftover == [], f"jobs still leased: {leftover}"
        queued = session.scalars(
            select(Job.id).where(Job.project_id == project_id, Job.state == JobState.QUEUED)
        ).all()
        assert queued == []
        for task_id in task_ids:
            subtasks = session.scalars(select(Subtask).where(Subtask.task_id == task_id)).all()
            assert [s.state for s in subtasks] == ["committed", "committed"]
            assert len({s.commit_sha for s in subtasks}) == 2


def check_history(origin: Path, task_ids: list[int]) -> None:
    # Driver.add_tasks numbers its tasks' modules 1..n.
    """The base branch got exactly one squash per task, and every task's files."""
    log = git(origin, "log", "--format=%H%x00%B%x01", "main")
    trailers = Counter(
        line.strip()
        for entry in log.split("\x01")
        for line in entry.splitlines()
        if line.strip().startswith("Errands-Task: ")
    )
    assert trailers == {f"Errands-Task: {i}": 1 for i in task_ids}
    files = set(git(origin, "ls-tree", "-r", "--name-only", "main").split())
    for n in range(1, len(task_ids) + 1):
        assert {f"modules/mod_{n}.py", f"tests/test_mod_{n}.py"} <= files
    # Branches are removed from origin once merged, and no other branch was ever made.
    assert git(origin, "for-each-ref", "--format=%(refname)", "refs/heads/errands/") == ""


def check_branches(db: Any, task_ids: list[int], homes: list[Path]) -> None:
    """One branch per task; on it, one commit per subtask (a resumed job adopted a commit
    its dead predecessor made instead of committing the subtask again)."""
    mirrors = {home / "mirrors" for home in homes}
    with db.session() as session:
        tasks = {i: session.get_one(Task, i) for i in task_ids}
        branches = {i: (t.branch, t.base_commit) for i, t in tasks.items()}
        subtask_ids = {
            i: sorted(s.id for s in session.scalars(select(Subtask).where(Subtask.task_id == i)))
            for i in task_ids
        }
    assert len({branch for branch, _ in branches.values()}) == len(task_ids)
    for task_id, (branch, base) in branches.items():
        complete = False
        for mirror in (m for root in mirrors for m in root.glob("project-*.git")):
            tip = subprocess.run(
                ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                cwd=mirror,
                capture_output=True,
                text=True,
                check=False,  # no such branch in this mirror: empty output
            ).stdout.strip()
            if not tip:
                continue
            bodies = git(mirror, "log", "--format=%B", f"{base}..{tip}")
            markers = [line for line in bodies.splitlines() if line.startswith("Errands-Subtask: ")]
            assert len(markers) == len(set(markers)), f"task {task_id}: a subtask committed twice"
            complete |= sorted(int(m.split(": ")[1]) for m in markers) == subtask_ids[task_id]
        assert complete, f"task {task_id}: no mirror holds its whole branch"
