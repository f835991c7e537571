"""Periodic duties run once per period across all workers, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from errands.jobs.schedule import Duty, Scheduler, take_turn
from errands.store import Database, Schedule
from errands.store.models import utcnow
from tests.services import postgres_url


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with ExitStack() as stack:
        url = (
            stack.enter_context(postgres_url())
            if request.param == "postgres"
            else f"sqlite:///{tmp_path}/t.db"
        )
        database = Database(url)
        database.migrate()
        yield database
        database.dispose()


def make_due(db: Database, name: str) -> None:
    with db.session() as session:
        session.execute(
            update(Schedule)
            .where(Schedule.name == name)
            .values(next_run_at=utcnow() - timedelta(seconds=1))
        )


def test_one_turn_per_period_however_many_workers_ask(db: Database) -> None:
    winners: list[str] = []
    start = threading.Barrier(6)

    def worker(owner: str) -> None:
        start.wait()
        if take_turn(db, "recovery", 3600, owner):
            winners.append(owner)

    for _ in range(2):
        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        make_due(db, "recovery")

    assert len(winners) == 2  # once per period, not once per worker
    with db.session() as session:
        row = session.get_one(Schedule, "recovery")
        assert row.runs == 2
        assert row.last_owner == winners[-1]


def test_not_before_its_time(db: Database) -> None:
    assert take_turn(db, "sweep", 3600, "a")
    assert not take_turn(db, "sweep", 3600, "b")
    make_due(db, "sweep")
    assert take_turn(db, "sweep", 3600, "b")


def test_a_failing_duty_is_recorded_and_the_others_still_run(db: Database) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("disk full")

    stopping = threading.Event()
    scheduler = Scheduler(
        db,
        [Duty("broken", 3600, broken), Duty("fine", 3600, lambda: ran.append("fine"))],
        "w",
        stopping,
    )
    for duty in scheduler.duties:
        assert scheduler.run_due(duty)
    assert ran == ["fine"]
    with db.session() as session:
        assert session.get_one(Schedule, "broken").last_error == "RuntimeError: disk full"
        assert session.get_one(Schedule, "fine").last_error is None
    assert not scheduler.run_due(scheduler.duties[1])  # its period has not passed


def test_a_tick_offers_only_the_duties_whose_period_passed(db: Database) -> None:
    """One read tells the scheduler which duties are due (and their last error), so a tick
    with nothing due writes nothing; a duty's outcome is recorded when it changes."""
    fail = [True]

    def flaky() -> None:
        if fail[0]:
            raise RuntimeError("disk full")

    scheduler = Scheduler(
        db, [Duty("flaky", 3600, flaky), Duty("fine", 3600, lambda: None)], "w", threading.Event()
    )
    assert scheduler.due() == {"flaky": None, "fine": None}  # never ran: no row yet
    for duty in scheduler.duties:
        assert scheduler.run_due(duty, on_record=scheduler.due()[duty.name])
    assert scheduler.due() == {}
    with db.session() as session:
        session.execute(
            update(Schedule)
            .where(Schedule.name == "flaky")
            .values(next_run_at=utcnow() - timedelta(seconds=1))
        )
    assert scheduler.due() == {"flaky": ("RuntimeError: disk full",)}
    fail[0] = False
    assert scheduler.run_due(scheduler.duties[0], on_record=scheduler.due()["flaky"])
    with db.session() as session:
        assert session.get_one(Schedule, "flaky").last_error is None  # the recovery recorded
