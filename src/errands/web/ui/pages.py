"""Board, new-task form and task page, plus the task actions their forms post to."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from errands.accounts import cost
from errands.accounts.access import ACT, PUBLIC, READ, principal_of, visible
from errands.accounts.service import project_org_id
from errands.domain import TaskState
from errands.errors import ErrandsError, InvalidInput, NotFound
from errands.jobs import ledger
from errands.limits import Id
from errands.schemas import EventPublic, TaskPublic, TaskSummary
from errands.settings import Settings
from errands.store import Database
from errands.web.deps import DbDep, SettingsDep, get_settings, in_session, optional_int
from errands.web.ui.render import page, wants_json
from errands.workflow import actions

router = APIRouter(include_in_schema=False)

# The board's columns: what the user has to do (or wait for) next.
COLUMNS: list[tuple[str, str, frozenset[str]]] = [
    ("answers", "Needs answers", frozenset({TaskState.AWAITING_ANSWERS})),
    (
        "running",
        "Running",
        frozenset(
            {
                TaskState.CREATED,
                TaskState.RESEARCHING,
                TaskState.READY,
                TaskState.EXECUTING,
                TaskState.REVISING,
            }
        ),
    ),
    ("review", "In review", frozenset({TaskState.IN_REVIEW})),
    ("done", "Done", frozenset({TaskState.MERGED, TaskState.CANCELLED})),
    ("failed", "Failed", frozenset({TaskState.FAILED})),
]

SPEC_TEMPLATE = """## System context
What exists today, and why this change is needed.

## Scope
In scope:
-

Out of scope:
-

## Technical specifics
Files, modules, APIs, constraints.

## Acceptance criteria
- """

# Lines of the template that say nothing about the task when left as they are.
_PLACEHOLDERS = {
    line.strip().lower()
    for line in SPEC_TEMPLATE.splitlines()
    if not line.startswith("#") and line.strip() not in ("In scope:", "Out of scope:")
}

# What a good spec covers: (label, the heading or words that introduce it).
SPEC_SECTIONS: list[tuple[str, str]] = [
    ("System context", r"context|background"),
    ("Scope: in", r"in scope"),
    ("Scope: out", r"out of scope|non-goals?"),
    ("Technical specifics", r"technical|implementation"),
    ("Acceptance criteria", r"acceptance|done when"),
]


def _sections(body: str) -> list[tuple[str, list[str]]]:
    """Split a spec into (heading, meaningful lines) blocks. Headings are Markdown headings
    or lines ending in a colon ("Out of scope:"); template placeholders do not count."""
    blocks: list[tuple[str, list[str]]] = [("", [])]
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("#") or (line.endswith(":") and len(line) < 40):
            blocks.append((line.strip("#: ").lower(), []))
            continue
        content = line.lstrip("-*0123456789. ").strip()
        if content and line.lower() not in _PLACEHOLDERS:
            blocks[-1][1].append(content)
    return blocks


def readiness(title: str, body: str) -> list[str]:
    """The parts of a good spec the text is still missing (empty: it reads as ready)."""
    missing = [] if title.strip() else ["a title"]
    blocks = _sections(body)
    for label, pattern in SPEC_SECTIONS:
        covered = any(re.search(pattern, heading) and lines for heading, lines in blocks)
        # A free-form spec without headings may still mention the thing in passing.
        mentioned = any(re.search(pattern, " ".join(lines).lower()) for _, lines in blocks)
        if not (covered or mentioned):
            missing.append(label.lower())
    words = sum(len(" ".join(lines).split()) for _, lines in blocks)
    if words < 15:
        missing.append("more detail (a few sentences at least)")
    return missing


ICON = Path(__file__).parent / "static" / "favicon.svg"


@router.get("/favicon.ico", dependencies=[PUBLIC])
def favicon() -> FileResponse:
    """Browsers and feed readers ask for /favicon.ico whatever the page links to; the pages
    link the same icon, so no first visit logs a missing file."""
    return FileResponse(
        ICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
    )


# -- board ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    task: TaskSummary
    project: str
    tokens: int
    cost_micros: int = 0


@router.get("/", response_model=None, dependencies=[READ])
def board(
    request: Request,
    db: DbDep,
    project: str | None = None,
    q: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    def work(s: Session) -> dict[str, Any]:
        who = principal_of(request)
        projects = [p for p in actions.list_projects(s) if visible(s, who, p)]
        if project and not any(project in (p.name, str(p.id)) for p in projects):
            raise NotFound(f"Project {project!r} does not exist.")
        tasks = [
            t for t in actions.list_tasks(s, project=project or None) if visible(s, who, t.project)
        ]
        needle = q.strip().lower()
        if needle:
            tasks = [
                t for t in tasks if needle in t.title.lower() or needle.lstrip("#") == str(t.id)
            ]
        names = {p.id: p.name for p in projects}
        tokens = actions.tokens_by_task(s, [t.id for t in tasks])
        costs = cost.cost_by_task(s, [t.id for t in tasks])
        cards = [
            Card(
                TaskSummary.model_validate(t),
                names.get(t.project_id, "?"),
                tokens.get(t.id, 0),
                costs.get(t.id, 0),
            )
            for t in tasks
        ]
        return {"projects": projects, "cards": cards}

    found = in_session(db, work)
    cards: list[Card] = found["cards"]
    if wants_json(request):
        return JSONResponse([c.task.model_dump(mode="json") for c in cards])
    columns = [
        (key, title, [c for c in cards if c.task.state in states]) for key, title, states in COLUMNS
    ]
    return page(
        request,
        "board.html",
        columns=columns,
        projects=found["projects"],
        project=project or "",
        q=q,
        total=len(cards),
    )


# -- new task ---------------------------------------------------------------------------


def _new_task_page(
    request: Request,
    db: Database,
    *,
    project: str = "",
    title: str = "",
    body: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    who = principal_of(request)
    projects = in_session(db, lambda s: [p for p in actions.list_projects(s) if visible(s, who, p)])
    return page(
        request,
        "new_task.html",
        status=status,
        projects=projects,
        project=project,
        title=title,
        body=body or SPEC_TEMPLATE,
        error=error,
        missing=readiness(title, body) if title or body else [],
    )


@router.get("/tasks/new", response_model=None, dependencies=[READ])
def new_task_form(request: Request, db: DbDep, project: str = "") -> Response:
    return _new_task_page(request, db, project=project)


@router.post("/tasks/new/readiness", dependencies=[READ])
def spec_readiness(
    title: Annotated[str, Form()] = "", body: Annotated[str, Form()] = ""
) -> dict[str, list[str]]:
    """The form's live hint asks here, so the rules live in one place."""
    return {"missing": readiness(title, body)}


@router.post("/tasks/new", response_model=None, dependencies=[ACT])
def create_task(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    project: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
) -> Response:
    # The template's headings alone say nothing: a body left as the template is empty.
    text = "" if body.strip() == SPEC_TEMPLATE.strip() else body
    try:
        if not project:
            raise InvalidInput("Choose the project this task is for.")
        who = principal_of(request)

        def work(s: Session) -> int:
            if not visible(s, who, actions.get_project(s, project)):
                raise NotFound(f"Project {project!r} does not exist.")
            return actions.create_task(s, settings, project, title, text).id

        task_id = in_session(db, work)
    except ErrandsError as exc:
        return _new_task_page(
            request,
            db,
            project=project,
            title=title,
            body=body,
            error=exc.message,
            status=exc.status,
        )
    return RedirectResponse(f"/tasks/{task_id}", status_code=303)


# -- task page --------------------------------------------------------------------------

# Event kinds whose arrival changes what the page's structured parts show (state, plan,
# questions...): the page re-reads them. Other events only extend the log.
LIVE_KINDS = ("task.", "plan.", "subtask.", "research.", "question.", "review.", "job.", "merge.")


def _task_context(s: Session, settings: Settings, task_id: int) -> dict[str, Any]:
    task, jobs = actions.task_with_jobs(s, task_id)
    public = TaskPublic.of(task, jobs)
    events = [EventPublic.model_validate(e) for e in actions.recent_events(s, task_id)]
    chat = [e for e in events if e.kind in ("chat.user", "chat.agent")]
    chat_tokens = sum(
        int(e.data.get("input_tokens", 0)) + int(e.data.get("output_tokens", 0)) for e in chat
    )
    active = ledger.active_job(s, task_id)
    return {
        "task": public,
        "project": task.project,
        "events": events,
        "chat": chat,
        "chat_tokens": chat_tokens,
        "last_event_id": events[-1].id if events else 0,
        "active_job": active.kind if active else None,
        "live_kinds": LIVE_KINDS,
        "cost_micros": cost.task_cost(s, task_id),
        "unpriced": cost.unpriced_models(s, project_org_id(s, task.project), settings),
        "budget_micros": task.budget_micros,
    }


def task_page(
    request: Request, db: Database, task_id: int, *, error: str | None = None, status: int = 200
) -> Response:
    settings = get_settings(request)
    context = in_session(db, lambda s: _task_context(s, settings, task_id))
    if wants_json(request):
        return JSONResponse(context["task"].model_dump(mode="json"))
    return page(request, "task.html", status=status, error=error, **context)


@router.get("/tasks/{task_id}", response_model=None, dependencies=[READ])
def show_task(request: Request, task_id: Id, db: DbDep) -> Response:
    return task_page(request, db, task_id)


def act(
    request: Request,
    db: Database,
    task_id: int,
    action: Callable[[Session], object],
    *,
    then: str,
    on_error: Callable[[str, int], Response] | None = None,
) -> Response:
    """Run one state-changing action for a form; back to ``then`` on success, the page
    again with the reason on failure (a 4xx status, the form's page, no stack trace)."""
    try:
        in_session(db, action)
    except ErrandsError as exc:
        if on_error is not None:
            return on_error(exc.message, exc.status)
        return task_page(request, db, task_id, error=exc.message, status=exc.status)
    return RedirectResponse(then, status_code=303)


@router.post("/tasks/{task_id}/answer", response_model=None, dependencies=[ACT])
def answer(
    request: Request,
    task_id: Id,
    db: DbDep,
    settings: SettingsDep,
    question: Annotated[str, Form()] = "",
    option: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
) -> Response:
    def work(s: Session) -> object:
        number = optional_int(question, "The question")
        if number is None:
            raise InvalidInput("Which question is this an answer to?")
        chosen = optional_int(option, "The option")
        return actions.answer(s, settings, task_id, number, option=chosen, text=text)

    return act(request, db, task_id, work, then=f"/tasks/{task_id}#questions")


def _simple(name: str, run: Callable[[Session, Settings, int], object]) -> None:
    def handler(request: Request, task_id: Id, db: DbDep, settings: SettingsDep) -> Response:
        return act(
            request, db, task_id, lambda s: run(s, settings, task_id), then=f"/tasks/{task_id}"
        )

    router.add_api_route(
        f"/tasks/{{task_id}}/{name}",
        handler,
        methods=["POST"],
        response_model=None,
        dependencies=[ACT],
    )


_simple("execute", actions.execute)
_simple("cancel", lambda s, _settings, task_id: actions.cancel(s, task_id))
_simple("retry", actions.retry)
