"""subtasks.wip_patch: what a subtask had changed, uncommitted, when its agent stopped to ask
(a binary git diff), restored when the subtask resumes with the answer

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subtasks") as batch:
        batch.add_column(sa.Column("wip_patch", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subtasks") as batch:
        batch.drop_column("wip_patch")
