"""install_flags: facts about the whole install that every process must agree on, kept in
the database rather than in each process's settings (the first: "billing", whether the
install bills its organizations, which the server records at start-up so that workers,
which need no Stripe settings, hold an organization without credits too)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "install_flags",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("install_flags")
