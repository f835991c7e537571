"""executors per project: projects.executor, projects.revise_executor

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 04:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("executor", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("revise_executor", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("revise_executor")
        batch_op.drop_column("executor")
