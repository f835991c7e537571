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

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from errands.store import Database, Schedule
from errands.store.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Duty:
    name: str
    every: float  # seconds
    run: Callable[[], None]


def take_turn(db: Database, name: str, every: float, owner: str, *, known: bool = False) -> bool:
    """True for exactly one caller per period of ``name``: that caller should run it now.
    ``known``: the duty's row exists (it is never deleted), so it need not be created."""
    now = utcnow()
    if not known:
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
            try:
                due = self.due()
            except Exception:
                log.exception("could not read the schedule")
                continue
            for duty in self.duties:
                if duty.name in due:
                    self.run_due(duty, on_record=due[duty.name])

    def due(self) -> dict[str, tuple[str | None] | None]:
        """The duties whose period has passed, each with its last error (in a 1-tuple), or
        ``None`` for one that never ran (no row yet). One read per tick: offering every duty
        its compare-and-swap each tick took a write transaction apiece, most of what an idle
        worker spent."""
        now = utcnow()
        with self.db.session() as session:
            rows = session.execute(
                select(Schedule.name, Schedule.next_run_at <= now, Schedule.last_error).where(
                    Schedule.name.in_([duty.name for duty in self.duties])
                )
            ).all()
        passed = {name: (bool(over), error) for name, over, error in rows}
        due: dict[str, tuple[str | None] | None] = {}
        for duty in self.duties:
            if duty.name not in passed:
                due[duty.name] = None
            elif passed[duty.name][0]:
                due[duty.name] = (passed[duty.name][1],)
        return due

    def run_due(self, duty: Duty, *, on_record: tuple[str | None] | None = None) -> bool:
        """Run ``duty`` if this worker wins its turn. ``on_record``: the duty's row exists
        and holds this last error, so an outcome that changes nothing is not written."""
        try:
            known = on_record is not None
            if not take_turn(self.db, duty.name, duty.every, self.owner, known=known):
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
        if error is None and on_record is not None and on_record[0] is None:
            return True
        try:
            record_error(self.db, duty.name, error)
        except Exception:
            log.exception("could not record the outcome of %s", duty.name)
        return True
