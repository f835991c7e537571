"""HTTP: the webhook endpoint GitHub delivers to, and the GitHub side of projects and tasks."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic_core import from_json
from sqlalchemy import select

from errands.accounts.access import ACT, PUBLIC, READ, Actor, Permit, Reader, visible
from errands.github import forge, manage, projects
from errands.github.errors import MalformedWebhook, WebhookTooLarge
from errands.github.intake import receive
from errands.github.signature import verify, verify_present
from errands.limits import Id
from errands.store import GitHubInstallation, Project, Task
from errands.web.deps import get_db, get_settings
from errands.web.errors import error_responses
from errands.workflow import actions

# GitHub caps webhook payloads at 25 MB; anything bigger is not from GitHub.
MAX_WEBHOOK_BYTES = 25 * 1024 * 1024

# Any of these may reach GitHub: not configured (400), GitHub failing (502) or rate-limiting.
router = APIRouter(prefix="/api/github", tags=["github"], responses=error_responses(400, 502, 503))


class GitHubProjectCreate(BaseModel):
    repository: Annotated[str, Field(description="owner/name")]
    name: str | None = None
    installation_id: Id | None = None


class GitHubProjectPublic(BaseModel):
    id: int
    name: str
    origin: str
    base_branch: str
    github_repo: str | None
    github_installation_id: int | None


class GitHubTaskPublic(BaseModel):
    id: int
    repository: str | None
    issue: int | None
    pull_request: int | None
    pull_request_url: str | None
    base_moved_to: str | None

    @classmethod
    def of(cls, task: Task) -> GitHubTaskPublic:
        return cls(
            id=task.id,
            repository=task.project.github_repo,
            issue=task.github_issue,
            pull_request=task.github_pr,
            pull_request_url=task.github_pr_url,
            base_moved_to=task.base_moved_to,
        )


class InstallationPublic(BaseModel):
    id: int
    account: str
    repositories: list[str]
    active: bool


async def _body(request: Request) -> bytes:
    """The raw body, refusing (413) before reading more than GitHub could ever send."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_WEBHOOK_BYTES:
        raise WebhookTooLarge(f"The payload is {int(declared):,} bytes; GitHub sends ≤25 MB.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_WEBHOOK_BYTES:
            raise WebhookTooLarge("The payload is over 25 MB; GitHub sends ≤25 MB.")
        chunks.append(chunk)
    return b"".join(chunks)


# Authenticated by its signature, not by a session or token.
@router.post(
    "/webhook", status_code=202, dependencies=[PUBLIC], responses=error_responses(401, 413)
)
async def webhook(request: Request) -> JSONResponse:
    """Verify, de-duplicate and record a delivery; the work happens in the project's job."""
    settings = get_settings(request)
    secret = forge.webhook_secret(settings)
    signature = request.headers.get("x-hub-signature-256")
    # An unsigned request is refused before its body is read: no one gets the server to
    # buffer 25 MB without at least claiming to be GitHub. Nothing else about it is looked at.
    verify_present(signature)
    body = await _body(request)
    verify(secret, body, signature)
    event = request.headers.get("x-github-event")
    delivery = request.headers.get("x-github-delivery")
    if not event or not delivery:
        raise MalformedWebhook("X-GitHub-Event and X-GitHub-Delivery headers are required.")
    if len(delivery) > 64 or len(event) > 64:
        raise MalformedWebhook("X-GitHub-Event or X-GitHub-Delivery is too long.")
    try:
        # pydantic's parser, not json.loads: it refuses nesting deeper than GitHub ever sends
        # (a signed "[[[[…" 100,000 deep is a 400, not a RecursionError).
        payload: Any = from_json(body)
    except ValueError as exc:
        raise MalformedWebhook(f"The payload is not valid JSON: {exc}") from exc
    if event == "ping":
        return JSONResponse({"delivery": delivery, "status": "pong"}, status_code=200)
    receipt = await asyncio.to_thread(receive, get_db(request), settings, delivery, event, payload)
    return JSONResponse(
        {"delivery": receipt.delivery, "status": receipt.status, "detail": receipt.detail},
        status_code=200 if receipt.status == "duplicate" else 202,
    )


@router.get("/installations")
def installations(request: Request, who: Reader) -> list[InstallationPublic]:
    with get_db(request).session() as session:
        # With accounts, an organization sees the installations its own projects use.
        mine = {
            p.github_installation_id
            for p in session.scalars(select(Project))
            if visible(session, who, p) and p.github_installation_id is not None
        }
        return [
            InstallationPublic(
                id=row.id,
                account=row.account,
                repositories=list(row.repositories),
                active=row.active,
            )
            for row in session.scalars(select(GitHubInstallation).order_by(GitHubInstallation.id))
            if who.local or row.id in mine
        ]


@router.post("/projects", status_code=201)
def add_project(body: GitHubProjectCreate, request: Request, who: Actor) -> GitHubProjectPublic:
    """A project from a repository the App is installed on (or the token reaches); its
    open issues are imported as tasks."""
    settings, db = get_settings(request), get_db(request)
    with db.session() as session:
        installation = body.installation_id or projects.known_installation(session, body.repository)
        # With accounts, the server's credentials serve only repositories the member may write.
        writer = None if who.local else projects.writer_of(session, who.user_id)
    info = projects.describe(settings, body.repository, installation, writer=writer)
    with db.session() as session:
        project = projects.add_project(session, settings, info, name=body.name)
        project.org_id = who.org_id  # None in single-user mode
        session.flush()
        return GitHubProjectPublic.model_validate(project, from_attributes=True)


@router.post("/projects/{project}/import", status_code=202, dependencies=[ACT])
def reimport(project: str, request: Request) -> GitHubProjectPublic:
    settings = get_settings(request)
    with get_db(request).session() as session:
        found = actions.get_project(session, project)
        projects.reimport(session, settings, found)
        return GitHubProjectPublic.model_validate(found, from_attributes=True)


@router.get("/tasks/{task_id}", dependencies=[READ])
def task(task_id: Id, request: Request) -> GitHubTaskPublic:
    with get_db(request).session() as session:
        found: Task = actions.get_task(session, task_id)
        return GitHubTaskPublic.of(found)


class IssueImport(BaseModel):
    start: bool = Field(default=False, description="Start its research at once.")


class IssueImported(BaseModel):
    task: int
    created: bool


@router.get("/projects/{project}/tasks", dependencies=[READ], responses=error_responses(404, 409))
def linked_tasks(project: str, request: Request) -> list[GitHubTaskPublic]:
    """The project's tasks that have an issue or a pull request on GitHub."""
    with get_db(request).session() as session:
        return [GitHubTaskPublic.of(t) for t in manage.linked(session, project)]


# The issue number is the repository's (the project is scoped), not an object of its own.
@router.post(
    "/projects/{project}/issues/{number}",
    dependencies=[Depends(Permit("act", handler_scoped=frozenset({"number"})))],
    responses=error_responses(404, 409),
)
def import_issue(project: str, number: Id, body: IssueImport, request: Request) -> IssueImported:
    """Import one issue as a task (once: an issue already imported answers its task)."""
    task, created = manage.import_issue(
        get_settings(request), get_db(request), project, number, start=body.start
    )
    return IssueImported(task=task, created=created)


@router.post(
    "/tasks/{task_id}/resync",
    status_code=202,
    dependencies=[ACT],
    responses=error_responses(404, 409),
)
def resync(task_id: Id, request: Request) -> GitHubTaskPublic:
    """Check the task's issue and pull request against GitHub again and write what differs."""
    with get_db(request).session() as session:
        found = manage.resync(session, get_settings(request), task_id)
        return GitHubTaskPublic.of(found)
