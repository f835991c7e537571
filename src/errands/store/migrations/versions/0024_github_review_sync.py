"""gh-sync: GitHub review sync both ways — review comments remember when they were edited and
what was last written to or read from GitHub (so our own write coming back is not a new edit),
their thread's resolution as GitHub has it; deletions wait in an outbox for the github job;
a reviewer's verdict remembers what was posted on the pull request; a task remembers which
round of questions it posted on its issue

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_comments") as batch:
        batch.add_column(sa.Column("edited_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("github_digest", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column(
                "github_edit_pending", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(sa.Column("github_resolved", sa.Boolean(), nullable=True))
    with op.batch_alter_table("reviewer_states") as batch:
        batch.add_column(sa.Column("github_posted", sa.String(100), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("github_questions_round", sa.Integer(), nullable=True))
    op.create_table(
        "github_outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "project_id",
            sa.Integer(),
            sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("github_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    # Tasks that already posted their (only) round of questions: that round is posted.
    op.execute(
        "UPDATE tasks SET github_questions_round = (SELECT MAX(questions.id) FROM questions "
        "WHERE questions.task_id = tasks.id) WHERE github_questions_comment IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("github_outbox")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("github_questions_round")
    with op.batch_alter_table("reviewer_states") as batch:
        batch.drop_column("github_posted")
    with op.batch_alter_table("review_comments") as batch:
        batch.drop_column("github_resolved")
        batch.drop_column("github_edit_pending")
        batch.drop_column("github_digest")
        batch.drop_column("edited_at")
