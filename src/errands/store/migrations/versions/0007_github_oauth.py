"""sign in with GitHub: users.github_id, users.github_login

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 20:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("github_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("github_login", sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint("uq_users_github_id", ["github_id"])


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_users_github_id", type_="unique")
        batch_op.drop_column("github_login")
        batch_op.drop_column("github_id")
