"""progress notes: subtasks.progress; the GitHub status comment of a task

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 04:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subtasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress", sa.Text(), nullable=True))
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("github_status_comment", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("github_status_digest", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("github_status_digest")
        batch_op.drop_column("github_status_comment")
    with op.batch_alter_table("subtasks", schema=None) as batch_op:
        batch_op.drop_column("progress")
