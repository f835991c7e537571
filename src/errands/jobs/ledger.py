"""The job ledger: jobs are rows; a worker leases one, heartbeats while it runs, releases it.

A job whose worker vanished (SIGKILL, OOM, a lost machine) stops heartbeating; once its lease
expires any worker may claim it again, until it has used up its attempts. The durable-jobs
issue builds transport, backoff and fairness on top of exactly these operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from errands.domain import JobKind, JobState
from errands.store import Database, Job
from errands.store.models import utcnow

ACTIVE_JOB_STATES = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class Lease:
    job_id: int
    kind: JobKind
    task_id: int | None
    project_id: int
    attempt: int


def enqueue(
    session: Session,
    kind: JobKind,
    *,
    project_id: int,
    task_id: int | None = None,
    max_attempts: int = 3,
) -> Job:
    job = Job(
        kind=kind,
        project_id=project_id,
        task_id=task_id,
        state=JobState.QUEUED,
        max_attempts=max_attempts,
    )
    session.add(job)
    session.flush()
    return job


def active_job(session: Session, task_id: int) -> Job | None:
    return session.scalars(
        select(Job)
        .where(Job.task_id == task_id, Job.state.in_(ACTIVE_JOB_STATES))
        .order_by(Job.id.desc())
    ).first()


def claim(db: Database, owner: str, lease_seconds: float) -> Lease | None:
    """Lease the oldest runnable job, or return None. Safe against concurrent claimers:
    the final UPDATE only succeeds for the one worker that still sees the row claimable."""
    now = utcnow()
    with db.session() as session:
        candidates = session.scalars(
            select(Job.id)
            .where(
                or_(
                    (Job.state == JobState.QUEUED) & (Job.run_after <= now),
                    (Job.state == JobState.RUNNING) & (Job.lease_expires_at < now),
                ),
                Job.attempts < Job.max_attempts,
            )
            .order_by(Job.id)
            .limit(5)
        ).all()
        for job_id in candidates:
            result = session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    or_(
                        Job.state == JobState.QUEUED,
                        (Job.state == JobState.RUNNING) & (Job.lease_expires_at < now),
                    ),
                )
                .values(
                    state=JobState.RUNNING,
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    heartbeat_at=now,
                    started_at=now,
                    attempts=Job.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                job = session.get(Job, job_id)
                assert job is not None
                session.refresh(job)
                return Lease(
                    job_id=job.id,
                    kind=JobKind(job.kind),
                    task_id=job.task_id,
                    project_id=job.project_id,
                    attempt=job.attempts,
                )
    return None


def heartbeat(db: Database, job_id: int, owner: str, lease_seconds: float) -> bool:
    """Extend the lease; return True when cancellation of the job was requested."""
    now = utcnow()
    with db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner, Job.state == JobState.RUNNING)
            .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
        job = session.get(Job, job_id)
        return bool(job and job.cancel_requested)


def finish(
    db: Database, job_id: int, owner: str, state: JobState, error: str | None = None
) -> None:
    with db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner)
            .values(
                state=state,
                last_error=error,
                finished_at=utcnow(),
                lease_owner=None,
                lease_expires_at=None,
            )
        )


def requeue(db: Database, job_id: int, owner: str) -> None:
    """Give a job back untouched (worker shutdown); the attempt does not count."""
    with db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner)
            .values(
                state=JobState.QUEUED,
                attempts=Job.attempts - 1,
                lease_owner=None,
                lease_expires_at=None,
            )
        )


def exhausted(db: Database) -> list[Lease]:
    """Jobs whose lease expired after their last allowed attempt: marked failed, returned so
    the caller can tell their task why."""
    now = utcnow()
    gave_up: list[Lease] = []
    with db.session() as session:
        jobs = session.scalars(
            select(Job).where(
                Job.state == JobState.RUNNING,
                Job.lease_expires_at < now,
                Job.attempts >= Job.max_attempts,
            )
        ).all()
        for job in jobs:
            job.state = JobState.FAILED
            job.finished_at = now
            job.lease_owner = None
            job.last_error = (
                f"The worker running this job stopped responding {job.attempts} time(s); giving up."
            )
            gave_up.append(
                Lease(job.id, JobKind(job.kind), job.task_id, job.project_id, job.attempts)
            )
    return gave_up


def request_cancel(session: Session, task_id: int) -> None:
    """Queued jobs of the task are cancelled at once; a running one is told at its next
    heartbeat and stops its agent and commands."""
    for job in session.scalars(
        select(Job).where(Job.task_id == task_id, Job.state.in_(ACTIVE_JOB_STATES))
    ):
        if job.state == JobState.QUEUED:
            job.state = JobState.CANCELLED
            job.finished_at = utcnow()
        else:
            job.cancel_requested = True


def add_usage(
    db: Database, job_id: int, *, requests: int, input_tokens: int, output_tokens: int
) -> None:
    with db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                model_requests=Job.model_requests + requests,
                input_tokens=Job.input_tokens + input_tokens,
                output_tokens=Job.output_tokens + output_tokens,
            )
        )
