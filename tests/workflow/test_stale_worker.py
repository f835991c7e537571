"""A worker that froze in the middle of a stage and woke after its job was taken over: the
stage's failure is not its to record (issue 15: a stale worker failed a task another worker
had already moved on)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import select

from errands import runtime
from errands.domain import JobKind, JobState, TaskState
from errands.jobs import ledger
from errands.jobs.ledger import Lease
from errands.store import Event, Job, Task
from errands.store.models import utcnow
from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from errands.workflow import actions
from errands.workflow.runner import Dispatcher
from tests.support import settings_for


def test_a_stale_worker_cannot_fail_the_task_it_no_longer_owns(
    tmp_path: Path, sample_repo: Path
) -> None:
    taken_over: list[Lease] = []

    def model(req: ChatRequest) -> Reply:
        # While the model is "thinking", this worker is frozen past its lease and another
        # worker claims the job; then the call fails for good (a terminal error).
        with db.session() as session:
            expires = session.scalars(
                select(Job.lease_expires_at).where(Job.kind == JobKind.RESEARCH)
            ).one()
        while expires is not None and utcnow() <= expires:
            time.sleep(0.05)
        newer = ledger.claim(db, "another-worker", 600)
        assert newer is not None
        taken_over.append(newer)
        return Reply.error(401, "invalid api key")

    with ScriptedLLM(model) as llm:
        settings = settings_for(tmp_path / "home", llm.base_url, job_max_attempts=3)
        db = runtime.open_database(settings)
        services = runtime.build_services(settings, db)
        with db.session() as session:
            project_id = actions.add_project(session, settings, str(sample_repo)).id
            # The index job is not what this test is about.
            for job in session.scalars(select(Job).where(Job.kind == JobKind.INDEX)):
                job.state = JobState.CANCELLED
            task_id = actions.create_task(session, settings, project_id, "Add multiply", "").id
        # Long enough for the stage to reach its first model call on a loaded machine (with
        # 0.5 s the lease once ran out before it, and the attempt was abandoned early); the
        # model waits for the lease to run out anyway.
        stale = ledger.claim(db, "frozen-worker", 10)
        assert stale is not None and stale.task_id == task_id

        outcome = Dispatcher(services)(stale, threading.Event())

    assert taken_over, "the model was never called"
    assert outcome.state is JobState.QUEUED  # abandoned: neither failed nor retried
    with db.session() as session:
        task = session.get_one(Task, task_id)
        assert (task.state, task.failure_reason) == (TaskState.RESEARCHING, None)
        kinds = session.scalars(select(Event.kind).where(Event.task_id == task_id)).all()
        assert "job.failed" not in kinds
        job = session.get_one(Job, stale.job_id)
        assert (job.state, job.lease_epoch) == (JobState.RUNNING, taken_over[0].epoch)
    db.dispose()
