"""per-reviewer review state: review_marks (viewed files per subtask version),
reviewer_states (what each reviewer last reviewed, and their verdict),
projects.required_approvals

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_marks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "subtask_id",
            sa.Integer(),
            sa.ForeignKey("subtasks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ux_review_marks", "review_marks", ["subtask_id", "reviewer", "path"], unique=True
    )
    op.create_table(
        "reviewer_states",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "task_id", sa.Integer(), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("name", sa.String(320), nullable=False),
        sa.Column("reviewed_head", sa.String(64), nullable=True),
        sa.Column("verdict", sa.String(20), nullable=True),
        sa.Column("verdict_head", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ux_reviewer_states", "reviewer_states", ["task_id", "reviewer"], unique=True)
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("required_approvals", sa.Integer(), nullable=False, server_default="1")
        )


def downgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("required_approvals")
    op.drop_index("ux_reviewer_states", table_name="reviewer_states")
    op.drop_table("reviewer_states")
    op.drop_index("ux_review_marks", table_name="review_marks")
    op.drop_table("review_marks")
