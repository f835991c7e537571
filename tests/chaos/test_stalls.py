"""Chaos: tasks through the whole workflow while worker processes FREEZE past their leases.

A frozen worker (SIGSTOP, a paused VM, a swap storm) is worse than a dead one: it wakes up
later and carries on from where it was, after another worker has taken its job over. Each
worker here freezes itself at the named crash points (after a subtask commit, after
publishing the branch, while landing a merge, in the transaction that settles a stage) for
well past the lease, and is then continued. Whatever the stale worker then tries must be
refused: every task merged exactly once, the squash on the base branch carries exactly the
reviewed branch tip's files, no subtask recorded twice or after its task went to review,
and no task failed.

Both set-ups of the kill test: SQLite with one shared data directory, and PostgreSQL + Redis
with one data directory per worker (as on separate machines).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from errands import runtime
from errands.domain import TaskState
from errands.faults import STALL_MESSAGE
from errands.store import Event, Task
from errands.testing.scripted_llm import ScriptedLLM
from errands.testing.workload import Driver, Fleet, ModuleScript, make_origin, worker_env
from errands.workflow import actions
from tests.chaos.fleet import (
    chaos_settings,
    check_branches,
    check_exactly_once,
    check_history,
    git,
    reasons,
)

TASKS = 6
WORKERS = 2
STALL = 8.0  # seconds frozen: well past the 3 s lease, so the job is taken over meanwhile
POINTS = ("subtask.committed", "branch.published", "merge.before_land", "job.settle")
# Each worker process freezes the first time it reaches each point: every point is
# exercised by both workers, deterministically, in a run of a couple of minutes.
STALL_POINTS = ",".join(f"{point}:1:stall:{STALL:g}:1" for point in POINTS)
DEADLINE = 300.0


@pytest.mark.timeout(DEADLINE + 120)
def test_stalled_workers_never_write_after_their_lease(
    setup: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    origin_path = tmp_path / ("origin.git" if setup["bare"] else "origin")
    origin = make_origin(origin_path, bare=setup["bare"])
    homes = (
        [tmp_path / "home"] * WORKERS
        if setup["shared_home"]
        else [tmp_path / f"machine-{i}" for i in range(WORKERS)]
    )

    with ScriptedLLM(ModuleScript()) as llm:
        settings = chaos_settings(tmp_path / "home", llm.base_url, setup)
        db = runtime.open_database(settings)
        with db.session() as session:
            project_id = actions.add_project(
                session,
                settings,
                origin,
                name="stalls",
                verify_commands=["python3 -m compileall -q modules tests"],
            ).id
        driver = Driver(db, settings)
        driver.add_tasks(project_id, TASKS)

        envs = [
            worker_env(chaos_settings(home, llm.base_url, setup), ERRANDS_CRASH_POINTS=STALL_POINTS)
            for home in homes
        ]
        logs = tmp_path / "logs"
        fleet = Fleet(envs, logs)
        fleet.start()
        started = time.monotonic()
        try:
            while True:
                states = driver.step()
                fleet.revive()
                if all(state == TaskState.MERGED for state in states.values()):
                    break
                failed = {i: s for i, s in states.items() if s == TaskState.FAILED}
                assert not failed, f"tasks failed: {reasons(db, list(failed))}"
                assert time.monotonic() - started < DEADLINE, (
                    f"not all merged in time: {Counter(states.values())}"
                )
                time.sleep(0.2)
        finally:
            fleet.stop()
        elapsed = time.monotonic() - started

        check_exactly_once(db, driver.task_ids, project_id)
        check_history(origin_path, driver.task_ids)
        check_branches(db, driver.task_ids, homes)
        check_nothing_written_late(db, driver.task_ids)
        check_squash_is_the_reviewed_tip(db, driver.task_ids, origin_path, homes)
        db.dispose()

    output = "".join(path.read_text(errors="replace") for path in logs.glob("*.log"))
    stalls = Counter(re.findall(rf"{STALL_MESSAGE} (\S+)", output))
    abandoned = output.count("abandoning it")
    with capsys.disabled():
        print(
            f"\nstalls[{'sqlite' if setup['shared_home'] else 'postgres+redis'}]: {TASKS} tasks "
            f"merged in {elapsed:.0f}s; {sum(stalls.values())} stalls of {STALL:g}s "
            f"({dict(stalls)}); {abandoned} stale attempts abandoned on waking"
        )
    assert fleet.crashes == 0  # frozen and continued, never killed
    assert set(stalls) == set(POINTS)  # every named point really froze a worker
    assert abandoned >= 1  # and some woke to find their job taken over


def check_nothing_written_late(db: Any, task_ids: list[int]) -> None:
    """No subtask recorded twice, none recorded once its task went to review (the stale
    execute worker of issue 15 recorded "Subtask 1 committed" after the approval), and no
    failure recorded by anyone."""
    with db.session() as session:
        events = session.execute(
            select(Event.id, Event.task_id, Event.kind, Event.message, Event.data)
            .where(Event.task_id.in_(task_ids))
            .order_by(Event.id)
        ).all()
    for task_id in task_ids:
        mine = [e for e in events if e.task_id == task_id]
        assert not [e for e in mine if e.kind in ("job.failed", "task.budget_reached")]
        assert not [e for e in mine if e.kind == "task.state" and e.data.get("state") == "failed"]
        review = max(
            e.id
            for e in mine
            if e.kind == "task.state" and e.data.get("state") == TaskState.IN_REVIEW
        )
        recorded = [e for e in mine if e.kind in ("subtask.committed", "subtask.recovered")]
        late = [e.message for e in recorded if e.id > review]
        assert late == [], f"task {task_id}: subtask recorded after review: {late}"
        positions = Counter(re.match(r"Subtask (\d+)", e.message)[1] for e in recorded)  # type: ignore[index]
        assert all(n == 1 for n in positions.values()), f"task {task_id}: {positions}"


def check_squash_is_the_reviewed_tip(
    db: Any, task_ids: list[int], origin: Path, homes: list[Path]
) -> None:
    """The squash on the base branch changes exactly what the reviewed branch tip changed,
    byte for byte (blob ids), and nothing else."""
    repos = [origin, *(m for home in set(homes) for m in (home / "mirrors").glob("*.git"))]
    with db.session() as session:
        for task_id in task_ids:
            task = session.get_one(Task, task_id)
            reviewed = session.scalars(
                select(Event.data)
                .where(Event.task_id == task_id, Event.kind == "task.state")
                .order_by(Event.id.desc())
            ).all()
            head = next(d["head"] for d in reviewed if d.get("state") == TaskState.IN_REVIEW)
            squash = task.merge_commit
            assert squash is not None and task.base_commit is not None
            landed = changes(origin, f"{squash}^", squash)
            holder = next(r for r in repos if has_commit(r, head))
            assert landed == changes(holder, task.base_commit, head), f"task {task_id}"


def changes(repo: Path, old: str, new: str) -> set[tuple[str, str]]:
    """(path, blob id) of every file ``new`` changes relative to ``old``."""
    out = git(repo, "diff-tree", "-r", "--no-renames", old, new)
    return {(line.split("\t")[1], line.split()[3]) for line in out.splitlines() if "\t" in line}


def has_commit(repo: Path, sha: str) -> bool:
    found = subprocess.run(
        ["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=repo, capture_output=True, check=False
    )
    return found.returncode == 0
