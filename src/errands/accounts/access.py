"""Who may call which route: every route declares a ``Permit`` (a FastAPI dependency), and
the app refuses to start when one does not (``check_routes``).

A Permit resolves the request's principal (session cookie or bearer API token; nobody needs
one while no account exists), checks the role against the route's level, checks CSRF for
cookie-authenticated changes, and scopes the objects the path names (``task_id``, a
project) to the principal's organization: an object of another organization is "not found",
exactly as one that does not exist, so ids leak nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi import routing as fastapi_routing
from fastapi.routing import APIRoute, APIWebSocketRoute
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection
from starlette.status import WS_1008_POLICY_VIOLATION

from errands.accounts import service
from errands.accounts.errors import Forbidden, Unauthenticated
from errands.accounts.roles import Level, allows
from errands.accounts.service import ANONYMOUS, LOCAL, Principal
from errands.errors import ErrandsError, NotFound
from errands.ids import id_in
from errands.store import Database, Project, Task

SESSION_COOKIE = "errands_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Content types a page on another site can send without a CORS preflight: a cross-site form.
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


def _task_scope(session: Session, principal: Principal, value: str) -> None:
    if not value.lstrip("-").isdigit():
        return  # the route's own validation answers 422
    task = session.get(Task, id_in(value)) if id_in(value) is not None else None
    if task is None or service.project_org_id(session, task.project) != principal.org_id:
        raise NotFound(f"Task {value} does not exist.")


def _project_scope(session: Session, principal: Principal, value: str) -> None:
    project = session.get(Project, id_in(value)) if id_in(value) is not None else None
    if project is None:
        project = session.scalars(select(Project).where(Project.name == value)).first()
    if project is None or service.project_org_id(session, project) != principal.org_id:
        # The same words as for a project that does not exist: nothing leaks.
        raise NotFound(f"Project {value!r} does not exist.")


# Path parameters naming an object of an organization, and how to check it belongs to the
# principal's. Any other path parameter must be scoped by its handler, and say so.
SCOPES: dict[str, Callable[[Session, Principal, str], None]] = {
    "task_id": _task_scope,
    "project": _project_scope,
    "ref": _project_scope,
}


def accounts_active(conn: HTTPConnection, session: Session) -> bool:
    # Once on, never off again (accounts are not deleted back to zero), so it is cached.
    if getattr(conn.app.state, "accounts_active", False):
        return True
    active = service.accounts_exist(session)
    conn.app.state.accounts_active = active
    return active


def credentials(conn: HTTPConnection, session: Session) -> Principal | None:
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        found = service.token_principal(session, header[7:].strip())
        if found is None:
            raise Unauthenticated("The API token is unknown or revoked.")
        return found
    cookie = conn.cookies.get(SESSION_COOKIE)
    return service.session_principal(session, cookie) if cookie else None


class Permit:
    """A route's declared access level, as a dependency that enforces it.

    ``handler_scoped`` names path parameters the handler itself scopes to the organization
    (say, a token id it looks up with the principal's org)."""

    def __init__(self, level: Level, *, handler_scoped: frozenset[str] = frozenset()) -> None:
        self.level = level
        self.handler_scoped = handler_scoped

    def __repr__(self) -> str:
        return f"Permit({self.level!r})"

    async def __call__(self, conn: HTTPConnection) -> Principal:
        try:
            principal = await run_in_threadpool(self.resolve, conn)
            if (
                principal.via == "session"
                and self.level != "public"  # sign-in forms act as nobody yet
                and isinstance(conn, Request)
                and conn.method not in SAFE_METHODS
            ):
                await _check_csrf(conn, principal)
        except ErrandsError as exc:
            if conn.scope["type"] == "websocket":
                raise WebSocketException(WS_1008_POLICY_VIOLATION, exc.message[:120]) from exc
            raise
        conn.state.principal = principal
        conn.state.permit = self  # for recheck, while the connection stays open
        return principal

    def resolve(self, conn: HTTPConnection) -> Principal:
        db: Database = conn.app.state.db
        with db.session() as session:
            task_id = str(conn.path_params.get("task_id", ""))
            if task_id.lstrip("-").isdigit() and id_in(task_id) is None:
                # No such id can exist, and the database driver cannot even look it up.
                raise NotFound(f"Task {task_id} does not exist.")
            if not accounts_active(conn, session):
                return LOCAL
            principal = credentials(conn, session)
            if principal is None:
                if self.level == "public":
                    return ANONYMOUS
                raise Unauthenticated("Sign in, or send an API token (Authorization: Bearer).")
            if self.level in ("public", "user"):
                return principal
            if not allows(principal.role, self.level):
                raise Forbidden(
                    f"Your role in this organization ({principal.role}) does not allow this."
                )
            for name, value in conn.path_params.items():
                scope = SCOPES.get(name)
                if scope is not None:
                    scope(session, principal, str(value))
            return principal


async def _check_csrf(request: Request, principal: Principal) -> None:
    """Cookie-authenticated changes need the session's CSRF token (a form field or a
    header). A JSON request from a browser may instead carry an Origin — BrowserGuard has
    already refused any that is not this host, and another site cannot send JSON here
    without a CORS preflight we never grant."""
    sent = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if sent is None and content_type in FORM_TYPES:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if sent is None and content_type not in FORM_TYPES and request.headers.get("origin"):
        return
    if not sent or not hmac.compare_digest(sent, principal.csrf):
        raise Forbidden(
            "The form is out of date or came from another site (its CSRF token is missing or "
            "wrong): reload the page and try again."
        )


PUBLIC = Depends(Permit("public"))
USER = Depends(Permit("user"))
READ = Depends(Permit("read"))
ACT = Depends(Permit("act"))
ADMIN = Depends(Permit("admin"))

PublicPrincipal = Annotated[Principal, PUBLIC]
UserPrincipal = Annotated[Principal, USER]
Reader = Annotated[Principal, READ]
Actor = Annotated[Principal, ACT]
Admin = Annotated[Principal, ADMIN]


async def recheck(conn: HTTPConnection) -> Principal:
    """Check access again, exactly as the Permit that let this connection in did when it
    opened. A connection that stays open (the chat socket, an event stream) must not outlive
    the access it was opened with: a member removed, a role lowered, a token revoked, a
    session ended or signed out everywhere. Raises the ErrandsError the Permit would."""
    permit: Permit | None = getattr(conn.state, "permit", None)
    if permit is None:  # check_routes makes every route declare one: cannot happen
        raise Forbidden("This connection was opened without an access check.")
    principal = await run_in_threadpool(permit.resolve, conn)
    conn.state.principal = principal
    return principal


def principal_of(conn: HTTPConnection) -> Principal:
    found: Principal | None = getattr(conn.state, "principal", None)
    return found or LOCAL


# -- the rule every route follows, checked at start-up ---------------------------------------


@dataclass(frozen=True)
class RouteInfo:
    path: str
    methods: frozenset[str]
    dependant: Any
    params: tuple[str, ...]
    websocket: bool
    in_schema: bool


def routes_of(app: FastAPI) -> list[RouteInfo]:
    """Every API and WebSocket route with its full path, through included routers too
    (FastAPI keeps those behind wrappers; its private iterator is what the OpenAPI schema
    itself is built from)."""
    walk = getattr(fastapi_routing, "_iter_routes_with_context", None)
    pairs = walk(app.routes) if walk else [(route, None) for route in app.routes]
    found = []
    for route, ctx in pairs:
        if not isinstance(route, APIRoute | APIWebSocketRoute):
            continue  # /openapi.json, /docs and static files: no data of anyone
        source = ctx if ctx is not None else route
        found.append(
            RouteInfo(
                path=source.path or route.path,
                methods=frozenset(getattr(source, "methods", None) or ()),
                dependant=getattr(source, "dependant", None) or route.dependant,
                params=tuple(source.param_convertors or route.param_convertors),
                websocket=isinstance(route, APIWebSocketRoute),
                in_schema=bool(getattr(source, "include_in_schema", False)),
            )
        )
    return found


def permit_of(route: RouteInfo) -> Permit | None:
    pending: list[Any] = [route.dependant]
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, Permit):
            return dependant.call
        pending.extend(dependant.dependencies)
    return None


def check_routes(app: FastAPI) -> None:
    """Refuse to start when a route declares no Permit, or names an object in its path that
    nothing scopes to the organization: a new route cannot forget its access check."""
    problems = []
    for route in routes_of(app):
        permit = permit_of(route)
        if permit is None:
            problems.append(f"{route.path} declares no Permit")
            continue
        for name in route.params:
            if name not in SCOPES and name not in permit.handler_scoped:
                problems.append(f"{route.path}: path parameter {name!r} is scoped by nothing")
    if problems:
        raise RuntimeError("Routes without an access check: " + "; ".join(problems))


def visible(session: Session, principal: Principal, project: Project) -> bool:
    return principal.local or service.project_org_id(session, project) == principal.org_id
