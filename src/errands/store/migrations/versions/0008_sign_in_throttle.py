"""sign-in throttling: sign_in_throttle

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_throttle",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_sign_in_throttle_last_attempt_at", "sign_in_throttle", ["last_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_sign_in_throttle_last_attempt_at", table_name="sign_in_throttle")
    op.drop_table("sign_in_throttle")
