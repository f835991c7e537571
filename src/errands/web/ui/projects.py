"""Projects: list, add, edit (verify and setup commands, sandbox, execution), re-index."""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from errands.accounts.access import ACT, READ, principal_of, visible
from errands.errors import ErrandsError, InvalidInput
from errands.executors import EXECUTORS
from errands.schemas import EventPublic, ProjectPublic
from errands.settings import Settings
from errands.store import Database
from errands.store import events as event_log
from errands.web.deps import DbDep, SettingsDep, in_session, optional_int
from errands.web.ui.render import page, wants_json
from errands.workflow import actions

router = APIRouter(include_in_schema=False)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@router.get("/projects", response_model=None, dependencies=[READ])
def list_projects(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    def work(s: Session) -> list[tuple[ProjectPublic, int]]:
        who = principal_of(request)
        counts: dict[int, int] = {}
        for task in actions.list_tasks(s):
            counts[task.project_id] = counts.get(task.project_id, 0) + 1
        return [
            (ProjectPublic.of(p, settings), counts.get(p.id, 0))
            for p in actions.list_projects(s)
            if visible(s, who, p)
        ]

    rows = in_session(db, work)
    if wants_json(request):
        return JSONResponse([p.model_dump(mode="json") for p, _ in rows])
    return page(request, "projects.html", rows=rows)


def _new_page(
    request: Request,
    form: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    return page(request, "project_new.html", status=status, form=form or {}, error=error)


@router.get("/projects/new", response_model=None, dependencies=[READ])
def new_project(request: Request) -> Response:
    return _new_page(request)


@router.post("/projects/new", response_model=None, dependencies=[ACT])
def add_project(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    origin: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    base_branch: Annotated[str, Form()] = "",
    verify_commands: Annotated[str, Form()] = "",
    auto_execute: Annotated[str, Form()] = "",
    research_model: Annotated[str, Form()] = "",
    execute_model: Annotated[str, Form()] = "",
) -> Response:
    def work(s: Session) -> str:
        who = principal_of(request)
        project = actions.add_project(
            s,
            settings,
            origin,
            org_id=who.org_id,  # None in single-user mode
            trusted=who.local,
            name=name.strip() or None,
            base_branch=base_branch.strip() or None,
            verify_commands=_lines(verify_commands) or None,
            auto_execute=bool(auto_execute),
        )
        return project.name

    try:
        created = in_session(db, work)
    except ErrandsError as exc:
        form = {
            "origin": origin,
            "name": name,
            "base_branch": base_branch,
            "verify_commands": verify_commands,
            "auto_execute": bool(auto_execute),
        }
        return _new_page(request, form, exc.message, exc.status)
    return RedirectResponse(f"/projects/{quote(created, safe='')}", status_code=303)


def project_page(
    request: Request,
    db: Database,
    settings: Settings,
    ref: str,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    def work(s: Session) -> dict[str, Any]:
        project = actions.get_project(s, ref)
        events = event_log.list_events(s, project_id=project.id)
        return {
            "project": ProjectPublic.of(project, settings),
            "events": [EventPublic.model_validate(e) for e in events if e.task_id is None][-30:],
            "tasks": actions.list_tasks(s, project=project.id)[:20],
        }

    context = in_session(db, work)
    if wants_json(request):
        return JSONResponse(context["project"].model_dump(mode="json"))
    return page(
        request,
        "project.html",
        status=status,
        error=error,
        executors=sorted(EXECUTORS),
        **context,
    )


@router.get("/projects/{ref}", response_model=None, dependencies=[READ])
def show_project(request: Request, ref: str, db: DbDep, settings: SettingsDep) -> Response:
    return project_page(request, db, settings, ref)


@router.post("/projects/{ref}", response_model=None, dependencies=[ACT])
def edit_project(
    request: Request,
    ref: str,
    db: DbDep,
    settings: SettingsDep,
    verify_commands: Annotated[str, Form()] = "",
    setup_commands: Annotated[str, Form()] = "",
    setup_network: Annotated[str, Form()] = "",
    setup_hosts: Annotated[str, Form()] = "",
    sandbox_backend: Annotated[str, Form()] = "",
    base_branch: Annotated[str, Form()] = "",
    auto_execute: Annotated[str, Form()] = "",
    research_model: Annotated[str, Form()] = "",
    execute_model: Annotated[str, Form()] = "",
    executor: Annotated[str, Form()] = "",
    revise_executor: Annotated[str, Form()] = "",
    required_approvals: Annotated[str, Form()] = "",
    lean_after_hours: Annotated[str, Form()] = "",
    stacked_pulls: Annotated[str, Form()] = "",
) -> Response:
    def work(s: Session) -> str:
        verify, setup, hosts = _lines(verify_commands), _lines(setup_commands), _lines(setup_hosts)
        lean_after = _hours(lean_after_hours)
        project = actions.update_project(
            s,
            ref,
            # Empty means "not overridden here": the repository's file or detection decides.
            verify_commands=verify or None,
            clear_verify_commands=not verify,
            setup_commands=setup or None,
            clear_setup_commands=not setup,
            setup_network={"on": True, "off": False}.get(setup_network),
            setup_hosts=hosts or None,
            clear_setup_hosts=not hosts,
            sandbox_backend=sandbox_backend or None,
            auto_execute=bool(auto_execute),
            base_branch=base_branch.strip() or None,
            research_model=research_model,  # "" clears: the server's model again
            execute_model=execute_model,
            executor=executor,  # "" clears: .errands.toml or the server's again
            revise_executor=revise_executor,
            required_approvals=optional_int(required_approvals, "required_approvals"),
            stacked_pulls=bool(stacked_pulls),
            # Empty: questions asked while executing wait for people, however long.
            lean_after_hours=lean_after,
            clear_lean_after_hours=lean_after is None,
        )
        return project.name

    try:
        name = in_session(db, work)
    except ErrandsError as exc:
        return project_page(request, db, settings, ref, error=exc.message, status=exc.status)
    return RedirectResponse(f"/projects/{quote(name, safe='')}?saved=1", status_code=303)


@router.post("/projects/{ref}/reindex", response_model=None, dependencies=[ACT])
def reindex(request: Request, ref: str, db: DbDep, settings: SettingsDep) -> Response:
    try:
        name = in_session(db, lambda s: actions.reindex_project(s, settings, ref).name)
    except ErrandsError as exc:
        return project_page(request, db, settings, ref, error=exc.message, status=exc.status)
    return RedirectResponse(f"/projects/{quote(name, safe='')}?reindexing=1", status_code=303)


def _hours(value: str) -> float | None:
    """The "go on with the agent's leaning after" field: hours, or nothing."""
    value = value.strip()
    if not value:
        return None
    try:
        hours = float(value)
    except ValueError:
        raise InvalidInput(f"Go on after: {value[:40]!r} is not a number of hours.") from None
    if not math.isfinite(hours):
        raise InvalidInput("Go on after: give a number of hours, more than 0.")
    return hours  # its range is update_project's to check
