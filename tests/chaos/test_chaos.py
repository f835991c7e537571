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
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from errands import runtime
from errands.domain import TaskState
from errands.testing.scripted_llm import ScriptedLLM
from errands.testing.workload import Driver, Fleet, ModuleScript, make_origin, worker_env
from errands.workflow import actions
from tests.chaos.fleet import (
    chaos_settings,
    check_branches,
    check_exactly_once,
    check_history,
    reasons,
)

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
