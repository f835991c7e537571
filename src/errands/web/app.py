"""The FastAPI application: JSON API under /api/, with an OpenAPI schema at /openapi.json.

``create_app`` is an entry point: it wires the store, the services and (for ``errands serve``)
an embedded worker, so one command runs everything.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from sqlalchemy.orm import Session

import errands
from errands import runtime
from errands.accounts import api as accounts_api
from errands.accounts import credits
from errands.accounts.access import (
    ACT,
    PUBLIC,
    READ,
    Actor,
    Permit,
    Reader,
    check_routes,
    recheck,
    visible,
)
from errands.accounts.audit import AuditTrail
from errands.accounts.service import Principal, dummy_hash
from errands.domain import TaskState, state_words
from errands.errors import Conflict, ErrandsError, InvalidInput, NotFound
from errands.git import Diff
from errands.github import routes as github_routes
from errands.jobs.worker import Worker
from errands.limits import Count, Id
from errands.schemas import (
    AnswerCreate,
    CommentCreate,
    CommentEdit,
    CommentPublic,
    CommentResolve,
    EventPublic,
    LocatedPublic,
    LocateRequest,
    ProjectCreate,
    ProjectPublic,
    ProjectUpdate,
    ReviewerPublic,
    ReviewersPublic,
    TaskCreate,
    TaskPublic,
    TaskSummary,
    ViewedMark,
    ViewedPublic,
)
from errands.settings import Settings
from errands.store import Database
from errands.store import events as event_log
from errands.store.models import utcnow
from errands.web import notifications as notification_routes
from errands.web.deps import DbDep, ReviewerDep, SettingsDep, in_session
from errands.web.errors import error_responses, json_error
from errands.web.guard import LOOPBACK_NAMES, BrowserGuard
from errands.web.headers import SecurityHeaders
from errands.web.openapi import install as install_openapi
from errands.web.ui import install as install_ui
from errands.workflow import actions, reviewers
from errands.workflow.code_index import OpenQueryFiles
from errands.workflow.reviewers import Reviewer

T = TypeVar("T")
# Comments are looked up within their task (which the Permit scopes), never on their own.
CommentActor = Annotated[
    Principal, Depends(Permit("act", handler_scoped=frozenset({"comment_id"})))
]
STREAM_POLL_SECONDS = 0.3
RESTING_STATES = {TaskState.MERGED, TaskState.CANCELLED, TaskState.FAILED}


def _viewed(
    session: Session, settings: Settings, task_id: int, subtask: int, reviewer: Reviewer
) -> ViewedPublic:
    task = actions.get_task(session, task_id)
    seen = reviewers.viewed_files(session, settings, task, reviewer, subtask)
    return ViewedPublic(subtask=subtask, viewed=sorted(seen))


def create_app(
    settings: Settings | None = None,
    *,
    embedded_worker: bool = False,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """``clock`` tells the time to what waits on it (sign-in throttling), so tests can move
    it instead of sleeping."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = runtime.open_database(settings)
        services = runtime.build_services(settings, db)
        dummy_hash()  # now, so that no sign-in (not even the first) takes longer than others
        # In the database, for the workers too (they need no Stripe settings): whether this
        # install's organizations need credits to execute (errands.accounts.credits).
        credits.record_install(db, settings.billing_enabled)
        app.state.db = db
        app.state.settings = settings
        # Each project's query file, held open for `locate` (see OpenQueryFiles).
        app.state.query_files = OpenQueryFiles(settings.home)
        worker: Worker | None = None
        if embedded_worker:
            worker = runtime.build_worker(services)
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await asyncio.to_thread(worker.stop)
            app.state.query_files.close()
            db.dispose()

    app = FastAPI(
        title="Errands",
        version=errands.__version__,
        description="Hand off a programming task, answer the questions that matter, review a "
        "stack of commits.",
        lifespan=lifespan,
    )

    app.state.clock = clock
    app.add_middleware(AuditTrail)
    app.add_middleware(BrowserGuard, loopback_only=settings.host in LOOPBACK_NAMES)
    # Outermost: a refusal of the guard's carries the headers too.
    docs = (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    app.add_middleware(
        SecurityHeaders, billing=settings.billing_enabled, docs=[p for p in docs if p]
    )

    @app.exception_handler(ErrandsError)
    async def errands_error(_: Request, exc: ErrandsError) -> JSONResponse:
        extra = {"files": exc.files} if hasattr(exc, "files") else {}
        answer = json_error(exc.code, exc.message, status=exc.status, **extra)
        answer.headers.update(exc.headers)
        return answer

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        # A body that does not parse is the request's form, not its content: 400, as the
        # README and /openapi.json say.
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        return json_error(
            "malformed_json" if malformed else "invalid_input",
            _encodable(f"Invalid request: {problems}"),
            status=400 if malformed else 422,
            details=_jsonable(exc.errors()),
        )

    _routes(app)
    app.include_router(github_routes.router)
    app.include_router(accounts_api.router)
    app.include_router(notification_routes.router)
    if settings.billing_enabled:
        # Imported only when on: the stripe package is the optional billing extra.
        from errands.billing import pages as billing_pages
        from errands.billing import routes as billing_routes

        app.include_router(billing_routes.router)
        app.include_router(billing_pages.router)
    install_ui(app)  # pages and static assets; wraps the handlers above for browsers
    install_openapi(app)  # every route's error statuses, documented
    check_routes(app)  # every route declares who may call it, or the app does not start
    return app


def _jsonable(value: Any) -> Any:
    # The details echo the input, which may hold NaN or infinity: JSON has no such numbers;
    # or lone surrogates (JSON's "\ud800"), which the answer cannot encode as UTF-8.
    return _encodable(json.loads(json.dumps(value, default=str), parse_constant=str))


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    return value


def _task_public(session: Session, task_id: int) -> TaskPublic:
    return TaskPublic.of(*actions.task_with_jobs(session, task_id))


def _routes(app: FastAPI) -> None:
    @app.get("/api/health", dependencies=[PUBLIC])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": errands.__version__}

    # -- projects ---------------------------------------------------------------------

    @app.get("/api/projects")
    def list_projects(db: DbDep, settings: SettingsDep, who: Reader) -> list[ProjectPublic]:
        return in_session(
            db,
            lambda s: [
                ProjectPublic.of(p, settings)
                for p in actions.list_projects(s)
                if visible(s, who, p)
            ],
        )

    @app.post("/api/projects", status_code=201)
    def add_project(
        body: ProjectCreate, db: DbDep, settings: SettingsDep, who: Actor
    ) -> ProjectPublic:
        def work(s: Session) -> ProjectPublic:
            project = actions.add_project(
                s,
                settings,
                body.origin,
                org_id=who.org_id,  # None in single-user mode
                trusted=who.local,
                name=body.name,
                base_branch=body.base_branch,
                verify_commands=body.verify_commands,
                auto_execute=body.auto_execute,
            )
            return ProjectPublic.of(project, settings)

        return in_session(db, work)

    @app.get("/api/projects/{project}", dependencies=[READ])
    def get_project(project: str, db: DbDep, settings: SettingsDep) -> ProjectPublic:
        return in_session(db, lambda s: ProjectPublic.of(actions.get_project(s, project), settings))

    @app.patch("/api/projects/{project}", dependencies=[ACT])
    def update_project(
        project: str, body: ProjectUpdate, db: DbDep, settings: SettingsDep
    ) -> ProjectPublic:
        return in_session(
            db,
            lambda s: ProjectPublic.of(
                actions.update_project(s, project, **body.model_dump(exclude_unset=True)),
                settings,
            ),
        )

    @app.post("/api/projects/{project}/reindex", status_code=202, dependencies=[ACT])
    def reindex(project: str, db: DbDep, settings: SettingsDep) -> ProjectPublic:
        return in_session(
            db,
            lambda s: ProjectPublic.of(actions.reindex_project(s, settings, project), settings),
        )

    @app.post("/api/projects/{project}/locate", dependencies=[READ])
    def locate(
        project: str, body: LocateRequest, request: Request, db: DbDep
    ) -> list[LocatedPublic]:
        """Where would this change go: files ranked for the text, with reasons and the
        symbols it points at, from the project's code index (no model). The text is data:
        it is neither stored nor logged."""
        project_id = in_session(db, lambda s: actions.get_project(s, project).id)
        query_files: OpenQueryFiles = request.app.state.query_files
        found = query_files.locate(project_id, body.text, limit=body.limit)
        if found is None:
            raise InvalidInput(
                f"Project {project!r} has no code index yet: index it (POST "
                f"/api/projects/{project}/reindex, or `errands index {project}`) and ask again."
            )
        return [LocatedPublic.model_validate(hit.to_json()) for hit in found]

    @app.get("/api/projects/{project}/events", dependencies=[READ])
    def project_events(
        project: str, db: DbDep, after: Annotated[Count, Query()] = 0
    ) -> list[EventPublic]:
        """Everything that happened to the project and its tasks (indexing included)."""

        def work(s: Session) -> list[EventPublic]:
            found = actions.get_project(s, project)
            return [
                EventPublic.model_validate(e)
                for e in event_log.list_events(s, project_id=found.id, after=after)
            ]

        return in_session(db, work)

    # -- tasks ------------------------------------------------------------------------

    @app.get("/api/tasks", responses=error_responses(404))  # ?project= names one
    def list_tasks(
        db: DbDep, who: Reader, project: str | None = None, state: str | None = None
    ) -> list[TaskSummary]:
        def work(s: Session) -> list[TaskSummary]:
            if project is not None and not visible(s, who, actions.get_project(s, project)):
                raise NotFound(f"Project {project!r} does not exist.")
            return [
                TaskSummary.model_validate(t)
                for t in actions.list_tasks(s, project=project, state=state)
                if visible(s, who, t.project)
            ]

        return in_session(db, work)

    @app.post("/api/tasks", status_code=201)
    def create_task(body: TaskCreate, db: DbDep, settings: SettingsDep, who: Actor) -> TaskPublic:
        def work(s: Session) -> TaskPublic:
            if not visible(s, who, actions.get_project(s, body.project)):
                raise NotFound(f"Project {body.project!r} does not exist.")
            task = actions.create_task(s, settings, body.project, body.title, body.body)
            s.flush()
            return _task_public(s, task.id)

        return in_session(db, work)

    @app.get("/api/tasks/{task_id}", dependencies=[READ])
    def get_task(task_id: Id, db: DbDep) -> TaskPublic:
        return in_session(db, lambda s: _task_public(s, task_id))

    @app.get("/api/tasks/{task_id}/handoff", response_class=PlainTextResponse, dependencies=[READ])
    def handoff(task_id: Id, db: DbDep) -> str:
        def work(s: Session) -> str:
            task = actions.get_task(s, task_id)
            if task.handoff is None:
                raise Conflict(f"Task {task_id} has no hand-off yet ({state_words(task.state)}).")
            return task.handoff

        return in_session(db, work)

    def _act(task_id: int, db: Database, action: Callable[[Session], object]) -> TaskPublic:
        def work(s: Session) -> TaskPublic:
            action(s)
            s.flush()
            return _task_public(s, task_id)

        return in_session(db, work)

    @app.post("/api/tasks/{task_id}/answers", dependencies=[ACT])
    def answer(task_id: Id, body: AnswerCreate, db: DbDep, settings: SettingsDep) -> TaskPublic:
        return _act(
            task_id,
            db,
            lambda s: actions.answer(
                s, settings, task_id, body.question, option=body.option, text=body.text
            ),
        )

    @app.post("/api/tasks/{task_id}/execute", dependencies=[ACT])
    def execute(task_id: Id, db: DbDep, settings: SettingsDep) -> TaskPublic:
        return _act(task_id, db, lambda s: actions.execute(s, settings, task_id))

    @app.post("/api/tasks/{task_id}/request-changes", dependencies=[ACT])
    def request_changes(
        task_id: Id, db: DbDep, settings: SettingsDep, reviewer: ReviewerDep
    ) -> TaskPublic:
        return _act(task_id, db, lambda s: actions.request_changes(s, settings, task_id, reviewer))

    @app.post("/api/tasks/{task_id}/rebase", dependencies=[ACT])
    def rebase(task_id: Id, db: DbDep, settings: SettingsDep) -> TaskPublic:
        """Restack a task in review onto its base branch's tip now, each subtask verified
        again (GitHub projects are rebased on their own when a push moves the base)."""
        return _act(task_id, db, lambda s: actions.rebase(s, settings, task_id))

    @app.post("/api/tasks/{task_id}/approve", dependencies=[ACT])
    def approve(task_id: Id, db: DbDep, settings: SettingsDep, reviewer: ReviewerDep) -> TaskPublic:
        """Approve as the caller; the merge is queued once the project's required number of
        reviewers approved the same head (see GET /api/tasks/{id}/reviewers)."""
        return _act(task_id, db, lambda s: actions.approve(s, settings, task_id, reviewer))

    @app.get("/api/tasks/{task_id}/reviewers", dependencies=[READ])
    def task_reviewers(
        task_id: Id, db: DbDep, settings: SettingsDep, reviewer: ReviewerDep
    ) -> ReviewersPublic:
        """Every reviewer's verdict and what they last reviewed; ``you`` is the caller."""

        def work(s: Session) -> ReviewersPublic:
            task = actions.get_task(s, task_id)
            needed, approvals, found = reviewers.standings(s, settings, task, reviewer)
            return ReviewersPublic(
                required_approvals=needed,
                approvals=approvals,
                reviewers=[
                    ReviewerPublic(
                        name=f.state.name,
                        you=f.you,
                        verdict=f.state.verdict,
                        current=f.current,
                        reviewed_head=f.state.reviewed_head,
                    )
                    for f in found
                ],
            )

        return in_session(db, work)

    @app.get("/api/tasks/{task_id}/viewed", dependencies=[READ])
    def viewed(
        task_id: Id,
        subtask: Annotated[Id, Query()],
        db: DbDep,
        settings: SettingsDep,
        reviewer: ReviewerDep,
    ) -> ViewedPublic:
        """The caller's files of the subtask marked viewed and unchanged since."""
        return in_session(db, lambda s: _viewed(s, settings, task_id, subtask, reviewer))

    @app.post("/api/tasks/{task_id}/viewed", dependencies=[ACT])
    def mark_viewed(
        task_id: Id, body: ViewedMark, db: DbDep, settings: SettingsDep, reviewer: ReviewerDep
    ) -> ViewedPublic:
        """Mark (``viewed: false``: unmark) a file of a subtask viewed, at its newest
        version, for the caller on every device; it resets when the subtask's change to
        that file changes in a newer version."""

        def work(s: Session) -> ViewedPublic:
            task = actions.get_task(s, task_id)
            reviewers.mark_viewed(s, settings, task, reviewer, body.subtask, body.path, body.viewed)
            return _viewed(s, settings, task_id, body.subtask, reviewer)

        return in_session(db, work)

    @app.post("/api/tasks/{task_id}/cancel", dependencies=[ACT])
    def cancel(task_id: Id, db: DbDep) -> TaskPublic:
        return _act(task_id, db, lambda s: actions.cancel(s, task_id))

    @app.post("/api/tasks/{task_id}/retry", dependencies=[ACT])
    def retry(task_id: Id, db: DbDep, settings: SettingsDep) -> TaskPublic:
        return _act(task_id, db, lambda s: actions.retry(s, settings, task_id))

    # -- review -----------------------------------------------------------------------

    @app.get("/api/tasks/{task_id}/diff", dependencies=[READ])
    def diff(
        task_id: Id,
        db: DbDep,
        settings: SettingsDep,
        subtask: Annotated[Id | None, Query()] = None,
        version: Annotated[
            Id | None, Query(description="With subtask: its diff as this version made it.")
        ] = None,
    ) -> dict[str, Any]:
        def work(s: Session) -> Diff:
            if version is not None:
                if subtask is None:
                    raise InvalidInput("version needs subtask: which subtask's version?")
                return actions.version_diff(s, settings, task_id, subtask, version)[1]
            return actions.diff(s, settings, task_id, subtask)[1]

        return in_session(db, work).to_dict()

    @app.get("/api/tasks/{task_id}/interdiff", dependencies=[READ])
    def interdiff(
        task_id: Id,
        db: DbDep,
        settings: SettingsDep,
        reviewer: ReviewerDep,
        subtask: Annotated[
            Id | None, Query(description="Compare two versions of this subtask (range-diff).")
        ] = None,
        old: Annotated[Id | None, Query()] = None,
        new: Annotated[Id | None, Query()] = None,
        since_round: Annotated[
            Id | None, Query(description="Without subtask: the whole stack since this round.")
        ] = None,
        mine: Annotated[
            bool, Query(description="The whole stack since the caller last reviewed it.")
        ] = False,
    ) -> dict[str, Any]:
        """What changed between two versions of a subtask (``subtask``, ``old``, ``new``:
        ``git range-diff``'s diff of the two patches), or on the whole stack since a review
        round (the previous one by default)."""

        def work(s: Session) -> dict[str, Any]:
            if mine:
                task = actions.get_task(s, task_id)
                found, before, after = reviewers.since_my_last_review(s, settings, task, reviewer)
                return {"old": before, "new": after, **found.to_dict()}
            if subtask is None:
                _, found, before, after = actions.interdiff(s, settings, task_id, since_round)
                return {"old": before, "new": after, **found.to_dict()}
            if old is None or new is None:
                raise InvalidInput("Comparing versions of a subtask needs old and new.")
            return actions.version_interdiff(s, settings, task_id, subtask, old, new).to_dict()

        return in_session(db, work)

    @app.get("/api/tasks/{task_id}/comments", dependencies=[READ])
    def comments(task_id: Id, db: DbDep) -> list[CommentPublic]:
        return in_session(
            db,
            lambda s: [
                CommentPublic.model_validate(c) for c in actions.get_task(s, task_id).comments
            ],
        )

    @app.post("/api/tasks/{task_id}/comments", status_code=201)
    def comment(
        task_id: Id, body: CommentCreate, db: DbDep, settings: SettingsDep, who: Actor
    ) -> CommentPublic:
        return in_session(
            db,
            lambda s: CommentPublic.model_validate(
                actions.add_comment(
                    s,
                    settings,
                    task_id,
                    path=body.path,
                    line=body.line,
                    body=body.body,
                    kind=body.kind,
                    side=body.side,
                    end_line=body.end_line,
                    subtask=body.subtask,
                    parent_id=body.parent_id,
                    author_id=who.user_id,
                )
            ),
        )

    # The comment is looked up within the task (already scoped), so it needs no scope of its own.
    @app.post(
        "/api/tasks/{task_id}/comments/{comment_id}/resolve",
        dependencies=[Depends(Permit("act", handler_scoped=frozenset({"comment_id"})))],
    )
    def resolve(
        task_id: Id, comment_id: Id, body: CommentResolve, db: DbDep, settings: SettingsDep
    ) -> CommentPublic:
        return in_session(
            db,
            lambda s: CommentPublic.model_validate(
                actions.resolve_comment(s, task_id, comment_id, body.resolved, settings=settings)
            ),
        )

    @app.patch("/api/tasks/{task_id}/comments/{comment_id}")
    def edit_comment(
        task_id: Id,
        comment_id: Id,
        body: CommentEdit,
        db: DbDep,
        settings: SettingsDep,
        who: CommentActor,
    ) -> CommentPublic:
        """Change a comment's text (its author's, in review); on GitHub too if it is there."""
        return in_session(
            db,
            lambda s: CommentPublic.model_validate(
                actions.edit_comment(
                    s, settings, task_id, comment_id, body.body, author_id=who.user_id
                )
            ),
        )

    @app.delete("/api/tasks/{task_id}/comments/{comment_id}", status_code=204)
    def delete_comment(
        task_id: Id, comment_id: Id, db: DbDep, settings: SettingsDep, who: CommentActor
    ) -> None:
        """Delete a comment and its replies (its author's, in review); on GitHub too."""
        in_session(
            db,
            lambda s: actions.delete_comment(
                s, settings, task_id, comment_id, author_id=who.user_id
            ),
        )

    # -- events -----------------------------------------------------------------------

    @app.get("/api/tasks/{task_id}/events", dependencies=[READ])
    def events(task_id: Id, db: DbDep, after: Annotated[Count, Query()] = 0) -> list[EventPublic]:
        def work(s: Session) -> list[EventPublic]:
            actions.get_task(s, task_id)
            return [
                EventPublic.model_validate(e)
                for e in event_log.list_events(s, task_id=task_id, after=after)
            ]

        return in_session(db, work)

    @app.get("/api/tasks/{task_id}/events/stream", dependencies=[READ])
    async def stream(
        request: Request,
        task_id: Id,
        db: DbDep,
        settings: SettingsDep,
        after: Annotated[Count, Query()] = 0,
        # EventSource sends back the last id it saw; it is a cursor like ``after``.
        last_event_id: Annotated[Count | None, Header()] = None,
    ) -> StreamingResponse:
        """Server-sent events, resumable with ``Last-Event-ID`` (or ``?after=``). The stream
        ends once the task rests in merged, cancelled or failed, or when the caller's access
        ends (checked again every ERRANDS_STREAM_RECHECK_SECONDS): then its last message is
        ``end`` with the error."""
        await asyncio.to_thread(in_session, db, lambda s: actions.get_task(s, task_id))
        start = after if last_event_id is None else last_event_id
        access = Recheck(lambda: recheck(request), settings.stream_recheck_seconds)
        return StreamingResponse(_sse(db, task_id, start, access), media_type="text/event-stream")


class Recheck:
    """Access of a long-lived response, checked again at most every ``seconds``."""

    def __init__(self, check: Callable[[], Awaitable[object]], seconds: float) -> None:
        self.check = check
        self.seconds = seconds
        self.last = time.monotonic()

    async def refused(self) -> ErrandsError | None:
        if time.monotonic() - self.last < self.seconds:
            return None
        try:
            await self.check()
        except ErrandsError as exc:
            return exc
        self.last = time.monotonic()
        return None


async def _sse(db: Database, task_id: int, after: int, access: Recheck) -> AsyncIterator[str]:
    def poll(cursor: int) -> tuple[list[EventPublic], str]:
        with db.session() as s:
            found = [
                EventPublic.model_validate(e)
                for e in event_log.list_events(s, task_id=task_id, after=cursor)
            ]
            return found, actions.get_task(s, task_id).state

    cursor = after
    idle = 0
    while True:
        refused = await access.refused()
        if refused is not None:
            error = {"code": refused.code, "message": refused.message}
            yield f"event: end\ndata: {json.dumps({'error': error})}\n\n"
            return
        found, state = await asyncio.to_thread(poll, cursor)
        for event in found:
            cursor = event.id
            yield f"id: {event.id}\nevent: {event.kind}\ndata: {event.model_dump_json()}\n\n"
        if not found and state in RESTING_STATES:
            yield f"event: end\ndata: {json.dumps({'state': state})}\n\n"
            return
        idle = 0 if found else idle + 1
        if idle and idle % 50 == 0:
            yield ": keep-alive\n\n"
        await asyncio.sleep(STREAM_POLL_SECONDS)
