"""The database handle: engine, sessions, migrations."""

from __future__ import annotations

import copy
import fcntl
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, sessionmaker

from errands.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r"^(down_revision|revision)\s*=\s*(None|\"(\w+)\")\s*$", re.MULTILINE)


def written_head() -> str | None:
    """The newest revision, read from the migration files' ``revision =`` and
    ``down_revision =`` lines, or None when they are not one plain chain. Importing alembic
    costs more than everything else a CLI command does; this lets a database that is already
    at head open without it (anything unusual falls back to alembic, which decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((m[1], m[3]) for m in _REVISION.finditer(path.read_text()))
        if "revision" not in found or "down_revision" not in found or not found["revision"]:
            return None
        revisions.add(found["revision"])
        if found["down_revision"]:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


# Session.info keys of a fenced session (see Database.fenced): set once the transaction has
# written something, and once its fence has been checked (the check locks the fence's row
# until the transaction ends, so once is enough).
WROTE = "errands.wrote"
FENCE_CHECKED = "errands.fence_checked"

Fence = Callable[[Session], None]


def _flushed(session: Session, _flush: UOWTransaction) -> None:
    session.info[WROTE] = True


def _executed(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[WROTE] = True


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; the busy timeout makes concurrent
    # writers (serve + CLI + worker processes) wait for each other instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite_path: str | None = None
        try:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[-1]
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                    self.sqlite_path = path
                self.engine: Engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 30}
                )
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ConfigError(f"ERRANDS_DATABASE_URL is not usable ({url!r}): {exc}") from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self._sessions, "after_flush", _flushed)
        event.listen(self._sessions, "do_orm_execute", _executed)
        self._fence: Fence | None = None

    def fenced(self, fence: Fence) -> Database:
        """This database, but every transaction that writes runs ``fence(session)`` before it
        commits, in the same transaction: a job's writes carry its lease, and ``fence``
        refuses them (raising) once the lease is gone. Same engine, same connections."""
        view = copy.copy(self)
        view._fence = fence
        return view

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent, safe when several processes
        start at once: the CLI, a server and workers all call this)."""
        if self._at_head(written_head()):
            return
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        head = ScriptDirectory.from_config(config).get_current_head()
        try:
            with self.engine.connect() as connection:
                if MigrationContext.configure(connection).get_current_revision() == head:
                    return
            with self._migration_lock(), self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(7243501)"))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except SQLAlchemyError as exc:
            raise ConfigError(f"Cannot open or migrate the database at {self.url}: {exc}") from exc

    def _at_head(self, head: str | None) -> bool:
        if head is None:
            return False
        try:
            with self.engine.connect() as connection:
                found = connection.execute(text("SELECT version_num FROM alembic_version"))
                return [row[0] for row in found] == [head]
        except SQLAlchemyError:
            return False  # no version table yet (a new database): alembic creates it

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.sqlite_path is None:
            yield
            return
        with open(f"{self.sqlite_path}.migrate-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends normally, rolled back otherwise."""
        session = self._sessions()
        try:
            yield session
            if self._fence is not None:
                session.flush()
                if session.info.get(WROTE) and not session.info.get(FENCE_CHECKED):
                    self._fence(session)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def after_commit(self, callback: Callable[[Session], None]) -> None:
        """Call ``callback(session)`` after every commit of a session of this database (the
        job transport uses it to wake workers only once their job's row is visible)."""
        event.listen(self._sessions, "after_commit", callback)

    def dispose(self) -> None:
        self.engine.dispose()
