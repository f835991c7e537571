"""What every route (API and pages) needs: the store and the settings, and one short unit of
work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from errands.accounts.access import principal_of
from errands.limits import parse_int
from errands.settings import Settings
from errands.store import Database
from errands.workflow.reviewers import LOCAL, Reviewer

T = TypeVar("T")


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_reviewer(request: Request) -> Reviewer:
    """Who reviews through this request: the signed-in user (or the token's), or the one
    user of single-user mode. Read after the route's Permit has run."""
    principal = principal_of(request)
    if principal.user_id is None:
        return LOCAL
    return Reviewer(f"user:{principal.user_id}", principal.email or f"user {principal.user_id}")


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ReviewerDep = Annotated[Reviewer, Depends(get_reviewer)]


def in_session(db: Database, work: Callable[[Session], T]) -> T:
    # Routes are sync (run in FastAPI's thread pool). The unit of work commits before the
    # response is built, so a client never reads ahead of its own write; pages read all they
    # render inside it, so a template never lazy-loads from a closed session.
    with db.session() as session:
        return work(session)


def optional_int(value: str, what: str) -> int | None:
    """A form field holding a number (1 and up, within the store's range), or nothing."""
    return parse_int(value, what)
