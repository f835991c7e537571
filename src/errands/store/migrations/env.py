"""Alembic environment: migrations run in-process on the connection ``Database`` hands in."""

from __future__ import annotations

from alembic import context

from errands.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs the alembic CLI directly
    raise RuntimeError("Run migrations through errands.store.Database.migrate().")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite needs batch mode to alter tables
)
with context.begin_transaction():
    context.run_migrations()
