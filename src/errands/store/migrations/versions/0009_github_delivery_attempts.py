"""github deliveries count failed attempts: github_deliveries.attempts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("github_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("github_deliveries", schema=None) as batch_op:
        batch_op.drop_column("attempts")
