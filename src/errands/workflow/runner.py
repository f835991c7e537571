"""Dispatch a leased job to its stage and turn the way it ended into the task's state."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from errands.accounts import credits
from errands.accounts.cost import dollars
from errands.accounts.errors import BudgetReached
from errands.accounts.service import project_org_id
from errands.domain import ACTIVE_STATES, JobKind, JobState, TaskState
from errands.errors import (
    AgentOutputError,
    BaseMoved,
    Cancelled,
    DirtyWorkingTree,
    ErrandsError,
    LeaseLost,
    LLMError,
    MergeConflict,
    NothingToMerge,
    Paused,
)
from errands.forges.registry import stages as forge_stages
from errands.jobs import ledger
from errands.jobs.ledger import Lease
from errands.jobs.worker import Outcome
from errands.store import Job, Task
from errands.workflow import execute, index, merge, rebase, research, revise
from errands.workflow.context import JobContext, Services

log = logging.getLogger(__name__)

STAGES: dict[JobKind, Callable[[JobContext], None]] = {
    JobKind.INDEX: index.run,
    JobKind.RESEARCH: research.run,
    JobKind.EXECUTE: execute.run,
    JobKind.REVISE: revise.run,
    JobKind.MERGE: merge.run,
    JobKind.REBASE: rebase.run,
}

# Landing problems leave the task in review: the user can fix their checkout, or revise.
MERGE_PROBLEMS = (MergeConflict, BaseMoved, DirtyWorkingTree, NothingToMerge)


class Dispatcher:
    def __init__(self, services: Services) -> None:
        self.services = services
        # The workflow's own stages and each forge's (GitHub's sync job).
        self.stages = {**STAGES, **forge_stages(services.settings)}

    def __call__(self, lease: Lease, cancel: threading.Event) -> Outcome:
        try:
            return self._run(JobContext(self.services, lease, cancel))
        except LeaseLost:
            # Another claim owns the job now; this attempt leaves everything to it: no retry,
            # no failure recorded (every write of it, _fail's too, is refused anyway). The
            # requeue the worker makes of this outcome names this claim's epoch: a no-op.
            log.warning(
                "job %s: lease of attempt %s lost, abandoning it", lease.job_id, lease.attempt
            )
            return Outcome(JobState.QUEUED, "lease lost")

    def _run(self, ctx: JobContext) -> Outcome:
        lease = ctx.lease
        if lease.task_id is not None and not self._task_still_wants(ctx):
            return Outcome(JobState.CANCELLED, "the task is no longer active")
        ctx.emit(
            "job.started",
            f"{lease.kind} job started (attempt {lease.attempt})",
            job_kind=lease.kind,
            attempt=lease.attempt,
        )
        try:
            self.stages[lease.kind](ctx)
        except LeaseLost:
            raise
        except Paused:
            # The stage settled its job with the task waiting for answers.
            return Outcome(JobState.SUCCEEDED)
        except Cancelled:
            if not self._cancel_requested(lease.job_id):
                # Worker shutdown, or this worker could not renew the lease: resume elsewhere.
                return Outcome(JobState.QUEUED)
            ctx.emit("job.cancelled", f"{lease.kind} job stopped: the task was cancelled")
            return Outcome(JobState.CANCELLED, "cancelled")
        except MERGE_PROBLEMS as exc:
            self._merge_failed(ctx, exc)
            return Outcome(JobState.FAILED, exc.message)
        except BudgetReached as exc:
            # Stopped before a model call: what was committed stays; raising the cap and
            # retrying resumes the stage where it stopped (committed subtasks are not redone).
            ctx.emit("task.budget_reached", exc.message, job_kind=lease.kind)
            self._fail(ctx, exc.message, exc.code)
            return Outcome(JobState.FAILED, exc.message)
        except ErrandsError as exc:
            if exc.retryable and not lease.last_attempt:
                return self._retry_later(ctx, exc)
            message = exc.message
            if exc.retryable:
                message += f" (gave up after {lease.attempt} attempts)"
            self._fail(ctx, message, exc.code, refund=_platforms_fault(exc))
            return Outcome(JobState.FAILED, message)
        except Exception as exc:
            log.exception("job %s (%s) crashed", lease.job_id, lease.kind)
            message = f"Internal error in the {lease.kind} stage: {type(exc).__name__}: {exc}"
            self._fail(ctx, message, "internal_error", refund=True)
            return Outcome(JobState.FAILED, message)
        if not ctx.settled:  # a stage that moves no task on (index, GitHub sync)
            ctx.emit("job.succeeded", f"{lease.kind} job finished", job_kind=lease.kind)
        return Outcome(JobState.SUCCEEDED)

    def gave_up(self, lease: Lease) -> None:
        """The ledger gave up on a job whose workers kept dying: the task must not hang.
        (Not fenced: the ledger itself ended the lease, in the sweep that calls this.)"""
        ctx = JobContext(self.services, lease, threading.Event(), fenced=False)
        self._fail(
            ctx,
            f"The {lease.kind} job was interrupted {lease.attempt} time(s) (its worker stopped "
            "responding); giving up.",
            "worker_lost",
            refund=True,
        )

    # -- helpers --------------------------------------------------------------------------

    def _retry_later(self, ctx: JobContext, exc: ErrandsError) -> Outcome:
        settings = self.services.settings
        delay = ledger.retry_delay(
            ctx.lease.attempt, settings.job_retry_delay, settings.job_retry_max_delay
        )
        ctx.emit(
            "job.retrying",
            f"{ctx.lease.kind} job hit a temporary problem (attempt {ctx.lease.attempt} of "
            f"{ctx.lease.max_attempts}); retrying in {delay:.0f}s: {exc.message}",
            job_kind=ctx.lease.kind,
            attempt=ctx.lease.attempt,
            delay=round(delay, 3),
            code=exc.code,
        )
        return Outcome(JobState.QUEUED, exc.message, retry_in=delay)

    def _task_still_wants(self, ctx: JobContext) -> bool:
        with ctx.db.session() as session:
            task = session.get(Task, ctx.task_id)
            return task is not None and TaskState(task.state) in ACTIVE_STATES

    def _cancel_requested(self, job_id: int) -> bool:
        with self.services.db.session() as session:
            job = session.get(Job, job_id)
            return bool(job and job.cancel_requested)

    def _fail(self, ctx: JobContext, reason: str, code: str, *, refund: bool = False) -> None:
        """Fail the job and its task; with ``refund``, the platform's fault: on a billed
        install the job's spends are given back (errands.accounts.credits' rule)."""
        with ctx.db.session() as session:
            if ctx.lease.task_id is None:
                ctx.record(session, "job.failed", reason, job_kind=ctx.lease.kind, code=code)
                return
            task = session.get(Task, ctx.lease.task_id)
            if task is None:
                return
            ctx.record(session, "job.failed", reason, job_kind=ctx.lease.kind, code=code)
            org_id = project_org_id(session, task.project)
            refunded = 0
            if refund and org_id is not None:
                refunded = credits.refund_job(session, org_id, ctx.lease.job_id)
            if refunded:
                ctx.record(
                    session,
                    "credits.refunded",
                    f"The {ctx.lease.kind} job failed through no fault of the work: its "
                    f"{dollars(refunded)} of credits are given back",
                    micros=refunded,
                )
            if TaskState(task.state) in ACTIVE_STATES:
                task.failed_in = task.state
                task.state = TaskState.FAILED
                task.failure_reason = ctx.redact(reason)
                ctx.record(
                    session,
                    "task.state",
                    f"Task failed: {reason}",
                    state=TaskState.FAILED,
                    reason=reason,
                )

    def _merge_failed(self, ctx: JobContext, exc: ErrandsError) -> None:
        files = getattr(exc, "files", [])
        with ctx.db.session() as session:
            task = session.get_one(Task, ctx.task_id)
            task.merge_error = exc.message
            ctx.record(session, "merge.failed", exc.message, code=exc.code, files=files)


def _platforms_fault(exc: ErrandsError) -> bool:
    """Whether a job failing with ``exc`` is refunded (errands.accounts.credits' rule): a
    temporary problem that outlasted the retries, or the model endpoint failing — not the
    model's unusable output, which is the work's own outcome."""
    return exc.retryable or (isinstance(exc, LLMError) and not isinstance(exc, AgentOutputError))
