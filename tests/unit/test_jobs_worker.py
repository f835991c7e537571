"""A worker process's own duties on real, migrated databases: stopping the jobs whose lease it
can no longer renew."""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import text

from errands.domain import JobKind, JobState
from errands.jobs import ledger
from errands.jobs.ledger import Lease
from errands.jobs.transport import LocalTransport, attach
from errands.jobs.worker import Outcome, Worker
from errands.store import Database, Job, Project
from errands.store.models import utcnow
from tests.support import wait_for

LEASE = 6.0


def test_a_worker_that_cannot_renew_a_lease_stops_the_job_before_the_lease_ends(
    db: Database,
) -> None:
    with db.session() as session:
        project = Project(name="p", origin="/src/p", base_branch="main")
        session.add(project)
        session.flush()
        job_id = ledger.enqueue(session, JobKind.INDEX, project_id=project.id).id
    running = threading.Event()
    stopped: list[datetime] = []

    def handler(lease: Lease, cancel: threading.Event) -> Outcome:
        running.set()
        if cancel.wait(60):  # what the agent and the sandbox stop on
            stopped.append(utcnow())
        return Outcome(JobState.QUEUED)

    worker = Worker(db, handler, concurrency=1, poll_interval=0.05, lease_seconds=LEASE)
    worker.start()
    try:
        wait_for(running.is_set, timeout=30, what="the job to start")
        # The ledger becomes unwritable (as when the database is unreachable): every
        # heartbeat fails from now on.
        with db.engine.begin() as connection:
            connection.execute(text("ALTER TABLE jobs RENAME TO jobs_offline"))
        try:
            wait_for(lambda: stopped, timeout=60, what="the worker to stop its job")
        finally:
            with db.engine.begin() as connection:
                connection.execute(text("ALTER TABLE jobs_offline RENAME TO jobs"))
    finally:
        worker.stop()

    with db.session() as session:
        row = session.get_one(Job, job_id)
    # It stopped while its last renewed lease still ran: nobody else could have taken the
    # job yet, so the job never ran twice at once.
    assert row.lease_expires_at is not None
    assert stopped[0] < row.lease_expires_at


def test_one_ring_starts_a_burst_of_jobs_on_idle_slots(db: Database) -> None:
    """Idle slots wait for a turn and one ring gives one: a slot that claims a job hands the
    next idle slot a turn, so three jobs queued in one commit all start at once, long
    before the next look at the ledger."""
    started: list[int] = []
    release = threading.Event()

    def handler(lease: Lease, cancel: threading.Event) -> Outcome:
        started.append(lease.job_id)
        release.wait(60)
        return Outcome(JobState.SUCCEEDED)

    transport = LocalTransport()
    attach(transport, db)
    worker = Worker(db, handler, transport=transport, concurrency=3, poll_interval=600)
    worker.start()
    try:
        wait_for(lambda: worker._idle == 3, timeout=30, what="every slot to be idle")
        with db.session() as session:
            project = Project(name="p", origin="/src/p", base_branch="main")
            session.add(project)
            session.flush()
            for _ in range(3):
                ledger.enqueue(session, JobKind.INDEX, project_id=project.id)
        wait_for(lambda: len(started) == 3, timeout=60, what="all three jobs to start")
    finally:
        release.set()
        worker.stop()
