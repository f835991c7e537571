"""What every route (API and pages) needs: the store and the settings, and one short unit of
work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from errands.limits import parse_int
from errands.settings import Settings
from errands.store import Database

T = TypeVar("T")


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def in_session(db: Database, work: Callable[[Session], T]) -> T:
    # Routes are sync (run in FastAPI's thread pool). The unit of work commits before the
    # response is built, so a client never reads ahead of its own write; pages read all they
    # render inside it, so a template never lazy-loads from a closed session.
    with db.session() as session:
        return work(session)


def optional_int(value: str, what: str) -> int | None:
    """A form field holding a number (1 and up, within the store's range), or nothing."""
    return parse_int(value, what)
