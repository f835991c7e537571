"""Periodic duties (the recovery sweep, workspace clean-up, ...) run on the job engine, once
per period across all workers.

Every worker runs a scheduler thread, and whichever first moves a duty's ``next_run_at``
forward with a compare-and-swap runs it; the others see the row already moved. A duty that
belongs to one machine (its workspaces) carries that machine in its name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite

from errands.store import Database, Schedule
from errands.store.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Duty:
    name: str
    every: float  # seconds
    run: Callable[[], None]


def take_turn(db: Database, name: str, every: float, owner: str) -> bool:
    """True for exactly one caller per period of ``name``: that caller should run it now."""
    now = utcnow()
    with db.session() as session:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        first = insert(Schedule).values(name=name, next_run_at=now, runs=0)
        session.execute(first.on_conflict_do_nothing(index_elements=["name"]))
    with db.session() as session:
        result = session.execute(
            update(Schedule)
            .where(Schedule.name == name, Schedule.next_run_at <= now)
            .values(
                next_run_at=now + timedelta(seconds=every),
                last_run_at=now,
                last_owner=owner,
                runs=Schedule.runs + 1,
            )
        )
        return result.rowcount == 1  # type: ignore[attr-defined,no-any-return]


def record_error(db: Database, name: str, error: str | None) -> None:
    with db.session() as session:
        session.execute(update(Schedule).where(Schedule.name == name).values(last_error=error))


class Scheduler:
    """A thread that offers each duty to this worker once per ``tick`` seconds."""

    def __init__(
        self, db: Database, duties: Sequence[Duty], owner: str, stopping: threading.Event
    ) -> None:
        self.db = db
        self.duties = list(duties)
        self.owner = owner
        self.stopping = stopping
        self.tick = min([1.0, *(duty.every for duty in self.duties)])

    def run(self) -> None:
        while not self.stopping.wait(self.tick):
            for duty in self.duties:
                self.run_due(duty)

    def run_due(self, duty: Duty) -> bool:
        try:
            if not take_turn(self.db, duty.name, duty.every, self.owner):
                return False
        except Exception:
            log.exception("could not check the schedule of %s", duty.name)
            return False
        error: str | None = None
        try:
            duty.run()
        except Exception as exc:  # a failing duty must not stop the others
            log.exception("periodic duty %s failed", duty.name)
            error = f"{type(exc).__name__}: {exc}"
        try:
            record_error(self.db, duty.name, error)
        except Exception:
            log.exception("could not record the outcome of %s", duty.name)
        return True
