"""gh-stack: stacked pull requests — projects.stacked_pulls (publish one pull request per
subtask as a GitHub stack), tasks.github_stack (its stack's number), subtasks.github_pr (each
subtask's own pull request)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 11:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(
            sa.Column("stacked_pulls", sa.Boolean(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("github_stack", sa.Integer(), nullable=True))
    with op.batch_alter_table("subtasks") as batch:
        batch.add_column(sa.Column("github_pr", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subtasks") as batch:
        batch.drop_column("github_pr")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("github_stack")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("stacked_pulls")
