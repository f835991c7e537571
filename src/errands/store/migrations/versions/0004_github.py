"""github: installations, webhook deliveries, GitHub fields of projects, tasks and comments

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("github_repo", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("github_installation_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("github_imported_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_projects_github_repo"), ["github_repo"], unique=False)

    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("github_issue", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("github_pr", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("github_pr_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("github_questions_comment", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("base_moved_to", sa.String(length=64), nullable=True))
        batch_op.create_index("ux_tasks_github_issue", ["project_id", "github_issue"], unique=True)

    with op.batch_alter_table("review_comments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("github_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("github_author", sa.String(length=100), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_review_comments_github_id"), ["github_id"], unique=False
        )

    op.create_table(
        "github_installations",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("repositories", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "github_deliveries",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=True),
        sa.Column("repository", sa.String(length=200), nullable=True),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("processed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("github_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_github_deliveries_project_state", ["project_id", "state"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("github_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_github_deliveries_project_state")
    op.drop_table("github_deliveries")
    op.drop_table("github_installations")
    with op.batch_alter_table("review_comments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_comments_github_id"))
        batch_op.drop_column("github_author")
        batch_op.drop_column("github_id")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ux_tasks_github_issue")
        batch_op.drop_column("base_moved_to")
        batch_op.drop_column("github_questions_comment")
        batch_op.drop_column("github_pr_url")
        batch_op.drop_column("github_pr")
        batch_op.drop_column("github_issue")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_projects_github_repo"))
        batch_op.drop_column("github_imported_at")
        batch_op.drop_column("github_installation_id")
        batch_op.drop_column("github_repo")
