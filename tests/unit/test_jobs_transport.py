"""The doorbell: a commit that queues a job wakes a waiting worker; nothing else does."""

from __future__ import annotations

import subprocess
import sys
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


def test_the_sqlite_doorbell_wakes_a_worker_in_another_process(tmp_path: Path) -> None:
    """The CLI, the API and every worker are separate processes on one SQLite ledger: a job
    committed in one wakes a waiter in another (a real process here), and a commit that
    queues nothing does not."""
    db = database(tmp_path)
    bell = tmp_path / "t.db.doorbell"
    ringer = LocalTransport(bell)
    attach(ringer, db)
    waiter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from errands.jobs.transport import LocalTransport\n"
            "t = LocalTransport(Path(sys.argv[1]))\n"
            "t.wait(0)\n"  # its pipe exists from its first wait on
            "print('ready', flush=True)\n"
            "while True:\n"
            "    began = time.monotonic()\n"
            "    t.wait(30)\n"
            "    print('woke' if time.monotonic() - began < 25 else 'timeout', flush=True)\n",
            str(bell),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "ready"
        add_project(db, "other")  # rings nobody: the waiter goes on sleeping
        queue_a_job(db)
        assert waiter.stdout.readline().strip() == "woke"
        assert [p.name.endswith(".fifo") for p in bell.iterdir()] == [True]
    finally:
        waiter.kill()
        waiter.wait()
    # Its process gone, its pipe is left behind; the next ring removes it.
    queue_a_job(db)
    assert list(bell.iterdir()) == []


def test_the_doorbell_writes_only_to_pipes(tmp_path: Path) -> None:
    """Whatever else sits in the doorbell's directory under a pipe's name (a file, a link to
    one) is never written to."""
    bell = tmp_path / "bell"
    bell.mkdir()
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    (bell / "1-file.fifo").write_text("keep me too")
    (bell / "2-link.fifo").symlink_to(precious)
    LocalTransport(bell).announce()
    assert precious.read_text() == "keep me"
    assert (bell / "1-file.fifo").read_text() == "keep me too"


def test_a_doorbell_that_cannot_be_made_falls_back_to_polling(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")  # a file where the directory should be
    transport = LocalTransport(tmp_path / "taken")
    began = time.monotonic()
    transport.wait(0.2)  # sleeps out its timeout: the caller then looks at the ledger
    assert time.monotonic() - began >= 0.15
    transport.announce()  # rings nobody, raises nothing
