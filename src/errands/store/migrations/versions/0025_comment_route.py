"""review_comments.route: where a revise round sent the comment (a fix inside a subtask, or a
new subtask) and the agent's reason (review-route)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_comments") as batch:
        batch.add_column(sa.Column("route", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_comments") as batch:
        batch.drop_column("route")
