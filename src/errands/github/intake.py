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
    "pull_request_review": frozenset({"submitted"}),
    "pull_request_review_comment": frozenset({"created"}),
    "push": None,  # push has no action
}
INSTALLATION_EVENTS = frozenset({"installation", "installation_repositories"})

# Where each handled event keeps what the job reads: (dotted path, type).
_REQUIRED: dict[str, list[tuple[str, type]]] = {
    "issues": [("issue.number", int), ("issue.title", str), ("sender.login", str)],
    "issue_comment": [
        ("issue.number", int),
        ("comment.id", int),
        ("comment.body", str),
        ("comment.user.login", str),
    ],
    "pull_request": [("pull_request.number", int), ("pull_request.head.ref", str)],
    "pull_request_review": [
        ("pull_request.number", int),
        ("review.state", str),
        ("review.user.login", str),
    ],
    "pull_request_review_comment": [
        ("pull_request.number", int),
        ("comment.id", int),
        ("comment.path", str),
        ("comment.body", str),
        ("comment.user.login", str),
    ],
    "push": [("ref", str), ("after", str)],
    "installation": [("installation.id", int), ("installation.account.login", str)],
    "installation_repositories": [("installation.id", int), ("installation.account.login", str)],
}

Status = Literal["duplicate", "queued", "done", "ignored"]


@dataclass(frozen=True)
class Receipt:
    delivery: str
    status: Status
    detail: str


def field(payload: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(payload, dict) or part not in payload:
            return None
        payload = payload[part]
    return payload


def validate(event: str, payload: Any) -> None:
    if not isinstance(payload, dict):
        raise MalformedWebhook("The webhook payload is not a JSON object.")
    needs = list(_REQUIRED.get(event, []))
    if event in HANDLED:
        needs.append(("repository.full_name", str))
    for path, kind in needs:
        value = field(payload, path)
        # bool is an int in Python; GitHub's numbers are never booleans.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise MalformedWebhook(
                f"The {event} payload lacks {path} (a {kind.__name__}); refusing it."
            )


def receive(db: Database, settings: Settings, delivery: str, event: str, payload: Any) -> Receipt:
    action = payload.get("action") if isinstance(payload, dict) else None
    handled = event in INSTALLATION_EVENTS or (
        event in HANDLED and (HANDLED[event] is None or action in (HANDLED[event] or ()))
    )
    if handled:
        validate(event, payload)
    elif not isinstance(payload, dict):
        raise MalformedWebhook("The webhook payload is not a JSON object.")
    try:
        with db.session() as session:
            return _record(session, settings, delivery, event, payload, handled=handled)
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
    *,
    handled: bool,
) -> Receipt:
    action = payload.get("action")
    repo_name = field(payload, "repository.full_name")
    row = GitHubDelivery(
        id=delivery,
        event=event,
        action=str(action) if isinstance(action, str) else None,
        repository=repo_name if isinstance(repo_name, str) else None,
        state="ignored",
    )
    session.add(row)
    session.flush()  # the duplicate check: raises IntegrityError on a seen delivery id
    if not handled:
        row.outcome = f"{event}.{action} is not something Errands acts on"
        row.processed_at = utcnow()
        return Receipt(delivery, "ignored", row.outcome)
    if event in INSTALLATION_EVENTS:
        row.outcome = _installation(session, event, payload)
        row.state, row.processed_at = "done", utcnow()
        return Receipt(delivery, "done", row.outcome)
    project = session.scalars(select(Project).where(Project.github_repo == repo_name)).first()
    if project is None:
        row.outcome = f"{repo_name} is not an Errands project"
        row.processed_at = utcnow()
        return Receipt(delivery, "ignored", row.outcome)
    row.project_id, row.payload, row.state = project.id, payload, "pending"
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


def _installation(session: Session, event: str, payload: dict[str, Any]) -> str:
    installation_id = int(payload["installation"]["id"])
    account = str(payload["installation"]["account"]["login"])
    action = payload.get("action")
    row = session.get(GitHubInstallation, installation_id)
    if row is None:
        row = GitHubInstallation(id=installation_id, account=account, repositories=[])
        session.add(row)
    names = set(row.repositories)
    if event == "installation":
        if action == "created":
            names = _names(payload.get("repositories"))
            row.active = True
        elif action in ("deleted", "suspend"):
            row.active = False
        elif action == "unsuspend":
            row.active = True
    else:
        names |= _names(payload.get("repositories_added"))
        names -= _names(payload.get("repositories_removed"))
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


def _names(repositories: Any) -> set[str]:
    if not isinstance(repositories, list):
        return set()
    return {str(r["full_name"]) for r in repositories if isinstance(r, dict) and "full_name" in r}
