"""The store's tables. Enumerated columns hold the ``StrEnum`` values of ``errands.domain``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    origin: Mapped[str] = mapped_column(Text)  # a local path or a git URL
    base_branch: Mapped[str] = mapped_column(String(255))
    languages: Mapped[dict[str, Any]] = mapped_column(default=dict)  # language -> file count
    file_count: Mapped[int] = mapped_column(default=0)
    # Commands the index stage detected, and the user's override (None = use detected).
    detected_commands: Mapped[list[Any]] = mapped_column(default=list)
    # Why each was detected: [{"command", "reason"}], in the same order.
    detection: Mapped[list[Any]] = mapped_column(default=list)
    verify_commands: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    # The repository's .errands.toml as the index last read it, and the user's overrides.
    repo_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    setup_commands: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    setup_network: Mapped[bool | None] = mapped_column(default=None)
    # host:port pairs setup commands may reach through the egress proxy (None: the file's).
    setup_hosts: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    sandbox_backend: Mapped[str | None] = mapped_column(String(32), default=None)
    auto_execute: Mapped[bool] = mapped_column(default=True)
    # Jobs of this project running at once across all workers (None = the setting).
    max_concurrent_jobs: Mapped[int | None] = mapped_column(default=None)
    # Questions the agent asks while executing are answered with its own leaning once they
    # have waited this long (None: the task waits for people however long it takes).
    lean_after_hours: Mapped[float | None] = mapped_column(default=None)
    # provider:name per phase for this project's jobs (None = the server's settings).
    research_model: Mapped[str | None] = mapped_column(String(200), default=None)
    execute_model: Mapped[str | None] = mapped_column(String(200), default=None)
    # The executor of execute and of revise rounds (None = .errands.toml, then the settings).
    executor: Mapped[str | None] = mapped_column(String(64), default=None)
    revise_executor: Mapped[str | None] = mapped_column(String(64), default=None)
    # How many reviewers must approve the same head before it merges.
    required_approvals: Mapped[int] = mapped_column(default=1, server_default="1")
    indexed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A project connected to GitHub: its repository (owner/name), the App installation that
    # reaches it (None with a personal token), and when its open issues were last imported.
    github_repo: Mapped[str | None] = mapped_column(String(200), default=None, index=True)
    github_installation_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    github_imported_at: Mapped[datetime | None] = mapped_column(default=None)
    # Publish a task as one pull request per subtask, linked as a GitHub stack (the Stacks
    # API) and landed bottom-up through GitHub's stack merge; off: one pull request per task.
    stacked_pulls: Mapped[bool] = mapped_column(default=False, server_default="0")
    # The organization owning the project; None until the first account exists (single-user
    # local mode), and for a project the local CLI adds later: those belong to the first
    # organization (see errands.accounts.orgs.project_org_id).
    org_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL"), default=None, index=True
    )

    tasks: Mapped[list[Task]] = relationship(back_populates="project")


class Task(Base):
    __tablename__ = "tasks"
    # One task per GitHub issue of a project, even when a webhook and an import race.
    __table_args__ = (Index("ux_tasks_github_issue", "project_id", "github_issue", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(32), index=True)
    # The state a failed task failed in, so a retry knows which stage to resume.
    failed_in: Mapped[str | None] = mapped_column(String(32), default=None)
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    branch: Mapped[str | None] = mapped_column(String(300), default=None)
    base_branch: Mapped[str] = mapped_column(String(255))
    base_commit: Mapped[str | None] = mapped_column(String(64), default=None)
    research: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    requirements: Mapped[list[Any]] = mapped_column(default=list)
    out_of_scope: Mapped[list[Any]] = mapped_column(default=list)
    handoff: Mapped[str | None] = mapped_column(Text, default=None)
    merge_commit: Mapped[str | None] = mapped_column(String(64), default=None)
    merge_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # GitHub: the issue the task came from, its pull request, the issue comment that asked
    # the research questions, and the base commit a push moved the base branch to after the
    # task started (so the task knows it needs a rebase).
    github_issue: Mapped[int | None] = mapped_column(default=None)
    github_pr: Mapped[int | None] = mapped_column(default=None)
    github_stack: Mapped[int | None] = mapped_column(default=None)  # its GitHub stack's number
    github_pr_url: Mapped[str | None] = mapped_column(Text, default=None)
    github_questions_comment: Mapped[int | None] = mapped_column(BigInteger, default=None)
    base_moved_to: Mapped[str | None] = mapped_column(String(64), default=None)
    # The one status comment on the issue that progress notes are edited into, and the
    # digest of the body last written there (so an unchanged body is not written again).
    github_status_comment: Mapped[int | None] = mapped_column(BigInteger, default=None)
    github_status_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    # The round of questions last posted on the issue: its newest question's id (a retried
    # research, or a question asked during execution, is a new round and is posted again).
    github_questions_round: Mapped[int | None] = mapped_column(default=None)
    # Spending cap of the task in millionths of a US dollar (None = no cap of its own).
    budget_micros: Mapped[int | None] = mapped_column(BigInteger, default=None)

    project: Mapped[Project] = relationship(back_populates="tasks")
    questions: Mapped[list[Question]] = relationship(
        back_populates="task", order_by="Question.position", cascade="all, delete-orphan"
    )
    subtasks: Mapped[list[Subtask]] = relationship(
        back_populates="task", order_by="Subtask.position", cascade="all, delete-orphan"
    )
    comments: Mapped[list[ReviewComment]] = relationship(
        back_populates="task", order_by="ReviewComment.id", cascade="all, delete-orphan"
    )


class Question(Base):
    __tablename__ = "questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]  # 1-based, as the user refers to them
    text: Mapped[str] = mapped_column(Text)
    reasoning: Mapped[str] = mapped_column(Text, default="")
    options: Mapped[list[Any]] = mapped_column(default=list)  # [{"label", "requirement"}]
    recommended: Mapped[int | None] = mapped_column(default=None)  # 1-based option number
    answer_option: Mapped[int | None] = mapped_column(default=None)
    answer_text: Mapped[str | None] = mapped_column(Text, default=None)
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    # Who asked: research, or the executing / revising agent in the middle of a subtask.
    phase: Mapped[str] = mapped_column(String(16), default="research", server_default="research")
    subtask_position: Mapped[int | None] = mapped_column(default=None)

    task: Mapped[Task] = relationship(back_populates="questions")

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


class Subtask(Base):
    __tablename__ = "subtasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]  # 1-based order in the stack
    title: Mapped[str] = mapped_column(String(300))
    steps: Mapped[list[Any]] = mapped_column(default=list)
    origin: Mapped[str] = mapped_column(String(16), default="plan")  # plan | revise
    state: Mapped[str] = mapped_column(String(16))
    commit_sha: Mapped[str | None] = mapped_column(String(64), default=None)
    summary: Mapped[str | None] = mapped_column(Text, default=None)
    decisions: Mapped[list[Any]] = mapped_column(default=list)
    # [{"command", "exit_code", "duration", "output"}] of the last verification run
    verification: Mapped[list[Any]] = mapped_column(default=list)
    verify_attempts: Mapped[int] = mapped_column(default=0)
    verified: Mapped[bool | None] = mapped_column(default=None)
    # The written update once it is done: what is done, how it was verified, what is next.
    progress: Mapped[str | None] = mapped_column(Text, default=None)
    # Its uncommitted work (a binary git diff) when its agent stopped to ask: restored when
    # it resumes with the answer, dropped once it commits (errands.workflow.asking).
    wip_patch: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    # Its own pull request, in a project that publishes stacked pull requests.
    github_pr: Mapped[int | None] = mapped_column(default=None)

    task: Mapped[Task] = relationship(back_populates="subtasks")
    versions: Mapped[list[SubtaskVersion]] = relationship(
        back_populates="subtask", order_by="SubtaskVersion.number", cascade="all, delete-orphan"
    )


class SubtaskVersion(Base):
    """One commit a subtask has had, like a patch set: v1 from execution, v2 … from the
    review rounds that rewrote it (a fixup restacked into it, a rebase)."""

    __tablename__ = "subtask_versions"
    __table_args__ = (Index("ux_subtask_versions_number", "subtask_id", "number", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subtask_id: Mapped[int] = mapped_column(ForeignKey("subtasks.id", ondelete="CASCADE"))
    number: Mapped[int]  # 1-based
    commit_sha: Mapped[str] = mapped_column(String(64))
    round: Mapped[int]  # the review round it was made for: 1 is the first review
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    subtask: Mapped[Subtask] = relationship(back_populates="versions")


class ReviewMark(Base):
    """A file a reviewer marked viewed in a subtask, at the version they looked at. It holds
    for newer versions as long as the subtask's change to that file stays the same."""

    __tablename__ = "review_marks"
    __table_args__ = (Index("ux_review_marks", "subtask_id", "reviewer", "path", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subtask_id: Mapped[int] = mapped_column(ForeignKey("subtasks.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(64))  # "user:<id>", "local", "github:<login>"
    path: Mapped[str] = mapped_column(Text)
    version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewerState(Base):
    """One reviewer of one task: the branch tip they last reviewed (marked a file viewed at,
    approved or asked changes of) and their verdict, which every reviewer sees."""

    __tablename__ = "reviewer_states"
    __table_args__ = (Index("ux_reviewer_states", "task_id", "reviewer", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(320))  # shown to the other reviewers
    reviewed_head: Mapped[str | None] = mapped_column(String(64), default=None)
    verdict: Mapped[str | None] = mapped_column(String(20), default=None)  # approved | changes
    verdict_head: Mapped[str | None] = mapped_column(String(64), default=None)
    # "<verdict>@<head>" last posted on the task's pull request (an Errands reviewer's).
    github_posted: Mapped[str | None] = mapped_column(String(100), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReviewComment(Base):
    __tablename__ = "review_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    subtask_id: Mapped[int | None] = mapped_column(
        ForeignKey("subtasks.id", ondelete="SET NULL"), default=None
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("review_comments.id", ondelete="CASCADE"), default=None
    )
    path: Mapped[str] = mapped_column(Text)
    line: Mapped[int]
    end_line: Mapped[int | None] = mapped_column(default=None)
    side: Mapped[str] = mapped_column(String(8), default="new")
    body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), default="blocking")
    commit_sha: Mapped[str | None] = mapped_column(String(64), default=None)
    resolved: Mapped[bool] = mapped_column(default=False)
    addressed_by_subtask_id: Mapped[int | None] = mapped_column(default=None)
    # Where the last revise round sent it and why: {"kind": "fix" | "new", "subtask": its
    # position (None: not made yet), "reason": the agent's one line, "by": "agent" |
    # "where-left"}. None: no round has routed it.
    route: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The pull request review comment this is on GitHub (either way it came), and who wrote
    # it there; None for a comment not (yet) on GitHub.
    github_id: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)
    github_author: Mapped[str | None] = mapped_column(String(100), default=None)
    # When the body last changed after it was written (an edit here, or GitHub's time of an
    # edit there): of two edits, the newer wins.
    edited_at: Mapped[datetime | None] = mapped_column(default=None)
    # sha256 of the body exactly as last written to or read from GitHub: a webhook carrying
    # that same text is our own write (or old news) coming back, not a new edit.
    github_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    # Edited here, not yet on GitHub.
    github_edit_pending: Mapped[bool] = mapped_column(default=False, server_default="0")
    # The thread's resolution as GitHub has it (None: never told / never heard).
    github_resolved: Mapped[bool | None] = mapped_column(default=None)
    # The Errands user who wrote it (None: single-user mode, GitHub, or the agent), so a
    # reply to their thread can notify them.
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )

    task: Mapped[Task] = relationship(back_populates="comments")


class Job(Base):
    """A row in the job ledger. Workers lease rows; the row, not a queue, is the truth."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_run_after", "state", "run_after"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), index=True, default=None
    )
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    # The fencing token: bumped by every claim and never lowered (``attempts`` is, by a
    # requeue). Every write a job makes names the epoch it was leased under, and the store
    # refuses it once a newer claim exists (see errands.jobs.ledger.fence).
    lease_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Token usage of every model call the job made, summed.
    model_requests: Mapped[int] = mapped_column(default=0)
    input_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    # What those calls cost at the prices in effect when they were made, in millionths of a
    # US dollar (integers, so sums are exact).
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)


class Schedule(Base):
    """One periodic duty (recovery sweep, workspace clean-up, ...). Whichever worker moves
    ``next_run_at`` forward with a compare-and-swap runs it: once across all workers."""

    __tablename__ = "schedules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_run_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    runs: Mapped[int] = mapped_column(default=0)


class Event(Base):
    """The append-only record of everything that happened to a task (or a project)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True, default=None
    )
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), index=True, default=None
    )
    job_id: Mapped[int | None] = mapped_column(default=None)
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GitHubInstallation(Base):
    """A GitHub App installation, as installation webhooks describe it."""

    __tablename__ = "github_installations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account: Mapped[str] = mapped_column(String(200))
    repositories: Mapped[list[Any]] = mapped_column(default=list)  # full names
    active: Mapped[bool] = mapped_column(default=True)  # False once deleted or suspended
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GitHubDelivery(Base):
    """A webhook delivery, keyed by ``X-GitHub-Delivery`` so a redelivery is recognised.

    The payload is kept until the ``github`` job has processed it, then dropped."""

    __tablename__ = "github_deliveries"
    __table_args__ = (Index("ix_github_deliveries_project_state", "project_id", "state"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64), default=None)
    repository: Mapped[str | None] = mapped_column(String(200), default=None)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None
    )
    state: Mapped[str] = mapped_column(String(16))  # pending | done | ignored | failed
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    outcome: Mapped[str | None] = mapped_column(Text, default=None)
    # Failed attempts at applying it; the job gives up (state failed) after a few.
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)


class GitHubOutbox(Base):
    """Something to undo on GitHub whose Errands row is gone (a mirrored review comment
    deleted here): the project's ``github`` job does it, then drops the row."""

    __tablename__ = "github_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[int | None] = mapped_column(default=None)
    kind: Mapped[str] = mapped_column(String(32))  # delete_review_comment
    github_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- accounts and organizations (errands.accounts) -----------------------------------------


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(Text, default=None)  # None: GitHub only
    email_verified_at: Mapped[datetime | None] = mapped_column(default=None)
    # The GitHub account signing in with GitHub ("Sign in with GitHub") uses; never its token.
    github_id: Mapped[int | None] = mapped_column(BigInteger, unique=True, default=None)
    github_login: Mapped[str | None] = mapped_column(String(100), default=None)
    # Bumped by "log out everywhere": sessions of an older generation stop working.
    session_generation: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Monthly spending cap in millionths of a US dollar (None = no cap).
    monthly_budget_micros: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16))  # owner | member | viewer
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserSession(Base):
    """A signed-in browser. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    generation: Mapped[int] = mapped_column(default=0)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class ApiToken(Base):
    """A bearer token for the CLI and automation, scoped to one organization."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell tokens apart
    name: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class EmailCode(Base):
    """An expiring single-use code sent by email: an invitation, an email verification or a
    password reset. Only the code's hash is stored."""

    __tablename__ = "email_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # invite | verify | reset
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    org_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), default=None
    )
    role: Mapped[str | None] = mapped_column(String(16), default=None)
    created_by: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class SignInThrottle(Base):
    """Consecutive failed sign-in attempts of one account or one client address, and until
    when the next attempt must wait (errands.accounts.throttle). Kept in the store so every
    server process and worker sees the same count. The key is a hash: addresses and emails
    that have no account are not stored in clear."""

    __tablename__ = "sign_in_throttle"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(default=None)
    last_attempt_at: Mapped[datetime] = mapped_column(index=True)


class OrgSecret(Base):
    """An organization's credential (LLM or GitHub key), encrypted with ERRANDS_SECRET_KEY."""

    __tablename__ = "org_secrets"

    org_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    hint: Mapped[str] = mapped_column(String(16))  # the last characters, to recognise it
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ModelPrice(Base):
    """An organization's price of a model, overriding the built-in default, in US dollars
    per million tokens."""

    __tablename__ = "model_prices"

    org_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    input_per_mtok: Mapped[float]
    output_per_mtok: Mapped[float]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditEntry(Base):
    """Who did what: every state-changing request a signed-in user made, and sign-ins."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True, default=None
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    actor: Mapped[str] = mapped_column(String(320), default="")  # email, kept if user goes
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- notifications (errands.notifications) -------------------------------------------------


class NotificationOutbox(Base):
    """A task event someone may want to hear about, written in the same transaction as the
    event itself (the outbox pattern): if the state change committed, so did this row, and
    a crash before or after cannot lose or double it. ``composed_at`` is set once the
    notifications it causes are written (one transaction again)."""

    __tablename__ = "notification_outbox"
    __table_args__ = (Index("ix_notification_outbox_pending", "composed_at", "task_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))  # errands.notifications.prefs.EVENTS
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    composed_at: Mapped[datetime | None] = mapped_column(default=None)


class Notification(Base):
    """One message to one user over one channel, covering one or more outbox rows of a task
    (coalesced). Delivered by the workers' ``notifications`` duty: claimed by a
    compare-and-swap, retried with backoff, marked sent or failed."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_due", "state", "next_attempt_at"),
        Index("ix_notifications_user_channel", "user_id", "channel", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))  # email | webhook | browser
    events: Mapped[list[Any]] = mapped_column(default=list)  # outbox kinds covered, in order
    title: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # pending | sending | sent | failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class NotificationSettings(Base):
    """A user's choice of events per channel, and their webhook. No row: the defaults."""

    __tablename__ = "notification_settings"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[list[Any]] = mapped_column(default=list)  # event kinds
    webhook: Mapped[list[Any]] = mapped_column(default=list)
    browser: Mapped[list[Any]] = mapped_column(default=list)
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    # Signs each webhook body (HMAC-SHA256); shown to its user, never put in a payload.
    webhook_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# -- billing (errands.billing; rows exist only once billing is configured and used) ---------


class BillingAccount(Base):
    """An organization's Stripe customer, its subscription and plan. Its existence is what
    makes the organization's execution depend on credits."""

    __tablename__ = "billing_accounts"

    org_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    stripe_customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255), default=None)
    plan: Mapped[str | None] = mapped_column(String(64), default=None)
    # Stripe's subscription status (active, past_due, canceled, …) and invoice state.
    status: Mapped[str | None] = mapped_column(String(32), default=None)
    payment_failed: Mapped[bool] = mapped_column(default=False, server_default="0")
    # The `created` time of the newest subscription event applied: an older one arriving
    # late (Stripe does not order deliveries) changes nothing.
    subscription_event_at: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InstallFlag(Base):
    """A fact about the whole install every process must agree on, whatever its own settings
    say: ``billing`` (the server records at start-up whether it bills its organizations)."""

    __tablename__ = "install_flags"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column()


class CreditEntry(Base):
    """One line of an organization's credits ledger, in millionths of a US dollar: a grant
    (positive, from a paid invoice: at most one per invoice), a spend (negative, a job's
    priced model usage) or a refund (positive, a failed job's spends given back, see
    errands.accounts.credits). The balance is the sum."""

    __tablename__ = "credit_entries"
    __table_args__ = (Index("ix_credit_entries_org", "org_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # grant | spend | refund
    micros: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None
    )
    invoice_id: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StripeEvent(Base):
    """A Stripe webhook event applied, keyed by its id: a redelivery changes nothing."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
