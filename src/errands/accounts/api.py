"""The accounts API: sign-up and sign-in, the signed-in user, API tokens, members and
invitations, prices, budgets and usage, organization secrets, the audit log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.orm import Session

from errands.accounts import audit, budget, cost, mail, service, throttle, vault
from errands.accounts.access import (
    SESSION_COOKIE,
    Admin,
    Permit,
    PublicPrincipal,
    Reader,
    UserPrincipal,
)
from errands.accounts.schemas import (
    AuditPublic,
    AuthStatus,
    BudgetSet,
    CodeOnly,
    Done,
    EmailOnly,
    InvitationCreate,
    InvitationPublic,
    InvitationSent,
    LogIn,
    MemberPublic,
    MePublic,
    NewPassword,
    OrgBudgetPublic,
    OrgChoice,
    OrgCreate,
    OrgPublic,
    PricePublic,
    PriceSet,
    RoleChange,
    SecretPublic,
    SecretSet,
    SignUp,
    TaskCostPublic,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    UsagePublic,
    UsageRowPublic,
)
from errands.accounts.service import Principal
from errands.errors import Conflict
from errands.limits import Id
from errands.store import Organization, Task, User
from errands.web.deps import get_db, get_settings
from errands.web.errors import error_responses

T = TypeVar("T")
router = APIRouter(prefix="/api", tags=["accounts"])
# Error statuses only some routes answer (the rest are documented by errands.web.openapi).
NEEDS_ORG = error_responses(409)  # org_required: no accounts yet (single-user mode)
THROTTLED = error_responses(429)
MAILS = error_responses(502)
# Routes whose path names an object the handler itself looks up within the organization.
TokenOwner = Annotated[Principal, Depends(Permit("read", handler_scoped=frozenset({"token_id"})))]
MemberAdmin = Annotated[Principal, Depends(Permit("admin", handler_scoped=frozenset({"user_id"})))]
SecretAdmin = Annotated[Principal, Depends(Permit("admin", handler_scoped=frozenset({"name"})))]


def _work(request: Request, work: Callable[[Session], T]) -> T:
    with get_db(request).session() as session:
        return work(session)


def org_required(principal: Principal) -> int:
    if principal.org_id is None:
        raise Conflict(
            "There are no accounts yet (single-user mode): sign up the first user at /signup "
            "or POST /api/auth/signup first."
        )
    return principal.org_id


def me(session: Session, principal: Principal) -> MePublic:
    if principal.user_id is None:
        return MePublic(local=principal.local, via=principal.via)
    user = session.get_one(User, principal.user_id)
    orgs = [OrgPublic(id=o.id, name=o.name, role=r) for o, r in service.orgs_of(session, user.id)]
    current = next((o for o in orgs if o.id == principal.org_id), None)
    return MePublic(
        local=False,
        id=user.id,
        email=user.email,
        name=user.name,
        email_verified=user.email_verified_at is not None,
        org=current,
        orgs=orgs,
        via=principal.via,
        csrf_token=principal.csrf or None,
    )


def client_address(request: Request) -> str:
    # The peer, or the client a trusted reverse proxy names (uvicorn's proxy headers:
    # FORWARDED_ALLOW_IPS, loopback by default).
    return request.client.host if request.client else "unknown"


def clock(request: Request) -> datetime:
    now: Callable[[], datetime] = request.app.state.clock  # create_app's, injectable
    return now()


@contextmanager
def throttled(request: Request, email: str | None) -> Iterator[None]:
    """One password (or reset code) attempt from this client, for this account if named:
    refused with 429 while it must wait (errands.accounts.throttle); counted as failed unless
    the block ends normally."""
    rules = throttle.Rules.of(get_settings(request))
    keys = [rules.address(client_address(request))]
    if email is not None:
        keys.append(rules.account(email))
    db = get_db(request)
    throttle.admit(db, rules, keys, clock(request))
    yield
    throttle.succeeded(db, rules, keys)


def set_session_cookie(request: Request, response: Response, raw: str, days: float) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        raw,
        max_age=int(days * 86400),
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def sign_in(
    request: Request, response: Response, session: Session, user: User, org_id: int
) -> Principal:
    settings = get_settings(request)
    raw, _ = service.start_session(session, user, org_id, timedelta(days=settings.session_days))
    set_session_cookie(request, response, raw, settings.session_days)
    request.app.state.accounts_active = True
    principal = service.session_principal(session, raw)
    assert principal is not None
    audit.record(session, principal, "sign_in", user.email)
    return principal


# -- sign-up, sign-in, sign-out ------------------------------------------------------------------


@router.get("/auth/status")
def auth_status(request: Request, principal: PublicPrincipal) -> AuthStatus:
    return AuthStatus(accounts=not principal.local, signed_in=principal.signed_in)


@router.post("/auth/signup", status_code=201)
def signup(body: SignUp, request: Request, response: Response, _: PublicPrincipal) -> MePublic:
    def work(s: Session) -> MePublic:
        user, org_id = service.sign_up(
            s,
            email=body.email,
            password=body.password,
            name=body.name,
            org_name=body.org_name,
            invite_code=body.invite_code,
        )
        if body.invite_code:
            _check_seats_on_join(request, s, org_id)
        return me(s, sign_in(request, response, s, user, org_id))

    return _work(request, work)


@router.post("/auth/login", responses=error_responses(401, 429))
def login(body: LogIn, request: Request, response: Response, _: PublicPrincipal) -> MePublic:
    def work(s: Session) -> MePublic:
        user = service.authenticate(s, body.email, body.password)
        return me(s, sign_in(request, response, s, user, service.default_org(s, user.id)))

    with throttled(request, body.email):
        return _work(request, work)


@router.post("/auth/logout")
def logout(request: Request, response: Response, principal: UserPrincipal) -> Done:
    if principal.session_id is not None:
        session_id = principal.session_id
        _work(request, lambda s: service.end_session(s, session_id))
    response.delete_cookie(SESSION_COOKIE, path="/")
    return Done(status="signed out")


@router.post("/auth/logout-everywhere")
def logout_everywhere(request: Request, response: Response, principal: UserPrincipal) -> Done:
    user_id = principal.user_id
    if user_id is not None:
        _work(request, lambda s: service.end_all_sessions(s, user_id))
    response.delete_cookie(SESSION_COOKIE, path="/")
    return Done(status="signed out everywhere")


def send_reset(request: Request, email: str) -> None:
    """Answer the same whether or not the address has an account (nothing to enumerate)."""
    settings = get_settings(request)

    def work(s: Session) -> str | None:
        if service.user_by_email(s, email) is None:
            return None
        return service.issue_code(s, "reset", email)

    code = _work(request, work)
    if code is not None:
        mail.send(
            settings,
            email.strip().lower(),
            "Reset your Errands password",
            "Someone (hopefully you) asked to reset your Errands password. Set a new one at\n\n"
            f"  {mail.public_url(settings)}/reset?code={code}\n\nor enter this code: {code}\n\n"
            "It works once, within an hour. If it was not you, ignore this message.",
        )


@router.post("/auth/password-reset", status_code=202, responses=MAILS)
def password_reset(body: EmailOnly, request: Request, _: PublicPrincipal) -> Done:
    send_reset(request, body.email)
    return Done(status="if the address has an account, a reset code is on its way")


@router.post("/auth/password-reset/confirm", responses=THROTTLED)
def password_reset_confirm(body: NewPassword, request: Request, _: PublicPrincipal) -> Done:
    with throttled(request, None):
        _work(request, lambda s: service.reset_password(s, body.code, body.password))
    return Done(status="password changed; every session was signed out")


# -- the signed-in user ---------------------------------------------------------------------------


@router.get("/me")
def whoami(request: Request, principal: UserPrincipal) -> MePublic:
    return _work(request, lambda s: me(s, principal))


@router.post("/orgs", status_code=201)
def create_org(body: OrgCreate, request: Request, principal: UserPrincipal) -> OrgPublic:
    """A new organization the user owns; switch to it with POST /api/me/org."""
    user_id = principal.user_id
    if user_id is None:
        raise Conflict("Sign up first: the first user's organization is created with them.")
    org = _work(request, lambda s: service.create_org(s, user_id, body.name))
    return OrgPublic(id=org.id, name=org.name, role="owner")


@router.post("/me/org")
def switch_org(body: OrgChoice, request: Request, principal: UserPrincipal) -> MePublic:
    if principal.session_id is None:
        raise Conflict("An API token belongs to one organization; create one in the other.")

    def work(s: Session) -> MePublic:
        service.switch_org(s, principal, body.org_id)
        role = service.role_in(s, principal.user_id or 0, body.org_id) or "viewer"
        return me(s, Principal(**{**principal.__dict__, "org_id": body.org_id, "role": role}))

    return _work(request, work)


def send_verification(request: Request, principal: Principal) -> None:
    settings = get_settings(request)

    def work(s: Session) -> tuple[str, str]:
        user = s.get_one(User, principal.user_id)
        if user.email_verified_at is not None:
            raise Conflict(f"{user.email} is verified already.")
        return user.email, service.issue_code(s, "verify", user.email, user_id=user.id)

    email, code = _work(request, work)
    if not mail.send(
        settings,
        email,
        "Verify your email address for Errands",
        f"Your verification code: {code}\n\nEnter it on your account page "
        f"({mail.public_url(settings)}/account). It works once, within a day.",
    ):
        raise Conflict("No SMTP server is configured (ERRANDS_SMTP_HOST): no email can be sent.")


@router.post("/me/verify-email", status_code=202, responses=MAILS)
def verify_email(request: Request, principal: UserPrincipal) -> Done:
    org_required(principal)
    send_verification(request, principal)
    return Done(status="verification code sent")


@router.post("/me/verify-email/confirm")
def verify_email_confirm(body: CodeOnly, request: Request, principal: UserPrincipal) -> MePublic:
    user_id = org_required(principal) and principal.user_id
    assert user_id is not None

    def work(s: Session) -> MePublic:
        service.confirm_email(s, user_id, body.code)
        return me(s, principal)

    return _work(request, work)


@router.post("/invitations/accept")
def accept_invitation(body: CodeOnly, request: Request, principal: UserPrincipal) -> MePublic:
    user_id = principal.user_id
    if user_id is None:
        raise Conflict("Sign up with the invitation instead: there are no accounts yet.")

    def work(s: Session) -> MePublic:
        org_id = service.accept_invite(s, user_id, body.code)
        _check_seats_on_join(request, s, org_id)
        role = service.role_in(s, user_id, org_id) or "viewer"
        audit.record(s, principal, "accept_invitation", str(org_id), org_id=org_id)
        return me(s, Principal(**{**principal.__dict__, "org_id": org_id, "role": role}))

    return _work(request, work)


# -- API tokens ----------------------------------------------------------------------------------


@router.get("/tokens", responses=NEEDS_ORG)
def list_tokens(request: Request, principal: Reader) -> list[TokenPublic]:
    org_required(principal)
    return _work(
        request,
        lambda s: [TokenPublic.model_validate(t) for t in service.list_tokens(s, principal)],
    )


@router.post("/tokens", status_code=201)
def create_token(body: TokenCreate, request: Request, principal: Reader) -> TokenCreated:
    org_required(principal)

    def work(s: Session) -> TokenCreated:
        raw, token = service.create_token(s, principal, body.name)
        return TokenCreated(**TokenPublic.model_validate(token).model_dump(), token=raw)

    return _work(request, work)


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: Id, request: Request, principal: TokenOwner) -> TokenPublic:
    org_required(principal)
    return _work(
        request, lambda s: TokenPublic.model_validate(service.revoke_token(s, principal, token_id))
    )


# -- members and invitations (owners) --------------------------------------------------------------


@router.get("/members", responses=NEEDS_ORG)
def list_members(request: Request, principal: Admin) -> list[MemberPublic]:
    org_id = org_required(principal)
    return _work(
        request,
        lambda s: [
            MemberPublic(user_id=u.id, email=u.email, name=u.name, role=r)
            for u, r in service.members(s, org_id)
        ],
    )


@router.patch("/members/{user_id}")
def change_role(
    user_id: Id, body: RoleChange, request: Request, principal: MemberAdmin
) -> MemberPublic:
    org_id = org_required(principal)

    def work(s: Session) -> MemberPublic:
        membership = service.set_role(s, org_id, user_id, body.role)
        user = s.get_one(User, user_id)
        return MemberPublic(user_id=user.id, email=user.email, name=user.name, role=membership.role)

    return _work(request, work)


@router.delete("/members/{user_id}", status_code=204)
def remove_member(user_id: Id, request: Request, principal: MemberAdmin) -> None:
    org_id = org_required(principal)
    _work(request, lambda s: service.remove_member(s, org_id, user_id))


def _check_seats_on_join(request: Request, s: Session, org_id: int) -> None:
    settings = get_settings(request)
    if settings.billing_enabled:
        from errands.billing.state import check_seats_on_join  # billing depends on ours

        s.flush()  # the new member counts
        check_seats_on_join(s, settings, org_id)


def send_invitation(
    request: Request, principal: Principal, email: str, role: str
) -> InvitationSent:
    settings = get_settings(request)
    org_id = org_required(principal)

    def work(s: Session) -> tuple[str, str]:
        if settings.billing_enabled:
            from errands.billing.state import check_seats  # billing's module depends on ours

            check_seats(s, settings, org_id)
        code = service.invite(s, principal, email, role)
        return code, s.get_one(Organization, org_id).name

    code, org_name = _work(request, work)
    link = f"{mail.public_url(settings)}/signup?code={code}"
    sent = mail.send(
        settings,
        email.strip().lower(),
        f"You are invited to {org_name} on Errands",
        f"{principal.email} invites you to join {org_name} on Errands as {role}.\n\n"
        f"Accept: {link}\n\nor enter this invitation code: {code}\n\n"
        "It works once, within seven days.",
    )
    # Without a mail server the owner hands the link over themselves.
    return InvitationSent(email=email.strip().lower(), sent=sent, link=None if sent else link)


@router.get("/invitations", responses=NEEDS_ORG)
def list_invitations(request: Request, principal: Admin) -> list[InvitationPublic]:
    org_id = org_required(principal)
    return _work(
        request,
        lambda s: [
            InvitationPublic.model_validate(c) for c in service.pending_invitations(s, org_id)
        ],
    )


@router.post("/invitations", status_code=201, responses=MAILS)
def invite(body: InvitationCreate, request: Request, principal: Admin) -> InvitationSent:
    return send_invitation(request, principal, body.email, body.role)


# -- prices, budgets, usage ---------------------------------------------------------------------


def _price(p: cost.Price) -> PricePublic:
    return PricePublic(
        model=p.model,
        input_per_mtok=p.input_per_mtok,
        output_per_mtok=p.output_per_mtok,
        custom=p.custom,
    )


@router.get("/prices")
def list_prices(request: Request, principal: Reader) -> list[PricePublic]:
    return _work(request, lambda s: [_price(p) for p in cost.price_table(s, principal.org_id)])


@router.put("/prices")
def set_price(body: PriceSet, request: Request, principal: Admin) -> PricePublic:
    org_id = org_required(principal)
    return _work(
        request,
        lambda s: _price(
            cost.set_price(s, org_id, body.model, body.input_per_mtok, body.output_per_mtok)
        ),
    )


def _usd(micros: int | None) -> float | None:
    return None if micros is None else micros / 1_000_000


def org_budget(s: Session, org_id: int) -> OrgBudgetPublic:
    org = s.get_one(Organization, org_id)
    spent = cost.org_month_cost(s, org_id)
    return OrgBudgetPublic(
        monthly_budget_usd=_usd(org.monthly_budget_micros),
        month_cost_usd=spent / 1_000_000,
        over_budget=budget.org_over_budget(s, org_id) is not None,
    )


@router.get("/budget", responses=NEEDS_ORG)
def get_budget(request: Request, principal: Reader) -> OrgBudgetPublic:
    org_id = org_required(principal)
    return _work(request, lambda s: org_budget(s, org_id))


@router.put("/budget")
def set_budget(body: BudgetSet, request: Request, principal: Admin) -> OrgBudgetPublic:
    org_id = org_required(principal)

    def work(s: Session) -> OrgBudgetPublic:
        s.get_one(Organization, org_id).monthly_budget_micros = cost.to_micros(body.usd)
        s.flush()
        return org_budget(s, org_id)

    return _work(request, work)


def task_cost(s: Session, task_id: int) -> TaskCostPublic:
    task = s.get_one(Task, task_id)
    return TaskCostPublic(
        task_id=task_id,
        cost_usd=cost.task_cost(s, task_id) / 1_000_000,
        budget_usd=_usd(task.budget_micros),
        budget_reached=budget.task_budget_reached(s, task),
    )


@router.get("/tasks/{task_id}/cost")
def get_task_cost(task_id: Id, request: Request, _: Reader) -> TaskCostPublic:
    from errands.errors import NotFound

    def work(s: Session) -> TaskCostPublic:
        if s.get(Task, task_id) is None:
            raise NotFound(f"Task {task_id} does not exist.")
        return task_cost(s, task_id)

    return _work(request, work)


def set_task_budget(s: Session, task_id: int, usd: float | None) -> TaskCostPublic:
    from errands.errors import NotFound

    task = s.get(Task, task_id)
    if task is None:
        raise NotFound(f"Task {task_id} does not exist.")
    task.budget_micros = cost.to_micros(usd)
    s.flush()
    return task_cost(s, task_id)


@router.put("/tasks/{task_id}/budget")
def put_task_budget(task_id: Id, body: BudgetSet, request: Request, _: Admin) -> TaskCostPublic:
    return _work(request, lambda s: set_task_budget(s, task_id, body.usd))


def usage(s: Session, org_id: int | None) -> UsagePublic:
    since = cost.month_start()
    rows = cost.org_usage(s, org_id, since)
    org = s.get(Organization, org_id) if org_id is not None else None
    return UsagePublic(
        since=since,
        cost_usd=sum(r.cost_micros for r in rows) / 1_000_000,
        monthly_budget_usd=_usd(org.monthly_budget_micros) if org else None,
        rows=[
            UsageRowPublic(
                project=r.project,
                task_id=r.task_id,
                title=r.title,
                requests=r.requests,
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
                cost_usd=r.cost_micros / 1_000_000,
            )
            for r in rows
        ],
    )


@router.get("/usage")
def get_usage(request: Request, principal: Reader) -> UsagePublic:
    """This month's usage and cost of the organization, per task."""
    return _work(request, lambda s: usage(s, principal.org_id))


# -- secrets and the audit log (owners) ----------------------------------------------------------


@router.get("/secrets", responses=NEEDS_ORG)
def list_secrets(request: Request, principal: Admin) -> list[SecretPublic]:
    org_id = org_required(principal)
    return _work(
        request, lambda s: [SecretPublic.model_validate(r) for r in vault.listing(s, org_id)]
    )


@router.put("/secrets/{name}", responses=error_responses(400))
def put_secret(
    name: str, body: SecretSet, request: Request, principal: SecretAdmin
) -> SecretPublic:
    org_id = org_required(principal)
    settings = get_settings(request)
    return _work(
        request,
        lambda s: SecretPublic.model_validate(vault.save(s, settings, org_id, name, body.value)),
    )


@router.delete("/secrets/{name}", status_code=204)
def delete_secret(name: str, request: Request, principal: SecretAdmin) -> None:
    org_id = org_required(principal)
    _work(request, lambda s: vault.remove(s, org_id, name))


@router.get("/audit", responses=NEEDS_ORG)
def audit_log(request: Request, principal: Admin) -> list[AuditPublic]:
    org_id = org_required(principal)
    return _work(
        request, lambda s: [AuditPublic.model_validate(e) for e in audit.entries(s, org_id)]
    )
