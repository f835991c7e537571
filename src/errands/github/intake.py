"""Receiving a webhook delivery: record it once, answer at once, leave the work to a job.

Runs inside the request, so it only touches the store: a delivery id already seen is a
redelivery (the primary key makes that exact even when copies arrive concurrently);
installation bookkeeping is a few rows and is done here; events about a repository that is an
Errands project are stored with their payload for the project's ``github`` job; anything else
is acknowledged and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from errands.domain import JobKind, JobState
from errands.github.errors import MalformedWebhook
from errands.github.payloads import Event, InstallationEvent, installation_event, repo_event
from errands.jobs import ledger
from errands.settings import Settings
from errands.store import Database, GitHubDelivery, GitHubInstallation, Job, Project
from errands.store import events as event_log
from errands.store.models import utcnow

# The actions of each event the github job acts on; everything else is acknowledged.
HANDLED: dict[str, frozenset[str] | None] = {
    "issues": frozenset({"opened", "edited", "closed", "labeled"}),
    "issue_comment": frozenset({"created"}),
    "pull_request": frozenset({"closed"}),
    "pull_request_review": frozenset({"submitted", "edited", "dismissed"}),
    "pull_request_review_comment": frozenset({"created", "edited", "deleted"}),
    "pull_request_review_thread": frozenset({"resolved", "unresolved"}),
    "push": None,  # push has no action
}
INSTALLATION_EVENTS = frozenset({"installation", "installation_repositories"})

Status = Literal["duplicate", "queued", "done", "ignored"]


@dataclass(frozen=True)
class Receipt:
    delivery: str
    status: Status
    detail: str


def receive(db: Database, settings: Settings, delivery: str, event: str, payload: Any) -> Receipt:
    """Record one delivery. A payload that does not fit the model of what Errands reads is
    refused here (:class:`MalformedWebhook`, nothing stored), so the job never meets it."""
    if not isinstance(payload, dict):
        raise MalformedWebhook("The webhook payload is not a JSON object.")
    action = payload.get("action")
    typed: Event | InstallationEvent | None = None
    if event in INSTALLATION_EVENTS:
        typed = installation_event(event, payload)
    elif event in HANDLED:
        wanted = HANDLED[event]
        # (An action that is not a string, e.g. a list, is not hashable: never look it up.)
        if wanted is None or (isinstance(action, str) and action in wanted):
            typed = repo_event(event, payload)
    try:
        with db.session() as session:
            return _record(session, settings, delivery, event, payload, typed)
    except IntegrityError:
        # Another copy of this delivery got the row first (a redelivery, or GitHub retrying
        # while the first copy was still being handled): it has or will have the effect.
        return Receipt(delivery, "duplicate", "already received")


def _record(
    session: Session,
    settings: Settings,
    delivery: str,
    event: str,
    payload: dict[str, Any],
    typed: Event | InstallationEvent | None,
) -> Receipt:
    action = payload.get("action")
    repository = payload.get("repository")
    repo_name = repository.get("full_name") if isinstance(repository, dict) else None
    row = GitHubDelivery(
        id=delivery,
        event=event,
        action=action[:64] if isinstance(action, str) else None,
        repository=repo_name[:200] if isinstance(repo_name, str) else None,
        state="ignored",
    )
    session.add(row)
    session.flush()  # the duplicate check: raises IntegrityError on a seen delivery id
    if typed is None:
        row.outcome = f"{event}.{row.action} is not something Errands acts on"
        row.processed_at = utcnow()
        return Receipt(delivery, "ignored", row.outcome)
    if isinstance(typed, InstallationEvent):
        row.outcome = _installation(session, event, typed)
        row.state, row.processed_at = "done", utcnow()
        return Receipt(delivery, "done", row.outcome)
    repo_name = typed.repository.full_name
    project = session.scalars(select(Project).where(Project.github_repo == repo_name)).first()
    if project is None:
        row.outcome = f"{repo_name} is not an Errands project"
        row.processed_at = utcnow()
        return Receipt(delivery, "ignored", row.outcome)
    # What the job reads is the validated model, not the raw body: only fields of known
    # types are kept.
    row.project_id, row.payload, row.state = project.id, typed.model_dump(mode="json"), "pending"
    request_sync(session, settings, project.id)
    return Receipt(delivery, "queued", f"queued for project {project.name}")


def request_sync(session: Session, settings: Settings, project_id: int) -> None:
    """Queue the project's github job unless one is already waiting (it will see
    everything pending when it runs; a running one might already be past it)."""
    waiting = session.scalars(
        select(Job.id).where(
            Job.project_id == project_id,
            Job.kind == JobKind.GITHUB,
            Job.state == JobState.QUEUED,
        )
    ).first()
    if waiting is None:
        ledger.enqueue(
            session, JobKind.GITHUB, project_id=project_id, max_attempts=settings.job_max_attempts
        )


def _installation(session: Session, event: str, typed: InstallationEvent) -> str:
    installation_id = typed.installation.id
    account = typed.installation.account.login
    action = typed.action
    row = session.get(GitHubInstallation, installation_id)
    if row is None:
        row = GitHubInstallation(id=installation_id, account=account, repositories=[])
        session.add(row)
    names = set(row.repositories)
    if event == "installation":
        if action == "created":
            names = {r.full_name for r in typed.repositories or ()}
            row.active = True
        elif action in ("deleted", "suspend"):
            row.active = False
        elif action == "unsuspend":
            row.active = True
    else:
        names |= {r.full_name for r in typed.repositories_added}
        names -= {r.full_name for r in typed.repositories_removed}
    row.repositories = sorted(names)
    # Projects on a repository this installation no longer reaches lose their installation.
    for project in session.scalars(
        select(Project).where(Project.github_installation_id == installation_id)
    ):
        if not row.active or project.github_repo not in names:
            project.github_installation_id = None
    if row.active:
        for project in session.scalars(
            select(Project).where(Project.github_repo.in_(sorted(names)))
        ):
            project.github_installation_id = installation_id
    message = f"GitHub installation {installation_id} ({account}) {event}.{action}"
    event_log.record(session, "github.installation", message, data={"repositories": sorted(names)})
    return message
