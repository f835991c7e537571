"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from errands.store import Base, Database
from tests.services import postgres_url


def assert_schema_matches(db: Database) -> None:
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"the migrations and the models disagree: {diff}"


def test_sqlite_schema_matches_the_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'errands.db'}")
    db.migrate()
    assert_schema_matches(db)


def test_postgres_schema_matches_the_models() -> None:
    with postgres_url() as url:
        db = Database(url)
        db.migrate()
        assert_schema_matches(db)
        db.engine.dispose()
