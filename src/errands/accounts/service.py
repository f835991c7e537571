"""Users, organizations, memberships, sessions, API tokens and email codes: the operations,
each inside the caller's unit of work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from errands.accounts import crypto
from errands.accounts.errors import Forbidden, Unauthenticated
from errands.accounts.roles import Role, parse_role
from errands.errors import Conflict, InvalidInput, NotFound
from errands.store import (
    ApiToken,
    EmailCode,
    Membership,
    Organization,
    Project,
    User,
    UserSession,
)

TOKEN_PREFIX = "ert_"
CodePurpose = Literal["invite", "verify", "reset"]
CODE_LIFETIME = {
    "invite": timedelta(days=7),
    "verify": timedelta(days=1),
    "reset": timedelta(hours=1),
}
MIN_PASSWORD = 10


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, and in which organization. ``via == "local"``: single-user
    mode (no accounts exist), which may do everything and sees every project."""

    via: Literal["local", "anonymous", "session", "token"]
    user_id: int | None = None
    email: str = ""
    org_id: int | None = None
    role: Role = "owner"
    csrf: str = ""
    session_id: int | None = None
    token_id: int | None = None

    @property
    def local(self) -> bool:
        return self.via == "local"

    @property
    def signed_in(self) -> bool:
        return self.via in ("session", "token")


LOCAL = Principal("local")
ANONYMOUS = Principal("anonymous", role="viewer")


def accounts_exist(session: Session) -> bool:
    return session.scalar(select(User.id).limit(1)) is not None


def first_org_id(session: Session) -> int | None:
    return session.scalar(select(func.min(Organization.id)))


def project_org_id(session: Session, project: Project) -> int | None:
    """Projects added by the local CLI (straight into the store) carry no organization:
    they belong to the first one, the install's own."""
    return project.org_id if project.org_id is not None else first_org_id(session)


def _normal_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320 or email.startswith("@") or email.endswith("@"):
        raise InvalidInput(f"{email!r} is not an email address.")
    return email


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"A password needs at least {MIN_PASSWORD} characters.")


def user_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email.strip().lower())).first()


def role_in(session: Session, user_id: int, org_id: int) -> Role | None:
    membership = session.get(Membership, (user_id, org_id))
    return parse_role(membership.role) if membership else None


def orgs_of(session: Session, user_id: int) -> list[tuple[Organization, Role]]:
    rows = session.execute(
        select(Organization, Membership.role)
        .join(Membership, Membership.org_id == Organization.id)
        .where(Membership.user_id == user_id)
        .order_by(Organization.id)
    )
    return [(org, parse_role(role)) for org, role in rows]


# -- sign-up and sign-in ----------------------------------------------------------------------


def sign_up(
    session: Session,
    *,
    email: str,
    password: str,
    name: str = "",
    org_name: str = "",
    invite_code: str | None = None,
) -> tuple[User, int]:
    """The first user becomes owner of a new organization that adopts every existing
    project; anyone later needs an invitation. Returns the user and the org to sign in to."""
    email = _normal_email(email)
    _check_password(password)
    if user_by_email(session, email) is not None:
        raise Conflict("An account with this email address exists already; sign in instead.")
    if not accounts_exist(session):
        user = User(email=email, name=name.strip(), password_hash=crypto.hash_password(password))
        return user, _first_owner(session, user, org_name)
    if not invite_code:
        raise Forbidden("Sign-up needs an invitation from an owner of an organization.")
    code = consume_code(session, "invite", invite_code)
    if code.email != email:
        raise Forbidden("This invitation was sent to another email address.")
    assert code.org_id is not None
    user = User(
        email=email,
        name=name.strip(),
        password_hash=crypto.hash_password(password),
        email_verified_at=now(),  # the invitation reached this address
    )
    session.add(user)
    session.flush()
    session.add(Membership(user_id=user.id, org_id=code.org_id, role=code.role or "viewer"))
    return user, code.org_id


def _first_owner(session: Session, user: User, org_name: str = "") -> int:
    """The first user owns a new organization that adopts every existing project."""
    org = Organization(name=org_name.strip() or "My organization")
    session.add_all([user, org])
    session.flush()
    session.add(Membership(user_id=user.id, org_id=org.id, role="owner"))
    session.execute(update(Project).where(Project.org_id.is_(None)).values(org_id=org.id))
    return org.id


def github_sign_in(
    session: Session, *, github_id: int, login: str, email: str | None, name: str = ""
) -> tuple[User, int]:
    """Who a GitHub account signs in as: the user linked to it; else the user whose email is
    the account's verified primary email (now linked); else, with no user at all yet, a new
    first user (owner, as with sign-up). Anyone else needs an invitation first."""
    linked = session.scalars(select(User).where(User.github_id == github_id)).first()
    if linked is not None:
        linked.github_login = login
        return linked, default_org(session, linked.id)
    address = _normal_email(email) if email else None
    user = user_by_email(session, address) if address else None
    if user is not None:
        if user.github_id is not None:
            raise Forbidden(
                f"The account {user.email} is linked to another GitHub account already."
            )
        user.github_id, user.github_login = github_id, login
        if user.email_verified_at is None:
            user.email_verified_at = now()  # GitHub verified this address
        return user, default_org(session, user.id)
    if not accounts_exist(session):
        if address is None:
            raise Forbidden(
                "Your GitHub account has no verified primary email address; verify one on "
                "GitHub and sign in again."
            )
        user = User(
            email=address,
            name=name.strip() or login,
            password_hash=None,
            email_verified_at=now(),
            github_id=github_id,
            github_login=login,
        )
        return user, _first_owner(session, user)
    raise Forbidden(
        f"No account here belongs to the GitHub user {login}. Accounts are by invitation: "
        "sign up through the invitation an owner sends you, then sign in with GitHub (with "
        "the same verified email address) to link it."
    )


def authenticate(session: Session, email: str, password: str) -> User:
    user = user_by_email(session, email)
    # Verify against a dummy hash for unknown users too, so timing tells nothing.
    stored = user.password_hash if user else None
    if not crypto.password_matches(stored or dummy_hash(), password) or user is None:
        raise Unauthenticated("Wrong email address or password.")
    return user


@cache
def dummy_hash() -> str:
    """Computed on first use, not at import: hashing costs a fifth of a second, which every
    CLI command paid before doing anything. The server computes it as it starts
    (``create_app``), so not even its first failed sign-in answers at a different speed."""
    return crypto.hash_password("errands-no-such-user")


def default_org(session: Session, user_id: int) -> int:
    found = orgs_of(session, user_id)
    if not found:
        raise Forbidden("This account belongs to no organization any more.")
    return found[0][0].id


def start_session(
    session: Session, user: User, org_id: int, lifetime: timedelta
) -> tuple[str, UserSession]:
    raw = crypto.new_token()
    row = UserSession(
        token_hash=crypto.digest(raw),
        user_id=user.id,
        org_id=org_id,
        generation=user.session_generation,
        csrf_token=crypto.new_token(),
        expires_at=now() + lifetime,
    )
    session.add(row)
    session.flush()
    return raw, row


def session_principal(session: Session, raw: str) -> Principal | None:
    found = session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash == crypto.digest(raw))
    ).first()
    if found is None:
        return None
    row, user = found
    if row.expires_at <= now() or row.generation != user.session_generation:
        return None
    role = role_in(session, user.id, row.org_id)
    if role is None:  # removed from the organization since signing in
        return None
    return Principal(
        "session",
        user_id=user.id,
        email=user.email,
        org_id=row.org_id,
        role=role,
        csrf=row.csrf_token,
        session_id=row.id,
    )


def end_session(session: Session, session_id: int) -> None:
    row = session.get(UserSession, session_id)
    if row is not None:
        session.delete(row)


def end_all_sessions(session: Session, user_id: int) -> None:
    """Log out everywhere: every session of the user, in every browser, stops working."""
    user = session.get_one(User, user_id)
    user.session_generation += 1
    session.execute(delete(UserSession).where(UserSession.user_id == user_id))


def create_org(session: Session, user_id: int, name: str) -> Organization:
    """Any signed-in user may start an organization of their own (and owns it)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("Name the organization, in at most 200 characters.")
    org = Organization(name=name)
    session.add(org)
    session.flush()
    session.add(Membership(user_id=user_id, org_id=org.id, role="owner"))
    return org


def switch_org(session: Session, principal: Principal, org_id: int) -> None:
    assert principal.user_id is not None and principal.session_id is not None
    if role_in(session, principal.user_id, org_id) is None:
        raise NotFound(f"Organization {org_id} does not exist.")
    session.get_one(UserSession, principal.session_id).org_id = org_id


# -- API tokens -------------------------------------------------------------------------------


def create_token(session: Session, principal: Principal, name: str) -> tuple[str, ApiToken]:
    assert principal.user_id is not None and principal.org_id is not None
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("Name the token (what or who uses it), in at most 200 characters.")
    raw = crypto.new_token(TOKEN_PREFIX)
    token = ApiToken(
        token_hash=crypto.digest(raw),
        prefix=raw[: len(TOKEN_PREFIX) + 4],
        name=name,
        user_id=principal.user_id,
        org_id=principal.org_id,
    )
    session.add(token)
    session.flush()
    return raw, token


# Writing last-used on every request would make each read a write; a minute is precise
# enough to answer "is this token still in use?".
LAST_USED_PRECISION = timedelta(minutes=1)


def token_principal(session: Session, raw: str) -> Principal | None:
    found = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == crypto.digest(raw), ApiToken.revoked_at.is_(None))
    ).first()
    if found is None:
        return None
    token, user = found
    role = role_in(session, user.id, token.org_id)
    if role is None:
        return None
    moment = now()
    if token.last_used_at is None or moment - token.last_used_at > LAST_USED_PRECISION:
        token.last_used_at = moment
    return Principal(
        "token",
        user_id=user.id,
        email=user.email,
        org_id=token.org_id,
        role=role,
        token_id=token.id,
    )


def list_tokens(session: Session, principal: Principal) -> list[ApiToken]:
    """An owner sees every token of the organization; others see their own."""
    query = select(ApiToken).where(ApiToken.org_id == principal.org_id)
    if principal.role != "owner":
        query = query.where(ApiToken.user_id == principal.user_id)
    return list(session.scalars(query.order_by(ApiToken.id)))


def revoke_token(session: Session, principal: Principal, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if (
        token is None
        or token.org_id != principal.org_id
        or (principal.role != "owner" and token.user_id != principal.user_id)
    ):
        raise NotFound(f"Token {token_id} does not exist.")
    if token.revoked_at is None:
        token.revoked_at = now()
    return token


# -- members ------------------------------------------------------------------------------------


def members(session: Session, org_id: int) -> list[tuple[User, Role]]:
    rows = session.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id)
        .order_by(User.id)
    )
    return [(user, parse_role(role)) for user, role in rows]


def _membership(session: Session, org_id: int, user_id: int) -> Membership:
    membership = session.get(Membership, (user_id, org_id))
    if membership is None:
        raise NotFound(f"User {user_id} is not a member of this organization.")
    return membership


def _keep_an_owner(session: Session, org_id: int, user_id: int) -> None:
    owners = session.scalars(
        select(Membership.user_id).where(Membership.org_id == org_id, Membership.role == "owner")
    ).all()
    if list(owners) == [user_id]:
        raise Conflict("An organization needs an owner: make someone else owner first.")


def set_role(session: Session, org_id: int, user_id: int, role: str) -> Membership:
    membership = _membership(session, org_id, user_id)
    new_role = parse_role(role)
    if membership.role == "owner" and new_role != "owner":
        _keep_an_owner(session, org_id, user_id)
    membership.role = new_role
    return membership


def remove_member(session: Session, org_id: int, user_id: int) -> None:
    membership = _membership(session, org_id, user_id)
    if membership.role == "owner":
        _keep_an_owner(session, org_id, user_id)
    session.delete(membership)
    # Their tokens for this organization stop working with the membership; revoke them so
    # a later re-invitation does not revive them.
    session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.org_id == org_id)
        .where(ApiToken.revoked_at.is_(None))
        .values(revoked_at=now())
    )


# -- email codes: invitations, verification, password reset -----------------------------------


def issue_code(
    session: Session,
    purpose: CodePurpose,
    email: str,
    *,
    user_id: int | None = None,
    org_id: int | None = None,
    role: Role | None = None,
    created_by: int | None = None,
) -> str:
    raw = crypto.new_code()
    session.add(
        EmailCode(
            purpose=purpose,
            code_hash=crypto.digest(raw),
            email=_normal_email(email),
            user_id=user_id,
            org_id=org_id,
            role=role,
            created_by=created_by,
            expires_at=now() + CODE_LIFETIME[purpose],
        )
    )
    session.flush()
    return raw


def consume_code(session: Session, purpose: CodePurpose, raw: str) -> EmailCode:
    """A code works once, before it expires; every failure reads the same."""
    code = session.scalars(
        select(EmailCode).where(
            EmailCode.code_hash == crypto.digest(raw.strip()), EmailCode.purpose == purpose
        )
    ).first()
    if code is None or code.used_at is not None or code.expires_at <= now():
        raise InvalidInput("This code is wrong, expired or used already.")
    code.used_at = now()
    return code


def invite(session: Session, principal: Principal, email: str, role: str) -> str:
    assert principal.org_id is not None
    chosen = parse_role(role)
    email = _normal_email(email)
    existing = user_by_email(session, email)
    if existing is not None and role_in(session, existing.id, principal.org_id) is not None:
        raise Conflict(f"{email} is a member of this organization already.")
    return issue_code(
        session,
        "invite",
        email,
        org_id=principal.org_id,
        role=chosen,
        created_by=principal.user_id,
    )


def accept_invite(session: Session, user_id: int, raw: str) -> int:
    """An existing user joins the organization an invitation is for."""
    user = session.get_one(User, user_id)
    code = consume_code(session, "invite", raw)
    if code.email != user.email:
        raise Forbidden("This invitation was sent to another email address.")
    assert code.org_id is not None
    if session.get(Membership, (user_id, code.org_id)) is None:
        session.add(Membership(user_id=user_id, org_id=code.org_id, role=code.role or "viewer"))
    return code.org_id


def pending_invitations(session: Session, org_id: int) -> list[EmailCode]:
    return list(
        session.scalars(
            select(EmailCode)
            .where(EmailCode.org_id == org_id, EmailCode.purpose == "invite")
            .where(EmailCode.used_at.is_(None), EmailCode.expires_at > now())
            .order_by(EmailCode.id)
        )
    )


def confirm_email(session: Session, user_id: int, raw: str) -> User:
    code = consume_code(session, "verify", raw)
    user = session.get_one(User, user_id)
    if code.user_id != user_id or code.email != user.email:
        raise InvalidInput("This code is wrong, expired or used already.")
    user.email_verified_at = now()
    return user


def reset_password(session: Session, raw: str, password: str) -> User:
    _check_password(password)
    code = consume_code(session, "reset", raw)
    user = user_by_email(session, code.email)
    if user is None:
        raise InvalidInput("This code is wrong, expired or used already.")
    user.password_hash = crypto.hash_password(password)
    end_all_sessions(session, user.id)  # whoever knew the old password is signed out
    return user
