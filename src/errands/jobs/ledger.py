"""The job ledger: jobs are rows; a worker leases one, heartbeats while it runs, releases it.

A job whose worker vanished (SIGKILL, OOM, a lost machine) stops heartbeating; once its lease
expires any worker may claim it again, until it has used up its attempts. Every claim bumps the
job's ``lease_epoch``, the fencing token its writes carry (``fence``): a worker that froze
past its lease and wakes up finds its writes refused. A job that hit a
retryable error goes back to the queue with a delay that doubles per attempt.

Claiming is fair and bounded: among runnable jobs, the project with the fewest running jobs
goes first (oldest job first within a project), and a project never runs more than its limit
at once across all workers. The limit is exact on PostgreSQL and SQLite alike: each claim
takes the project's row lock before counting (see ``_lock_project``).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Select,
    Update,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from errands.domain import JobKind, JobState
from errands.errors import LeaseLost
from errands.store import Database, Job, Project
from errands.store.db import FENCE_CHECKED
from errands.store.models import utcnow

ACTIVE_JOB_STATES = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class Lease:
    job_id: int
    kind: JobKind
    task_id: int | None
    project_id: int
    attempt: int
    max_attempts: int = 1
    owner: str = ""  # the worker holding the lease
    # The fencing token: the job's lease_epoch as this claim set it. Every write of the job
    # is checked against it (see fence).
    epoch: int = 0

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


# Session.info key: set when a transaction queued a job, so the transport can ring the
# workers' doorbell once that transaction has committed (never before: a woken worker must
# find the row).
QUEUED_IN_SESSION = "errands.jobs.queued"


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
    session.info[QUEUED_IN_SESSION] = True
    return job


def active_job(session: Session, task_id: int) -> Job | None:
    return session.scalars(
        select(Job)
        .where(Job.task_id == task_id, Job.state.in_(ACTIVE_JOB_STATES))
        .order_by(Job.id.desc())
    ).first()


def _runnable(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    return or_(
        (Job.state == JobState.QUEUED) & (Job.run_after <= now),
        (Job.state == JobState.RUNNING) & (Job.lease_expires_at < now),
    )


def _sync_busy() -> ColumnElement[bool]:
    """A project's ``github`` job while another of its ``github`` jobs is running (lease
    expired or not: an expired one is reclaimed, or given up on, before the next may start).
    One sync per project at a time: two would each look on GitHub for a comment or pull
    request, find none, and both post it."""
    other = aliased(Job)
    return (Job.kind == JobKind.GITHUB) & exists().where(
        other.project_id == Job.project_id,
        other.kind == JobKind.GITHUB,
        other.state == JobState.RUNNING,
        other.id != Job.id,
    )


def _running_now(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    return (Job.state == JobState.RUNNING) & (Job.lease_expires_at >= now)


@functools.cache
def _oldest_runnable() -> Select[int, int]:
    """Each project's oldest runnable job, as of the ``now`` parameter. Built once: every
    idle look at the ledger runs it, and building the statement (and its cache key) cost
    more than running it."""
    now = bindparam("now", type_=Job.run_after.type)
    return (
        select(Job.project_id, func.min(Job.id))
        .where(_runnable(now), Job.attempts < Job.max_attempts, ~_sync_busy())
        .group_by(Job.project_id)
    )


def claim(
    db: Database,
    owner: str,
    lease_seconds: float,
    *,
    project_limit: int = 4,
) -> Lease | None:
    """Lease the next runnable job fairly, or return None.

    ``project_limit`` applies to projects that set no limit of their own. The final
    compare-and-swap only succeeds for the one worker that still sees the row claimable,
    and under the project's lock, so neither a job nor a limit is ever double-booked by
    concurrent claimers."""
    now = utcnow()
    with db.session() as session:
        # Each project's oldest runnable job: however long one project's queue, the others'
        # jobs are always among the candidates.
        oldest: dict[int, int] = {
            project: job for project, job in session.execute(_oldest_runnable(), {"now": now})
        }
        if not oldest:
            return None
        running = dict(
            session.execute(
                select(Job.project_id, func.count())
                .where(_running_now(now), Job.project_id.in_(oldest))
                .group_by(Job.project_id)
            ).all()
        )
        limits = dict(
            session.execute(
                select(Project.id, Project.max_concurrent_jobs).where(Project.id.in_(oldest))
            ).all()
        )
    # Fewest running first, then whoever has waited longest: one busy project cannot starve
    # the others.
    for project_id in sorted(oldest, key=lambda p: (running.get(p, 0), oldest[p])):
        limit = limits.get(project_id) or project_limit
        if running.get(project_id, 0) >= limit:
            continue
        lease = _try_claim(db, oldest[project_id], project_id, limit, owner, lease_seconds)
        if lease is not None:
            return lease
    return None


@functools.cache
def _claim_statements() -> tuple[Select[int], Update, Select[str, int | None, int, int, int, int]]:
    """The claim's count, compare-and-swap and read-back, built once with parameters (the
    claim runs for every job, often twice: building them cost more than running them)."""
    now = bindparam("b_now", type_=Job.run_after.type)
    running = select(func.count()).where(
        _running_now(now), Job.project_id == bindparam("b_project")
    )
    take = (
        update(Job)
        .where(
            Job.id == bindparam("b_job"),
            _runnable(now),
            Job.attempts < Job.max_attempts,
            ~_sync_busy(),
        )
        .values(
            state=JobState.RUNNING,
            lease_owner=bindparam("b_owner"),
            lease_expires_at=bindparam("b_expires", type_=Job.lease_expires_at.type),
            heartbeat_at=now,
            started_at=now,
            attempts=Job.attempts + 1,
            lease_epoch=Job.lease_epoch + 1,
        )
        .execution_options(synchronize_session=False)
    )
    taken = select(
        Job.kind, Job.task_id, Job.project_id, Job.attempts, Job.max_attempts, Job.lease_epoch
    ).where(Job.id == bindparam("b_job"))
    return running, take, taken


def _try_claim(
    db: Database, job_id: int, project_id: int, limit: int, owner: str, lease_seconds: float
) -> Lease | None:
    running_in_project, take, taken = _claim_statements()
    with db.session() as session:
        _lock_project(session, project_id)
        now = utcnow()
        running = session.scalar(running_in_project, {"b_now": now, "b_project": project_id})
        if (running or 0) >= limit:
            return None
        result = session.execute(
            take,
            {
                "b_now": now,
                "b_job": job_id,
                "b_owner": owner,
                "b_expires": now + timedelta(seconds=lease_seconds),
            },
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        kind, task_id, project, attempts, max_attempts, epoch = session.execute(
            taken, {"b_job": job_id}
        ).one()
        return Lease(
            job_id=job_id,
            kind=JobKind(kind),
            task_id=task_id,
            project_id=project,
            attempt=attempts,
            max_attempts=max_attempts,
            owner=owner,
            epoch=epoch,
        )


def _lock_project(session: Session, project_id: int) -> None:
    """Serialise claims for one project until this transaction ends.

    PostgreSQL: a row lock. SQLite: a no-op write as the transaction's first statement,
    which takes the database's write lock *before* anything is read, so the count that
    follows cannot be stale (a deferred SQLite transaction that read first would be
    refused the lock instead)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Project.id).where(Project.id == project_id).with_for_update())
    else:
        session.execute(
            update(Project)
            .where(Project.id == project_id)
            .values(max_concurrent_jobs=Project.max_concurrent_jobs)
        )


def _held(lease: Lease) -> ColumnElement[bool]:
    """The job is still leased under ``lease``'s epoch: no claim has happened since."""
    return (
        (Job.id == lease.job_id)
        & (Job.lease_epoch == lease.epoch)
        & (Job.state == JobState.RUNNING)
    )


def fence(session: Session, lease: Lease) -> None:
    """Refuse the caller's transaction (``LeaseLost``, so it rolls back) unless ``lease`` is
    still the job's newest claim.

    The check is a no-op UPDATE of the job's row, so it holds that row's lock (PostgreSQL)
    or the database's write lock (SQLite) until the transaction ends: a claim bumping the
    epoch waits for this commit, and can never slip in between the check and the writes."""
    checked = session.execute(
        update(Job)
        .where(_held(lease))
        .values(lease_epoch=Job.lease_epoch)
        .execution_options(synchronize_session=False)
    )
    if checked.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(
            f"job {lease.job_id}: the lease of attempt {lease.attempt} (epoch {lease.epoch}) "
            "was taken over; this attempt writes nothing more"
        )
    session.info[FENCE_CHECKED] = True


def still_held(db: Database, lease: Lease) -> bool:
    """Whether ``lease`` is the job's newest claim and has not expired (as this machine's
    clock sees it): checked before effects outside the database, which no transaction
    covers (they are compare-and-swaps of their own on top)."""
    with db.session() as session:
        found = session.scalar(
            select(func.count()).where(_held(lease), Job.lease_expires_at >= utcnow())
        )
    return bool(found)


def heartbeat(db: Database, lease: Lease, lease_seconds: float) -> bool:
    """Extend the lease; return True when the job must stop: cancellation was requested, or
    the lease was lost (this worker stalled past it and another claim took the job over:
    going on would do the work twice)."""
    return lease in heartbeat_all(db, [lease], lease_seconds)


def heartbeat_all(db: Database, leases: list[Lease], lease_seconds: float) -> set[Lease]:
    """Extend every lease in ``leases`` in one transaction and return those whose jobs must
    stop (cancelled, or the lease lost: see ``heartbeat``).

    One write per worker and tick rather than one per running job: a worker with 16 jobs in
    flight otherwise commits 16 times a second, each a SQLite write lock and fsync."""
    if not leases:
        return set()
    now = utcnow()
    with db.session() as session:
        session.execute(
            update(Job)
            .where(or_(*(_held(lease) for lease in leases)))
            .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
        # Read back in the same transaction: which claims still hold, and which were cancelled.
        rows = session.execute(
            select(Job.id, Job.lease_epoch, Job.cancel_requested).where(
                or_(*(_held(lease) for lease in leases))
            )
        ).all()
    kept = {(row.id, row.lease_epoch): bool(row.cancel_requested) for row in rows}
    return {
        lease
        for lease in leases
        if kept.get((lease.job_id, lease.epoch), True)  # lost (absent) or cancelled
    }


def settle(session: Session, lease: Lease) -> None:
    """Mark the job succeeded inside the caller's transaction, only if ``lease`` is still its
    newest claim: a worker that stalled past its lease (another may be redoing the job)
    must not commit its stage's result. Raises ``LeaseLost``, rolling the transaction back."""
    fence(session, lease)
    session.execute(
        update(Job)
        .where(_held(lease))
        .values(
            state=JobState.SUCCEEDED,
            finished_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )


def finish(db: Database, lease: Lease, state: JobState, error: str | None = None) -> None:
    """Record how the job ended, if ``lease`` is still its newest claim (else a no-op)."""
    with db.session() as session:
        session.execute(
            update(Job)
            .where(_held(lease))
            .values(
                state=state,
                last_error=error,
                finished_at=utcnow(),
                lease_owner=None,
                lease_expires_at=None,
            )
        )


def requeue(db: Database, lease: Lease) -> None:
    """Give a job back untouched (worker shutdown); the attempt does not count. Released by
    (job, epoch), never by worker name: another thread of the same worker may hold a newer
    claim of the same job."""
    with db.session() as session:
        session.execute(
            update(Job)
            .where(_held(lease))
            .values(
                state=JobState.QUEUED,
                attempts=Job.attempts - 1,
                lease_owner=None,
                lease_expires_at=None,
            )
        )


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: the n-th retry waits up to base·2ⁿ⁻¹ (capped),
    and at least half of it, so retries of many jobs hit by one outage spread out."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


def retry_later(db: Database, lease: Lease, error: str, delay: float) -> None:
    """Put a job that hit a retryable error back in the queue, runnable after ``delay``
    seconds. The attempt counts."""
    with db.session() as session:
        session.execute(
            update(Job)
            .where(_held(lease))
            .values(
                state=JobState.QUEUED,
                last_error=error,
                run_after=utcnow() + timedelta(seconds=delay),
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
                Lease(
                    job.id,
                    JobKind(job.kind),
                    job.task_id,
                    job.project_id,
                    job.attempts,
                    job.max_attempts,
                    epoch=job.lease_epoch,
                )
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
