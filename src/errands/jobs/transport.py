"""How workers learn that a job was queued: the doorbell next to the ledger.

The ledger is the truth; the transport only makes waiting short. Losing a message is harmless
(workers also look at the ledger every ``worker_poll_interval``), and so is a message for a
job someone else already took (the claim simply finds nothing).

- ``LocalTransport`` (the embedded default): on a SQLite ledger, a doorbell of named pipes next
  to the database file (:mod:`errands.jobs.doorbell`), so every worker process on the machine
  (``errands serve``'s embedded one and each ``errands worker``) wakes the moment any process
  (the API, the CLI, a worker) commits a job; without a database file, a condition variable
  for the workers of this process only.
- ``RedisTransport`` (``ERRANDS_REDIS_URL``): a Huey Redis queue. Every ``errands worker``,
  on any machine, blocks on it and wakes within milliseconds of a commit anywhere.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session

from errands.errors import ConfigError
from errands.jobs.doorbell import Doorbell
from errands.jobs.ledger import QUEUED_IN_SESSION
from errands.store import Database

log = logging.getLogger(__name__)

# A doorbell, not a work list: a backlog beyond this many rings wakes nobody new.
MAX_PENDING_RINGS = 1000


class Transport(Protocol):
    def announce(self) -> None:
        """A job became runnable (called after its transaction committed)."""

    def wait(self, timeout: float) -> None:
        """Return when a job may have become runnable, or after ``timeout`` seconds."""

    def ping(self) -> None:
        """Raise ``ConfigError`` if the transport cannot be reached (checked at start-up)."""

    def close(self) -> None: ...


def attach(transport: Transport, db: Database) -> None:
    """Ring after every commit that queued a job."""

    def after_commit(session: Session) -> None:
        if session.info.pop(QUEUED_IN_SESSION, False):
            transport.announce()

    db.after_commit(after_commit)


class LocalTransport:
    """``doorbell``: the directory of the machine's doorbell pipes (next to a SQLite
    ledger); without it, rings reach this process's waiters only."""

    def __init__(self, doorbell: Path | None = None) -> None:
        self._doorbell = Doorbell(doorbell) if doorbell is not None else None
        self._condition = threading.Condition()
        self._rings = 0

    def announce(self) -> None:
        if self._doorbell is not None:
            self._doorbell.ring()
            return
        with self._condition:
            self._rings += 1
            self._condition.notify_all()

    def wait(self, timeout: float) -> None:
        if self._doorbell is not None:
            self._doorbell.wait(timeout)
            return
        with self._condition:
            seen = self._rings
            self._condition.wait_for(lambda: self._rings != seen, timeout)

    def ping(self) -> None:
        pass  # on this machine: always there

    def close(self) -> None:
        # Let the waiter see that the worker is stopping.
        if self._doorbell is not None:
            self._doorbell.close()
        else:
            self.announce()


class RedisTransport:
    def __init__(self, url: str, queue: str) -> None:
        from huey.storage import RedisStorage
        from redis import RedisError

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        try:
            self._storage = RedisStorage(name=queue, url=url, blocking=True, read_timeout=1)
        except (ValueError, *self._errors) as exc:
            # Never echo the URL: it may carry a password.
            raise ConfigError(f"ERRANDS_REDIS_URL is not usable: {exc}") from exc
        self._stopping = threading.Event()

    def announce(self) -> None:
        try:
            self._storage.enqueue(b"job")
            self._storage.conn.ltrim(self._storage.queue_key, 0, MAX_PENDING_RINGS - 1)
        except self._errors as exc:  # workers will still find the job by polling
            log.warning("could not ring the workers through Redis: %s", exc)

    def wait(self, timeout: float) -> None:
        if self._stopping.is_set():
            return
        try:
            # Huey's dequeue() with a per-call timeout (its read_timeout is per storage).
            self._storage.conn.brpop([self._storage.queue_key], timeout=timeout)
        except self._errors as exc:
            log.warning("Redis is unreachable (%s); polling the database instead", exc)
            self._stopping.wait(timeout)

    def ping(self) -> None:
        """Fail now, with a clear message, if Redis is unreachable (worker start-up)."""
        try:
            self._storage.conn.ping()
        except self._errors as exc:
            raise ConfigError(f"Cannot reach Redis at ERRANDS_REDIS_URL: {exc}") from exc

    def close(self) -> None:
        self._stopping.set()
        self._storage.pool.disconnect()


def open_transport(
    redis_url: str | None, queue: str, sqlite_path: str | None = None
) -> LocalTransport | RedisTransport:
    if redis_url:
        return RedisTransport(redis_url, queue)
    return LocalTransport(Path(f"{sqlite_path}.doorbell") if sqlite_path else None)
