"""An ``errands worker`` process: SIGTERM gives its running job back; a bad Redis URL is a
clear start-up error."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from errands import runtime
from errands.domain import JobKind, JobState
from errands.store import Job
from errands.testing.scripted_llm import ScriptedLLM
from errands.testing.workload import Driver, Fleet, ModuleScript, make_origin, worker_env
from errands.workflow import actions
from tests.support import free_port, settings_for, wait_for


def test_sigterm_hands_the_running_job_back_without_using_an_attempt(tmp_path: Path) -> None:
    origin = make_origin(tmp_path / "origin", bare=False)
    with ScriptedLLM(ModuleScript(command="sleep 60")) as llm:
        settings = settings_for(tmp_path / "home", llm.base_url, worker_poll_interval=0.1)
        db = runtime.open_database(settings)
        with db.session() as session:
            project_id = actions.add_project(session, settings, origin, verify_commands=["true"]).id
        driver = Driver(db, settings)
        driver.add_tasks(project_id, 1)
        fleet = Fleet([worker_env(settings)], tmp_path / "logs")
        fleet.start()
        try:

            def executing() -> Job | None:
                driver.step()  # answers the question
                with db.session() as session:
                    return session.scalars(
                        select(Job).where(
                            Job.kind == JobKind.EXECUTE, Job.state == JobState.RUNNING
                        )
                    ).first()

            job = wait_for(executing, timeout=60, what="the execute job to run")
            time.sleep(1.0)  # into the agent's `sleep 60`
            process = fleet.processes[0]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            fleet.stop()
        with db.session() as session:
            row = session.get_one(Job, job.id)
            assert (row.state, row.attempts, row.lease_owner) == (JobState.QUEUED, 0, None)
        db.dispose()


def test_an_unreachable_redis_stops_the_worker_at_once_with_a_clear_message(
    tmp_path: Path,
) -> None:
    env = worker_env(
        settings_for(tmp_path / "home", "http://127.0.0.1:9/v1"),
        ERRANDS_REDIS_URL=f"redis://:s3cret@127.0.0.1:{free_port()}/0",
    )
    result = subprocess.run(
        [sys.executable, "-c", "from errands.cli import main; main()", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "Cannot reach Redis at ERRANDS_REDIS_URL" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
