"""Pages of accounts and teams: sign-in, sign-up (first user, or with an invitation),
password reset, the account (tokens, email verification, log out everywhere), the
organization (members, invitations, budget, prices, secrets), usage and the audit log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from errands.accounts import api, audit, cost, github_login, service, vault
from errands.accounts.access import (
    ADMIN,
    PUBLIC,
    READ,
    SESSION_COOKIE,
    USER,
    Permit,
    principal_of,
)
from errands.billing.state import BillingPublic, summary
from errands.errors import ErrandsError, InvalidInput
from errands.limits import Id
from errands.notifications import prefs
from errands.settings import Settings
from errands.store import Organization, User
from errands.web import notifications as notification_routes
from errands.web.deps import DbDep, SettingsDep, in_session
from errands.web.ui.render import page

router = APIRouter(include_in_schema=False)
OWN_TOKEN = Depends(Permit("read", handler_scoped=frozenset({"token_id"})))
OWN_MEMBER = Depends(Permit("admin", handler_scoped=frozenset({"user_id"})))


def _page(request: Request, template: str, **context: Any) -> Response:
    context.setdefault("error", None)
    return page(request, template, **context)


def _safe_next(target: str) -> str:
    # Only paths on this site: never an open redirect to another.
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _signed_in(request: Request, s: Session, user: User, org_id: int, target: str) -> Response:
    response = RedirectResponse(_safe_next(target), status_code=303)
    api.sign_in(request, response, s, user, org_id)
    return response


# -- sign-in, sign-up, sign-out, reset -------------------------------------------------------


def _login_page(request: Request, **context: Any) -> Response:
    github = request.app.state.settings.github_oauth_configured
    return _page(request, "login.html", github=github, **context)


@router.get("/login", response_model=None, dependencies=[PUBLIC])
def login_form(request: Request, next: str = "/") -> Response:
    return _login_page(request, next=_safe_next(next), email="")


@router.post("/login", response_model=None, dependencies=[PUBLIC])
def login(
    request: Request,
    db: DbDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    def work(s: Session) -> Response:
        user = service.authenticate(s, email, password)
        return _signed_in(request, s, user, service.default_org(s, user.id), next)

    try:
        with api.throttled(request, email):
            return in_session(db, work)
    except ErrandsError as exc:
        answer = _login_page(request, status=exc.status, error=exc.message, next=next, email=email)
        answer.headers.update(exc.headers)
        return answer


def _used_states(request: Request) -> github_login.UsedStates:
    state = request.app.state
    if not hasattr(state, "github_used_states"):
        state.github_used_states = github_login.UsedStates()
    used: github_login.UsedStates = state.github_used_states
    return used


@router.get("/login/github", response_model=None, dependencies=[PUBLIC])
def github_start(request: Request) -> Response:
    settings = request.app.state.settings
    github_login.require_configured(settings)
    raw, hashed = github_login.new_state()
    response = RedirectResponse(github_login.authorize_url(settings, raw), status_code=303)
    response.set_cookie(
        github_login.STATE_COOKIE,
        hashed,
        max_age=github_login.STATE_SECONDS,
        path=github_login.CALLBACK_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get(github_login.CALLBACK_PATH, response_model=None, dependencies=[PUBLIC])
def github_callback(request: Request, db: DbDep, code: str = "", state: str = "") -> Response:
    settings = request.app.state.settings
    github_login.require_configured(settings)
    cookie = request.cookies.get(github_login.STATE_COOKIE)
    github_login.check_state(state, cookie, _used_states(request))
    who = github_login.identify(settings, code)

    def work(s: Session) -> Response:
        user, org_id = service.github_sign_in(
            s, github_id=who.id, login=who.login, email=who.email, name=who.name
        )
        response = _signed_in(request, s, user, org_id, "/")
        response.delete_cookie(github_login.STATE_COOKIE, path=github_login.CALLBACK_PATH)
        return response

    return in_session(db, work)


@router.get("/signup", response_model=None, dependencies=[PUBLIC])
def signup_form(request: Request, db: DbDep, code: str = "") -> Response:
    first = not in_session(db, service.accounts_exist)
    return _page(request, "signup.html", first=first, code=code, email="", name="")


@router.post("/signup", response_model=None, dependencies=[PUBLIC])
def signup(
    request: Request,
    db: DbDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    org_name: Annotated[str, Form()] = "",
    code: Annotated[str, Form()] = "",
) -> Response:
    def work(s: Session) -> Response:
        user, org_id = service.sign_up(
            s,
            email=email,
            password=password,
            name=name,
            org_name=org_name,
            invite_code=code or None,
        )
        return _signed_in(request, s, user, org_id, "/")

    try:
        return in_session(db, work)
    except ErrandsError as exc:
        first = not in_session(db, service.accounts_exist)
        return _page(
            request,
            "signup.html",
            status=exc.status,
            error=exc.message,
            first=first,
            code=code,
            email=email,
            name=name,
        )


@router.post("/logout", response_model=None, dependencies=[USER])
def logout(request: Request, db: DbDep) -> Response:
    session_id = principal_of(request).session_id
    if session_id is not None:
        in_session(db, lambda s: service.end_session(s, session_id))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/reset", response_model=None, dependencies=[PUBLIC])
def reset_form(request: Request, code: str = "") -> Response:
    return _page(request, "reset.html", code=code, sent=False)


@router.post("/reset", response_model=None, dependencies=[PUBLIC])
def reset_request(request: Request, email: Annotated[str, Form()] = "") -> Response:
    try:
        api.send_reset(request, email)
    except ErrandsError as exc:
        return _page(
            request, "reset.html", status=exc.status, error=exc.message, code="", sent=False
        )
    return _page(request, "reset.html", code="", sent=True)


@router.post("/reset/confirm", response_model=None, dependencies=[PUBLIC])
def reset_confirm(
    request: Request,
    db: DbDep,
    code: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    try:
        with api.throttled(request, None):
            in_session(db, lambda s: service.reset_password(s, code, password))
    except ErrandsError as exc:
        answer = _page(
            request, "reset.html", status=exc.status, error=exc.message, code=code, sent=False
        )
        answer.headers.update(exc.headers)
        return answer
    return RedirectResponse("/login?reset=1", status_code=303)


# -- the account ----------------------------------------------------------------------------------


def _account(
    request: Request,
    *,
    new_token: str | None = None,
    new_secret: str | None = None,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    who = principal_of(request)
    db = request.app.state.db

    def work(s: Session) -> dict[str, Any]:
        return {
            "me": api.me(s, who),
            "tokens": service.list_tokens(s, who) if who.org_id is not None else [],
            "notify": prefs.load(s, who.user_id) if who.user_id is not None else None,
        }

    return _page(
        request,
        "account.html",
        status=status,
        new_token=new_token,
        new_secret=new_secret,
        error=error,
        notice=notice,
        channels=prefs.CHANNELS,
        events=[(str(e), prefs.EVENT_WORDS[e]) for e in prefs.EVENTS],
        **in_session(db, work),
    )


@router.post("/account/notifications", response_model=None, dependencies=[USER])
async def save_notifications(request: Request, db: DbDep) -> Response:
    who = principal_of(request)
    form = await request.form()

    def picked(channel: str) -> list[str]:
        return [str(v) for v in form.getlist(channel)]

    body = notification_routes.NotificationSettingsSet(
        email=picked("email"),
        webhook=picked("webhook"),
        browser=picked("browser"),
        webhook_url=str(form.get("webhook_url") or ""),
        new_secret=form.get("new_secret") == "1",
    )

    def run() -> Response:
        user_id = notification_routes.user_of(who)
        saved = in_session(db, lambda s: notification_routes.save(s, user_id, body))
        return _account(request, new_secret=saved.webhook_secret, notice="Notifications saved.")

    return await run_in_threadpool(_attempt, request, run, back=_account)


@router.get("/account", response_model=None, dependencies=[USER])
def account(request: Request) -> Response:
    return _account(request)


def _attempt(
    request: Request, run: Callable[[], Response], *, back: Callable[..., Response]
) -> Response:
    try:
        return run()
    except ErrandsError as exc:
        return back(request, error=exc.message, status=exc.status)


@router.post("/account/tokens", response_model=None, dependencies=[READ])
def create_token(request: Request, db: DbDep, name: Annotated[str, Form()] = "") -> Response:
    who = principal_of(request)

    def run() -> Response:
        raw = in_session(db, lambda s: service.create_token(s, who, name)[0])
        return _account(request, new_token=raw)

    return _attempt(request, run, back=_account)


@router.post("/account/tokens/{token_id}/revoke", response_model=None, dependencies=[OWN_TOKEN])
def revoke_token(request: Request, token_id: Id, db: DbDep) -> Response:
    who = principal_of(request)
    in_session(db, lambda s: service.revoke_token(s, who, token_id))
    return RedirectResponse("/account", status_code=303)


@router.post("/account/logout-everywhere", response_model=None, dependencies=[USER])
def logout_everywhere(request: Request, db: DbDep) -> Response:
    user_id = principal_of(request).user_id
    if user_id is not None:
        in_session(db, lambda s: service.end_all_sessions(s, user_id))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/account/verify", response_model=None, dependencies=[USER])
def send_verification(request: Request) -> Response:
    def run() -> Response:
        api.send_verification(request, principal_of(request))
        return _account(request, notice="A verification code is on its way to your inbox.")

    return _attempt(request, run, back=_account)


@router.post("/account/verify/confirm", response_model=None, dependencies=[USER])
def confirm_verification(
    request: Request, db: DbDep, code: Annotated[str, Form()] = ""
) -> Response:
    user_id = principal_of(request).user_id or 0

    def run() -> Response:
        in_session(db, lambda s: service.confirm_email(s, user_id, code))
        return _account(request, notice="Your email address is verified.")

    return _attempt(request, run, back=_account)


# -- the organization (owners) ---------------------------------------------------------------------


def _org(
    request: Request,
    *,
    error: str | None = None,
    notice: str | None = None,
    link: str | None = None,
    status: int = 200,
) -> Response:
    who = principal_of(request)
    org_id = api.org_required(who)

    def work(s: Session) -> dict[str, Any]:
        return {
            "org": s.get_one(Organization, org_id),
            "members": service.members(s, org_id),
            "invitations": service.pending_invitations(s, org_id),
            "budget": api.org_budget(s, org_id),
            "prices": cost.price_table(s, org_id),
            "secrets": vault.listing(s, org_id),
            "secret_names": vault.NAMES,
            "billing": _billing(s, request.app.state.settings, org_id),
        }

    context = in_session(request.app.state.db, work)
    return _page(
        request, "org.html", status=status, error=error, notice=notice, link=link, **context
    )


def _billing(s: Session, settings: Settings, org_id: int | None) -> BillingPublic | None:
    """The organization's plan and credits when billing is on (errands.billing), else None."""
    if not settings.billing_enabled or org_id is None:
        return None
    return summary(s, settings, org_id)


@router.get("/org", response_model=None, dependencies=[ADMIN])
def org(request: Request) -> Response:
    return _org(request)


@router.post("/org/invite", response_model=None, dependencies=[ADMIN])
def invite(
    request: Request, email: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "member"
) -> Response:
    def run() -> Response:
        sent = api.send_invitation(request, principal_of(request), email, role)
        notice = f"Invitation sent to {sent.email}." if sent.sent else None
        return _org(request, notice=notice, link=sent.link)

    return _attempt(request, run, back=_org)


@router.post("/org/members/{user_id}", response_model=None, dependencies=[OWN_MEMBER])
def change_member(
    request: Request, user_id: Id, db: DbDep, role: Annotated[str, Form()] = ""
) -> Response:
    org_id = api.org_required(principal_of(request))

    def run() -> Response:
        if role == "remove":
            in_session(db, lambda s: service.remove_member(s, org_id, user_id))
        else:
            in_session(db, lambda s: service.set_role(s, org_id, user_id, role))
        return RedirectResponse("/org", status_code=303)

    return _attempt(request, run, back=_org)


def _usd(value: str) -> float | None:
    value = value.strip().lstrip("$")
    if not value:
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise InvalidInput(f"{value!r} is not an amount of dollars.") from exc


@router.post("/org/budget", response_model=None, dependencies=[ADMIN])
def set_budget(request: Request, db: DbDep, usd: Annotated[str, Form()] = "") -> Response:
    org_id = api.org_required(principal_of(request))

    def run() -> Response:
        cap = cost.to_micros(_usd(usd))

        def work(s: Session) -> None:
            s.get_one(Organization, org_id).monthly_budget_micros = cap

        in_session(db, work)
        return RedirectResponse("/org", status_code=303)

    return _attempt(request, run, back=_org)


@router.post("/org/prices", response_model=None, dependencies=[ADMIN])
def set_price(
    request: Request,
    db: DbDep,
    model: Annotated[str, Form()] = "",
    input_per_mtok: Annotated[str, Form()] = "",
    output_per_mtok: Annotated[str, Form()] = "",
) -> Response:
    org_id = api.org_required(principal_of(request))

    def run() -> Response:
        prices = (_usd(input_per_mtok) or 0.0, _usd(output_per_mtok) or 0.0)
        in_session(db, lambda s: cost.set_price(s, org_id, model, *prices))
        return RedirectResponse("/org", status_code=303)

    return _attempt(request, run, back=_org)


@router.post("/org/secrets", response_model=None, dependencies=[ADMIN])
def save_secret(
    request: Request,
    db: DbDep,
    name: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
) -> Response:
    org_id = api.org_required(principal_of(request))
    settings = request.app.state.settings

    def run() -> Response:
        in_session(db, lambda s: vault.save(s, settings, org_id, name, value))
        return _org(request, notice=f"{name} saved (encrypted; it is not shown again).")

    return _attempt(request, run, back=_org)


@router.post("/tasks/{task_id}/budget", response_model=None, dependencies=[ADMIN])
def task_budget(
    request: Request, task_id: Id, db: DbDep, usd: Annotated[str, Form()] = ""
) -> Response:
    from errands.web.ui.pages import task_page

    try:
        in_session(db, lambda s: api.set_task_budget(s, task_id, _usd(usd)))
    except ErrandsError as exc:
        return task_page(request, db, task_id, error=exc.message, status=exc.status)
    return RedirectResponse(f"/tasks/{task_id}#jobs", status_code=303)


# -- usage and the audit log --------------------------------------------------------------------


@router.get("/usage", response_model=None, dependencies=[READ])
def usage(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    who = principal_of(request)
    found, unpriced, billing = in_session(
        db,
        lambda s: (
            api.usage(s, who.org_id),
            cost.unpriced_models(s, who.org_id, settings),
            _billing(s, settings, who.org_id),
        ),
    )
    return _page(request, "usage.html", usage=found, unpriced=unpriced, billing=billing)


@router.get("/audit", response_model=None, dependencies=[ADMIN])
def audit_page(request: Request, db: DbDep) -> Response:
    org_id = api.org_required(principal_of(request))
    return _page(request, "audit.html", entries=in_session(db, lambda s: audit.entries(s, org_id)))
