"""project models: provider:name per phase

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 19:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("research_model", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("execute_model", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("execute_model")
        batch_op.drop_column("research_model")
