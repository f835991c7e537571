"""What the API returns and the CLI prints with --json: one public shape per entity."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from errands.domain import SubtaskState
from errands.limits import Id, LocateLimit, LocateText
from errands.settings import Settings
from errands.store import Job, Project, Task
from errands.workflow.handoff import no_change
from errands.workflow.project_config import effective_config


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# The store keeps naive UTC datetimes; the API says so (RFC 3339 wants the offset).
UtcDateTime = Annotated[datetime, AfterValidator(_utc)]


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class DetectedPublic(BaseModel):
    command: str
    reason: str


class ProjectPublic(_Public):
    id: int
    name: str
    origin: str
    base_branch: str
    languages: dict[str, int]
    file_count: int
    detected_commands: list[str]
    detection: list[DetectedPublic] = Field(
        default_factory=list, description="Each detected command with why it was chosen."
    )
    verify_commands: list[str] | None
    setup_commands: list[str] | None
    setup_network: bool | None
    setup_hosts: list[str] | None
    sandbox_backend: str | None
    repo_config: dict[str, Any]
    auto_execute: bool
    max_concurrent_jobs: int | None
    lean_after_hours: float | None = Field(
        default=None,
        description="Questions asked during execution are answered with the agent's leaning "
        "after this many hours (null: wait for people).",
    )
    research_model: str | None
    execute_model: str | None
    executor: str | None
    revise_executor: str | None
    required_approvals: int = 1
    github_repo: str | None = Field(
        default=None, description="owner/name of a project connected to GitHub."
    )
    stacked_pulls: bool = Field(
        default=False,
        description="GitHub projects: one pull request per subtask, linked as a GitHub stack "
        "and landed bottom-up through GitHub's stack merge (off: one pull request per task).",
    )
    indexed_at: UtcDateTime | None
    created_at: UtcDateTime
    effective: EffectivePublic | None = None

    @classmethod
    def of(cls, project: Project, settings: Settings) -> ProjectPublic:
        public = cls.model_validate(project)
        config = effective_config(project, settings)
        public.effective = EffectivePublic(
            verify_commands=config.verify_commands,
            setup_commands=config.setup_commands,
            setup_network=config.setup_network,
            setup_egress=config.setup_egress,
            setup_hosts=list(config.setup_hosts),
            sandbox=config.backend,
            command_timeout=config.command_timeout,
            max_concurrent_jobs=project.max_concurrent_jobs or settings.project_max_jobs,
            research_model=project.research_model or settings.research_model or settings.model,
            execute_model=project.execute_model or settings.execute_model or settings.model,
            executor=config.executors["execute"],
            revise_executor=config.executors["revise"],
        )
        return public


class EffectivePublic(BaseModel):
    """What a job of this project will use, after overrides, the repository file and
    detection are combined."""

    verify_commands: list[str]
    setup_commands: list[str]
    setup_network: bool
    setup_egress: str = Field(
        description="How setup commands reach the network: off, allowlist (through the egress "
        "proxy, to setup_hosts only) or host (the host's whole network, asked for explicitly)."
    )
    setup_hosts: list[str] = Field(description="host:port pairs setup commands may reach.")
    sandbox: str
    command_timeout: float
    max_concurrent_jobs: int
    research_model: str | None  # None: no model configured anywhere
    execute_model: str | None
    executor: str = Field(description="What types the code of each subtask: native, claude-code…")
    revise_executor: str = Field(description="What types the code of revise rounds.")


class QuestionPublic(_Public):
    position: int
    text: str
    reasoning: str
    options: list[dict[str, Any]]
    recommended: int | None
    answer_option: int | None
    answer_text: str | None
    answered_at: UtcDateTime | None
    phase: str = Field(
        default="research",
        description="Who asked: research, or the agent while executing or revising.",
    )
    subtask_position: int | None = Field(
        default=None, description="The subtask that was under way when the agent asked."
    )


class VersionPublic(_Public):
    number: int = Field(description="1 for the commit execution made; one more per rewrite.")
    commit_sha: str
    round: int = Field(description="The review round it was made for (1: the first review).")
    created_at: UtcDateTime


class SubtaskPublic(_Public):
    position: int
    title: str
    steps: list[str]
    origin: str
    state: str
    commit_sha: str | None
    summary: str | None
    decisions: list[str]
    verification: list[dict[str, Any]]
    verify_attempts: int
    verified: bool | None
    progress: str | None = Field(
        default=None,
        description="The written update once it was done: what is done, how it was verified, "
        "what is next.",
    )
    no_change_reason: str | None = Field(
        default=None, description="For a subtask that changed nothing: why (the agent's words)."
    )
    versions: list[VersionPublic] = Field(
        default_factory=list, description="Every commit it has had, oldest first."
    )

    @model_validator(mode="after")
    def _reason_of_an_empty_subtask(self) -> SubtaskPublic:
        # An empty subtask's summary is the reason it changed nothing (see implement.py).
        if self.state == SubtaskState.EMPTY:
            self.no_change_reason = self.summary
        return self


class CommentRoutePublic(BaseModel):
    """Where the last revise round sent a comment, and the agent's reason."""

    kind: Literal["fix", "new"]  # a fix inside a subtask, or new work in a new subtask
    subtask: int | None  # that subtask's position (None: the new one is not made yet)
    reason: str
    by: Literal["agent", "where-left"]  # where-left: the agent gave no valid routing


class CommentPublic(_Public):
    id: int
    parent_id: int | None
    path: str
    line: int
    end_line: int | None
    side: str
    body: str
    kind: str
    resolved: bool
    commit_sha: str | None
    created_at: UtcDateTime
    edited_at: UtcDateTime | None = None
    github_author: str | None = None
    route: CommentRoutePublic | None = None


class UsagePublic(BaseModel):
    model_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class JobPublic(_Public):
    id: int
    kind: str
    state: str
    attempts: int
    last_error: str | None
    created_at: UtcDateTime
    started_at: UtcDateTime | None  # when a worker took it up (its latest attempt)
    finished_at: UtcDateTime | None
    model_requests: int
    input_tokens: int
    output_tokens: int


class TaskSummary(_Public):
    id: int
    project_id: int
    title: str
    state: str
    branch: str | None
    failure_reason: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime


class TaskPublic(TaskSummary):
    body: str
    base_branch: str
    base_commit: str | None
    base_moved_to: str | None = Field(
        default=None,
        description="The base branch moved here and the stack is not rebased onto it yet "
        "(a rebase is queued, running, or failed: see the task.rebased / task.rebase_failed "
        "events).",
    )
    research: dict[str, Any] | None
    requirements: list[str]
    out_of_scope: list[str]
    questions: list[QuestionPublic]
    subtasks: list[SubtaskPublic]
    comments: list[CommentPublic]
    handoff: str | None
    merge_commit: str | None
    merge_error: str | None
    jobs: list[JobPublic] = Field(default_factory=list)
    usage: UsagePublic = Field(default_factory=UsagePublic)
    no_change: bool = Field(
        default=False,
        description="Every subtask finished without changing anything: there is nothing to "
        "review or merge (approve answers 409 nothing_to_merge; cancel closes the task).",
    )

    @classmethod
    def of(cls, task: Task, jobs: list[Job]) -> TaskPublic:
        public = cls.model_validate(task)
        public.no_change = no_change(task)
        public.jobs = [JobPublic.model_validate(j) for j in jobs]
        public.usage = UsagePublic(
            model_requests=sum(j.model_requests for j in jobs),
            input_tokens=sum(j.input_tokens for j in jobs),
            output_tokens=sum(j.output_tokens for j in jobs),
        )
        return public


class EventPublic(_Public):
    id: int
    task_id: int | None
    project_id: int | None
    job_id: int | None
    kind: str
    message: str
    data: dict[str, Any]
    created_at: UtcDateTime


# -- inputs ---------------------------------------------------------------------------------


class ProjectCreate(BaseModel):
    origin: str = Field(description="A local path to a git repository, or a git URL.")
    name: str | None = None
    base_branch: str | None = None
    verify_commands: list[str] | None = None
    auto_execute: bool = True


class ProjectUpdate(BaseModel):
    verify_commands: list[str] | None = None
    clear_verify_commands: bool = False
    setup_commands: list[str] | None = None
    clear_setup_commands: bool = False
    setup_network: bool | None = None
    # host:port pairs setup commands may reach (replacing .errands.toml's and the defaults).
    setup_hosts: list[str] | None = Field(default=None, max_length=100)
    clear_setup_hosts: bool = False
    sandbox_backend: Literal["auto", "bubblewrap", "none"] | None = None
    auto_execute: bool | None = None
    base_branch: str | None = None
    max_concurrent_jobs: int | None = Field(default=None, ge=1, le=1000)
    clear_max_concurrent_jobs: bool = False
    lean_after_hours: float | None = Field(default=None, gt=0, le=8_760)
    clear_lean_after_hours: bool = False
    # provider:name; "" goes back to the server's settings.
    research_model: str | None = Field(default=None, max_length=200)
    execute_model: str | None = Field(default=None, max_length=200)
    # An executor's name (native, claude-code, …); "" goes back to .errands.toml / settings.
    executor: str | None = Field(default=None, max_length=64)
    revise_executor: str | None = Field(default=None, max_length=64)
    required_approvals: int | None = Field(
        default=None, ge=1, le=20, description="Reviewers who must approve the same head."
    )
    stacked_pulls: bool | None = Field(
        default=None,
        description="GitHub projects: publish each task as stacked pull requests, one per "
        "subtask (tasks already with a pull request keep theirs).",
    )


class TaskCreate(BaseModel):
    project: Id | str
    title: str
    body: str = ""


class LocateRequest(BaseModel):
    text: LocateText
    limit: LocateLimit = 10


class LocatedSymbolPublic(BaseModel):
    name: str
    kind: str
    line: int
    end: int


class LocatedPublic(BaseModel):
    """A file ranked for the text, with why and the symbols in it the text pointed at."""

    path: str
    score: float
    reasons: list[str]
    symbols: list[LocatedSymbolPublic]


class AnswerCreate(BaseModel):
    question: Id
    option: Id | None = None
    text: str | None = None


class CommentCreate(BaseModel):
    path: str
    line: Id
    body: str
    kind: str = "blocking"
    side: str = "new"
    end_line: Id | None = None
    subtask: Id | None = None
    parent_id: Id | None = None


class ViewedMark(BaseModel):
    subtask: Id = Field(description="The subtask's position in the stack.")
    path: str = Field(min_length=1, max_length=4096)
    viewed: bool = True


class ViewedPublic(BaseModel):
    subtask: int
    viewed: list[str] = Field(description="Files marked viewed whose change is unchanged since.")


class ReviewerPublic(BaseModel):
    name: str
    you: bool
    verdict: Literal["approved", "changes_requested"] | None
    current: bool = Field(description="The verdict was given on the branch as it is now.")
    reviewed_head: str | None = Field(description="The branch tip this reviewer last reviewed.")


class ReviewersPublic(BaseModel):
    required_approvals: int
    approvals: int = Field(description="Reviewers who approved the branch as it is now.")
    reviewers: list[ReviewerPublic]


class CommentEdit(BaseModel):
    body: str = Field(min_length=1, max_length=65_536)


class CommentResolve(BaseModel):
    resolved: bool = True
