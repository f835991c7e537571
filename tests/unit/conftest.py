"""The job store the ledger and worker tests share: a migrated SQLite and PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from errands.store import Database
from tests.services import postgres_url


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with ExitStack() as stack:
        if request.param == "postgres":
            url = stack.enter_context(postgres_url())
        else:
            url = f"sqlite:///{tmp_path}/t.db"
        database = Database(url)
        database.migrate()
        yield database
        database.dispose()
