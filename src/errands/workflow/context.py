"""What a running stage has at hand: the store, settings, the sandbox, models, its lease."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from errands.accounts import budget, cost, vault
from errands.agent.loop import AgentConfig
from errands.agent.providers import ModelHandle
from errands.domain import JobKind
from errands.errors import Cancelled, ConfigError, LeaseLost
from errands.faults import crash_point
from errands.git import Mirror
from errands.jobs import ledger
from errands.jobs.ledger import Lease
from errands.settings import Phase, Settings
from errands.store import Database, Project
from errands.store import events as event_log
from errands.workflow.mirrors import open_mirror


@dataclass(frozen=True)
class Services:
    """Concrete parts, wired by an entry point (CLI, web app, worker start-up)."""

    db: Database
    settings: Settings
    model_factory: Callable[[Settings, Phase], ModelHandle]


def workspace_name(task_id: int, job_id: int, epoch: int) -> str:
    # Per claim, not per job: a stalled attempt that wakes never touches the workspace of
    # the attempt that took its job over.
    return f"task-{task_id}-job-{job_id}-{epoch}"


class Redactor:
    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets

    def __call__(self, value: Any) -> Any:
        if not self.secrets:
            return value
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, "[redacted]")
            return value
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value


class JobContext:
    """One running job. Also the agent's ``Recorder``: events, usage, cancellation."""

    def __init__(
        self,
        services: Services,
        lease: Lease,
        cancel: threading.Event,
        *,
        fenced: bool = True,
    ) -> None:
        self.services = services
        # Every transaction of the job that writes is fenced by its lease: once another claim
        # took the job over, this attempt's writes are refused (LeaseLost) and it stops.
        self.db = (
            services.db.fenced(lambda session: ledger.fence(session, lease))
            if fenced
            else services.db
        )
        # The organization's own keys (stored encrypted), if it saved any, replace the
        # server's for this job, and are redacted from its events like the server's.
        settings = vault.settings_for_project(services.db, services.settings, lease.project_id)
        # The project's own model per phase, where it chose one.
        with services.db.session() as session:
            project = session.get(Project, lease.project_id)
            if project is not None:
                settings = settings.for_project(project.research_model, project.execute_model)
        self.settings = settings
        self.lease = lease
        self.cancel = cancel
        # Where origin's copy of each task branch was when this attempt last saw it (fetched
        # or pushed it): the expected value of its compare-and-swap pushes. In memory, per
        # attempt: a stalled attempt's view is older than any newer attempt's push.
        self.origin_tips: dict[str, str | None] = {}
        self.settled = False  # see settle
        self.redact = Redactor(self.settings.secrets())

    @property
    def task_id(self) -> int:
        if self.lease.task_id is None:
            raise RuntimeError(f"job {self.lease.job_id} ({self.lease.kind}) has no task")
        return self.lease.task_id

    # -- Recorder -------------------------------------------------------------------------

    def event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        # Each event commits on its own so clients following the log see it at once.
        self.record_events([(kind, message, data)])

    def record_events(self, items: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        """Several events in one transaction (what one model response holds)."""
        with self.db.session() as session:
            for kind, message, data in items:
                self._record(session, kind, message, data)

    def emit(self, kind: str, message: str, **data: Any) -> None:
        """Record an event in its own transaction. Never call this while holding a session
        that has written: SQLite allows one writer, and this would wait for that one."""
        self.event(kind, message, data)

    def record(self, session: Session, kind: str, message: str, **data: Any) -> None:
        """Record an event inside the caller's transaction (it lands with the caller's change)."""
        self._record(session, kind, message, data)

    def _record(self, session: Session, kind: str, message: str, data: dict[str, Any]) -> None:
        event_log.record(
            session,
            kind,
            self.redact(message),
            task_id=self.lease.task_id,
            project_id=self.lease.project_id,
            job_id=self.lease.job_id,
            data=self.redact(data),
        )

    def usage(self, requests: int, input_tokens: int, output_tokens: int) -> None:
        # Not fenced: a stale attempt's model calls cost money all the same.
        ledger.add_usage(
            self.services.db,
            self.lease.job_id,
            requests=requests,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
        cost.add_job_cost(
            self.services.db, self.lease.job_id, self._model(), input_tokens, output_tokens
        )

    def check_budget(
        self, input_tokens: int, output_tokens: int, *, next_input: int = 0, next_output: int = 0
    ) -> None:
        """Before each model call: stop (BudgetReached) once the task's or the organization's
        cap is spent, counting the run's usage so far, or when the call (estimated at
        ``next_input``/``next_output`` tokens) would pass it."""
        budget.check(
            self.db,
            task_id=self.lease.task_id,
            project_id=self.lease.project_id,
            model=self._model(),
            pending_input=input_tokens,
            pending_output=output_tokens,
            next_input=next_input,
            next_output=next_output,
        )

    def _model(self) -> str:
        # Research runs the research model; every other stage that calls a model executes.
        phase: Phase = "research" if self.lease.kind == JobKind.RESEARCH else "execute"
        try:
            return self.settings.model_for(phase)
        except ConfigError:
            return ""

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("The job was cancelled.")

    def settle(self, session: Session) -> None:
        """Mark this job succeeded inside the transaction that moves its task on, so that the
        moment a user sees the new state they can act on it (no "a job is still running"),
        and so that a worker that lost its lease cannot move the task at all."""
        crash_point("job.settle")
        ledger.settle(session, self.lease)
        # Its last event, in the same transaction: once settled, the lease is over and any
        # later write of this attempt would be refused.
        self.record(
            session, "job.succeeded", f"{self.lease.kind} job finished", job_kind=self.lease.kind
        )
        self.settled = True

    def check_lease(self) -> None:
        """Stop (LeaseLost) unless this attempt still holds an unexpired lease: called before
        an effect outside the database (a push, a landing), which no transaction fences.
        Those effects are compare-and-swaps too, for a stall right after this check."""
        if not ledger.still_held(self.services.db, self.lease):
            raise LeaseLost(
                f"job {self.lease.job_id}: attempt {self.lease.attempt} no longer holds its "
                "lease; leaving the job to the attempt that took it over"
            )

    # -- helpers for stages ---------------------------------------------------------------

    def agent_config(self, phase: Phase) -> AgentConfig:
        return AgentConfig(
            model=lambda: self.services.model_factory(self.settings, phase),
            max_requests=self.settings.agent_max_requests,
            output_retries=self.settings.output_retries,
        )

    def mirror(self, origin: str) -> Mirror:
        return open_mirror(self.settings, self.lease.project_id, origin)

    def workspace_name(self) -> str:
        return workspace_name(self.task_id, self.lease.job_id, self.lease.epoch)
