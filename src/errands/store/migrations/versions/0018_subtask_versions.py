"""subtask versions: subtask_versions (every commit a subtask has had, and its round)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 04:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subtask_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "subtask_id",
            sa.Integer(),
            sa.ForeignKey("subtasks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ux_subtask_versions_number", "subtask_versions", ["subtask_id", "number"], unique=True
    )
    # Every subtask committed before versions were kept is its own version 1, of round 1.
    op.execute(
        "INSERT INTO subtask_versions (subtask_id, number, commit_sha, round, created_at) "
        "SELECT id, 1, commit_sha, 1, CURRENT_TIMESTAMP FROM subtasks "
        "WHERE commit_sha IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ux_subtask_versions_number", table_name="subtask_versions")
    op.drop_table("subtask_versions")
