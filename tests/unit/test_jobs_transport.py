"""The doorbell: a commit that queues a job wakes a waiting worker; nothing else does."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from errands.domain import JobKind
from errands.jobs import ledger
from errands.jobs.transport import LocalTransport, RedisTransport, Transport, attach
from errands.store import Database, Project
from tests.services import redis_queue


def woken_within(transport: Transport, action: object, timeout: float = 10.0) -> float:
    """Seconds a waiter blocked on ``transport`` took to wake after ``action()``."""
    woke = threading.Event()
    ready = threading.Event()

    def waiter() -> None:
        ready.set()
        transport.wait(timeout)
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    ready.wait()
    time.sleep(0.2)  # let it block
    began = time.monotonic()
    action()  # type: ignore[operator]
    woke.wait(timeout + 1)
    thread.join()
    return time.monotonic() - began


def queue_a_job(db: Database) -> None:
    with db.session() as session:
        project = session.query(Project).filter_by(name="p").one()
        ledger.enqueue(session, JobKind.INDEX, project_id=project.id)


def add_project(db: Database, name: str) -> None:
    with db.session() as session:
        session.add(Project(name=name, origin=f"/src/{name}", base_branch="main"))


def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path}/t.db")
    db.migrate()
    add_project(db, "p")
    return db


def test_a_commit_that_queues_a_job_wakes_a_local_waiter(tmp_path: Path) -> None:
    db = database(tmp_path)
    transport = LocalTransport()
    attach(transport, db)
    # Nothing queued: a plain commit leaves the waiter asleep for its whole timeout.
    assert woken_within(transport, lambda: add_project(db, "other"), timeout=1.0) > 0.5
    assert woken_within(transport, lambda: queue_a_job(db)) < 0.5


def test_redis_wakes_a_waiter_in_another_process_space(tmp_path: Path) -> None:
    db = database(tmp_path)
    with redis_queue() as (url, queue):
        ringer, listener = RedisTransport(url, queue), RedisTransport(url, queue)
        ringer.ping()
        attach(ringer, db)  # the API's side: it only rings
        try:
            assert woken_within(listener, lambda: queue_a_job(db), timeout=5.0) < 1.0
            # A wait with nothing rung times out instead of hanging.
            began = time.monotonic()
            listener.wait(0.3)
            assert time.monotonic() - began < 2.0
        finally:
            ringer.close()
            listener.close()


def test_an_unreachable_redis_is_a_clear_error_and_never_loses_a_job(tmp_path: Path) -> None:
    from errands.errors import ConfigError
    from tests.support import free_port

    transport = RedisTransport(f"redis://:hunter2@127.0.0.1:{free_port()}/0", "q")
    with pytest.raises(ConfigError) as refused:
        transport.ping()
    assert "hunter2" not in refused.value.message  # the URL's password is never echoed
    db = database(tmp_path)
    attach(transport, db)
    queue_a_job(db)  # ringing fails quietly; the job is in the ledger all the same
    assert ledger.claim(db, "w", 60) is not None
    began = time.monotonic()
    transport.wait(0.2)  # falls back to sleeping, not spinning or raising
    assert time.monotonic() - began >= 0.15
    transport.close()
