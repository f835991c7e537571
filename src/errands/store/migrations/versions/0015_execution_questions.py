"""questions asked during execution: questions.phase, questions.subtask_position

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 05:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("questions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("phase", sa.String(length=16), nullable=False, server_default="research")
        )
        batch_op.add_column(sa.Column("subtask_position", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("questions", schema=None) as batch_op:
        batch_op.drop_column("subtask_position")
        batch_op.drop_column("phase")
