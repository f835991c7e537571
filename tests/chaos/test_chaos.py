"""Chaos: twenty tasks through the whole workflow while worker processes are SIGKILLed.

Workers are real ``errands worker`` processes. They die two ways: the test SIGKILLs one at
random every few seconds, and each worker kills itself at named crash points with some
probability (mid agent step, mid command, between a commit and recording it, between a
commit and publishing it, between landing a merge and recording it: the windows random
kills rarely hit). Dead workers are restarted. Every task must still end merged exactly
once, with no duplicate commits, branches or review requests, and no lease left behind.

Two set-ups: the embedded default (SQLite, one data directory shared by the workers, a
checkout as origin) and the multi-machine one (PostgreSQL and Redis on loopback, each
worker with its own data directory as if on its own machine, a bare remote as origin).
"""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from errands import runtime
from errands.domain import JobState, TaskState
from errands.settings import Settings
from errands.store import Event, Job, Subtask, Task
from errands.testing.scripted_llm import ScriptedLLM
from errands.testing.workload import Driver, Fleet, ModuleScript, make_origin, worker_env
from errands.workflow import actions
from tests.services import postgres_url, redis_queue
from tests.support import settings_for

TASKS = 20
WORKERS = 2
SEED = 20261122
KILL_WINDOW = 60.0  # seconds of outside kills; crash points go on to the end
DEADLINE = 420.0
CRASH_POINTS = ",".join(
    [
        "agent.step:0.02",
        "command.running:0.15",
        "subtask.committed:0.1",
        "branch.before_publish:0.1",
        "branch.published:0.1",
        "merge.before_land:0.1",
        "merge.after_land:0.15",
    ]
)


@pytest.fixture(params=["sqlite", "postgres+redis"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            yield {"database_url": None, "redis": None, "shared_home": True, "bare": False}
        else:
            url = stack.enter_context(postgres_url())
            redis_url, queue = stack.enter_context(redis_queue())
            yield {
                "database_url": url,
                "redis": (redis_url, queue),
                "shared_home": False,
                "bare": True,
            }


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


@pytest.mark.timeout(DEADLINE + 120)
def test_twenty_tasks_survive_sigkilled_workers(
    setup: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    origin_path = tmp_path / ("origin.git" if setup["bare"] else "origin")
    origin = make_origin(origin_path, bare=setup["bare"])
    homes = (
        [tmp_path / "home"] * WORKERS
        if setup["shared_home"]
        else [tmp_path / f"machine-{i}" for i in range(WORKERS)]
    )
    rng = random.Random(SEED)

    with ScriptedLLM(ModuleScript(command="sleep 0.3")) as llm:
        settings = chaos_settings(tmp_path / "home", llm.base_url, setup)
        db = runtime.open_database(settings)
        with db.session() as session:
            project = actions.add_project(
                session,
                settings,
                origin,
                name="chaos",
                verify_commands=["python3 -m compileall -q modules tests"],
            )
            project_id = project.id
        driver = Driver(db, settings)
        driver.add_tasks(project_id, TASKS)

        envs = [
            worker_env(chaos_settings(home, llm.base_url, setup), ERRANDS_CRASH_POINTS=CRASH_POINTS)
            for home in homes
        ]
        fleet = Fleet(envs, tmp_path / "logs")
        fleet.start()
        started = time.monotonic()
        next_kill = started + rng.uniform(1.0, 3.0)
        try:
            while True:
                states = driver.step()
                fleet.revive()
                if all(state == TaskState.MERGED for state in states.values()):
                    break
                failed = {i: s for i, s in states.items() if s == TaskState.FAILED}
                assert not failed, f"tasks failed: {reasons(db, list(failed))}"
                now = time.monotonic()
                assert now - started < DEADLINE, (
                    f"not all merged in time: {Counter(states.values())}"
                )
                if now >= next_kill and now - started < KILL_WINDOW:
                    fleet.kill(rng.randrange(WORKERS))
                    next_kill = now + rng.uniform(1.5, 4.0)
                time.sleep(0.2)
        finally:
            fleet.stop()
        elapsed = time.monotonic() - started

        check_exactly_once(db, driver.task_ids, project_id)
        check_history(origin_path, driver.task_ids)
        check_branches(db, driver.task_ids, homes)
        db.dispose()

    survived = fleet.kills + fleet.crashes
    with capsys.disabled():
        print(
            f"\nchaos[{'sqlite' if setup['shared_home'] else 'postgres+redis'}]: {TASKS} tasks "
            f"merged in {elapsed:.0f}s, surviving {survived} worker kills "
            f"({fleet.kills} SIGKILLs from outside, {fleet.crashes} at crash points; "
            f"{fleet.starts} worker starts)"
        )
    assert fleet.kills >= 5  # the run really was chaotic
    assert fleet.crashes >= 5


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
    for n in range(1, TASKS + 1):
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
