"""What a user can do to projects and tasks. The CLI and the HTTP API both call these.

Each action validates its input and the task's state, changes the store, records an event and
enqueues the job that does the work. None of them does slow work itself.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from errands.domain import (
    CommentKind,
    JobKind,
    Side,
    SubtaskState,
    TaskState,
    check_transition,
    state_words,
)
from errands.errors import ConfigError, Conflict, GitError, InvalidInput, NotFound, NothingToMerge
from errands.git import Detail, Diff, git, run_git
from errands.git.lock import repo_lock
from errands.git.lookup import peel, resolve
from errands.git.rangediff import RangeDiff, range_diff
from errands.git.runner import ERRANDS_IDENTITY
from errands.ids import MAX_INT, id_in
from errands.jobs import ledger
from errands.settings import Settings, check_model_spec
from errands.store import (
    Event,
    Job,
    Project,
    Question,
    ReviewComment,
    Subtask,
    SubtaskVersion,
    Task,
)
from errands.store import events as event_log
from errands.workflow import reviewers, versions
from errands.workflow.mirrors import mirror_path, open_mirror
from errands.workflow.origins import check_origin

SANDBOX_BACKENDS = ("auto", "bubblewrap", "none")
MAX_TITLE = 300
MAX_BODY = 200_000  # characters (~50k tokens): more would not fit a model's context anyway


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# -- lookups ------------------------------------------------------------------------------


def get_project(session: Session, ref: int | str) -> Project:
    """A project by id or by name."""
    number = id_in(ref) if isinstance(ref, str) else ref
    project = session.get(Project, number) if number is not None and number <= MAX_INT else None
    if project is None and isinstance(ref, str):
        project = session.scalars(select(Project).where(Project.name == ref)).first()
    if project is None:
        raise NotFound(f"Project {ref!r} does not exist.")
    return project


def get_task(session: Session, task_id: int) -> Task:
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"Task {task_id} does not exist.")
    return task


def task_with_jobs(session: Session, task_id: int) -> tuple[Task, list[Job]]:
    """A task and every job it ran, oldest first (for its public view and usage)."""
    task = get_task(session, task_id)
    jobs = list(session.scalars(select(Job).where(Job.task_id == task_id).order_by(Job.id)))
    return task, jobs


def list_tasks(
    session: Session, *, project: int | str | None = None, state: str | None = None
) -> list[Task]:
    query = select(Task).order_by(Task.id.desc())
    if project is not None:
        query = query.where(Task.project_id == get_project(session, project).id)
    if state is not None:
        if state not in TaskState.__members__.values():
            raise InvalidInput(f"Unknown state {state!r}; one of: {', '.join(TaskState)}.")
        query = query.where(Task.state == state)
    return list(session.scalars(query))


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))


def _set_state(session: Session, task: Task, target: TaskState, message: str) -> None:
    task.state = check_transition(TaskState(task.state), target)
    event_log.record(
        session,
        "task.state",
        message,
        task_id=task.id,
        project_id=task.project_id,
        data={"state": target},
    )


def _enqueue(session: Session, settings: Settings, kind: JobKind, task: Task) -> None:
    if ledger.active_job(session, task.id) is not None:
        raise Conflict(f"Task {task.id} already has a job queued or running.")
    job = ledger.enqueue(
        session,
        kind,
        project_id=task.project_id,
        task_id=task.id,
        max_attempts=settings.job_max_attempts,
    )
    event_log.record(
        session,
        "job.queued",
        f"{kind} job queued",
        task_id=task.id,
        project_id=task.project_id,
        job_id=job.id,
        data={"kind": kind},
    )


# -- projects -----------------------------------------------------------------------------


def add_project(
    session: Session,
    settings: Settings,
    origin: str,
    *,
    org_id: int | None = None,
    trusted: bool = True,
    name: str | None = None,
    base_branch: str | None = None,
    verify_commands: list[str] | None = None,
    auto_execute: bool = True,
) -> Project:
    """A project of organization ``org_id`` (None: the install's own) on ``origin``.
    ``trusted``: the caller is the machine's user (the CLI, or the server while no account
    exists), who may attach any repository on this disk (see :mod:`errands.workflow.origins`)."""
    checked = check_origin(session, settings, origin, org_id=org_id, trusted=trusted)
    name = check_project_name(session, name or checked.default_name, "pass another --name")
    project = Project(
        name=name,
        origin=checked.origin,
        base_branch=base_branch or checked.default_branch,
        verify_commands=verify_commands,
        auto_execute=auto_execute,
        org_id=org_id,
    )
    return store_project(session, settings, project, f"Project {name} added from {checked.origin}")


def check_project_name(session: Session, name: str, hint: str) -> str:
    """The name stripped, if a new project may take it (``hint``: how to pick another)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("A project name must be 1-200 characters.")
    # The API, the CLI and the MCP tools name a project by its id or its name, in URL paths:
    # a "/" splits the path, and digits alone read as an id.
    if "/" in name:
        raise InvalidInput(f"A project name cannot contain '/' ({name!r}); {hint}.")
    if name.isdigit():
        raise InvalidInput(f"A project name cannot be a number ({name!r}: ids are); {hint}.")
    if session.scalars(select(Project).where(Project.name == name)).first():
        raise Conflict(f"A project named {name!r} already exists; {hint}.")
    return name


def store_project(session: Session, settings: Settings, project: Project, message: str) -> Project:
    """Store a new project and queue its first index."""
    session.add(project)
    session.flush()
    job = ledger.enqueue(
        session, JobKind.INDEX, project_id=project.id, max_attempts=settings.job_max_attempts
    )
    event_log.record(session, "project.added", message, project_id=project.id, job_id=job.id)
    return project


def _commands(commands: list[str]) -> list[str]:
    return [c for c in (c.strip() for c in commands) if c]


MAX_APPROVALS = 20


def update_project(
    session: Session,
    ref: int | str,
    *,
    verify_commands: list[str] | None = None,
    clear_verify_commands: bool = False,
    setup_commands: list[str] | None = None,
    clear_setup_commands: bool = False,
    setup_network: bool | None = None,
    setup_hosts: list[str] | None = None,
    clear_setup_hosts: bool = False,
    sandbox_backend: str | None = None,
    auto_execute: bool | None = None,
    base_branch: str | None = None,
    max_concurrent_jobs: int | None = None,
    clear_max_concurrent_jobs: bool = False,
    lean_after_hours: float | None = None,
    clear_lean_after_hours: bool = False,
    research_model: str | None = None,
    execute_model: str | None = None,
    executor: str | None = None,
    revise_executor: str | None = None,
    required_approvals: int | None = None,
    stacked_pulls: bool | None = None,
) -> Project:
    """Overrides set here win over the repository's .errands.toml and over detection."""
    project = get_project(session, ref)
    if clear_verify_commands:
        project.verify_commands = None
    elif verify_commands is not None:
        project.verify_commands = _commands(verify_commands)
    if clear_setup_commands:
        project.setup_commands = None
    elif setup_commands is not None:
        project.setup_commands = _commands(setup_commands)
    if setup_network is not None:
        project.setup_network = setup_network
    if clear_setup_hosts:
        project.setup_hosts = None
    elif setup_hosts is not None:
        from errands.egress.hosts import parse_hosts  # the proxy (httpx): only when needed

        project.setup_hosts = [str(host) for host in parse_hosts(_commands(setup_hosts))]
    if sandbox_backend is not None:
        if sandbox_backend not in SANDBOX_BACKENDS:
            raise InvalidInput(f"sandbox must be one of: {', '.join(SANDBOX_BACKENDS)}.")
        project.sandbox_backend = sandbox_backend
    if auto_execute is not None:
        project.auto_execute = auto_execute
    if base_branch is not None:
        project.base_branch = base_branch
    if clear_lean_after_hours:
        project.lean_after_hours = None
    elif lean_after_hours is not None:
        if not 0 < lean_after_hours <= 8_760:
            raise InvalidInput("lean_after_hours must be more than 0 and at most 8,760 (a year).")
        project.lean_after_hours = lean_after_hours
    if clear_max_concurrent_jobs:
        project.max_concurrent_jobs = None
    elif max_concurrent_jobs is not None:
        if max_concurrent_jobs < 1:
            raise InvalidInput("max_concurrent_jobs must be at least 1.")
        project.max_concurrent_jobs = max_concurrent_jobs
    # "" clears a project's model: the server's settings apply again.
    if research_model is not None:
        project.research_model = _model_spec(research_model)
    if execute_model is not None:
        project.execute_model = _model_spec(execute_model)
    # "" clears a project's executor: .errands.toml, then the server's settings apply.
    if executor is not None:
        project.executor = _executor_name(executor)
    if revise_executor is not None:
        project.revise_executor = _executor_name(revise_executor)
    if required_approvals is not None:
        if not 1 <= required_approvals <= MAX_APPROVALS:
            raise InvalidInput(f"required_approvals must be from 1 to {MAX_APPROVALS}.")
        project.required_approvals = required_approvals
    if stacked_pulls is not None:
        project.stacked_pulls = stacked_pulls
    event_log.record(session, "project.updated", "Project settings changed", project_id=project.id)
    return project


def _choice(value: str, check: Callable[[str], str]) -> str | None:
    """A project's own choice (a model, an executor) checked, or None for "" (none: the
    repository's file or the server's settings apply)."""
    value = value.strip()
    if not value:
        return None
    try:
        return check(value)
    except ConfigError as exc:
        raise InvalidInput(exc.message) from exc


def _model_spec(spec: str) -> str | None:
    return _choice(spec, check_model_spec)


def _executor_name(name: str) -> str | None:
    # The executors (pydantic-ai, the agents' drivers) load only when one is chosen: every
    # CLI command imports this module.
    from errands.executors import check_executor_name

    return _choice(name, check_executor_name)


def reindex_project(session: Session, settings: Settings, ref: int | str) -> Project:
    project = get_project(session, ref)
    ledger.enqueue(
        session, JobKind.INDEX, project_id=project.id, max_attempts=settings.job_max_attempts
    )
    return project


# -- tasks --------------------------------------------------------------------------------


def create_task(
    session: Session, settings: Settings, project_ref: int | str, title: str, body: str
) -> Task:
    settings.require_llm()
    project = get_project(session, project_ref)
    title, body = title.strip(), body.strip()
    if not title:
        raise InvalidInput("A task needs a title.")
    if len(title) > MAX_TITLE:
        raise InvalidInput(f"The title is {len(title)} characters; the limit is {MAX_TITLE}.")
    if len(body) > MAX_BODY:
        raise InvalidInput(
            f"The task body is {len(body):,} characters; the limit is {MAX_BODY:,}. "
            "Link to large material instead of pasting it."
        )
    if "\x00" in title or "\x00" in body:
        raise InvalidInput("The task text contains NUL characters.")
    task = Task(
        project_id=project.id,
        title=title,
        body=body,
        state=TaskState.CREATED,
        base_branch=project.base_branch,
    )
    session.add(task)
    session.flush()
    event_log.record(
        session,
        "task.created",
        f"Task {task.id} created: {title}",
        task_id=task.id,
        project_id=project.id,
    )
    _set_state(session, task, TaskState.RESEARCHING, "Research queued")
    _enqueue(session, settings, JobKind.RESEARCH, task)
    return task


def start_research(session: Session, settings: Settings, task_id: int) -> Task:
    """Start research on a task created without it (one imported from a GitHub issue)."""
    settings.require_llm()
    task = get_task(session, task_id)
    _set_state(session, task, TaskState.RESEARCHING, "Research queued")
    _enqueue(session, settings, JobKind.RESEARCH, task)
    return task


def answer(
    session: Session,
    settings: Settings,
    task_id: int,
    question: int,
    *,
    option: int | None = None,
    text: str | None = None,
) -> Task:
    task = get_task(session, task_id)
    if task.state != TaskState.AWAITING_ANSWERS:
        raise Conflict(
            f"Task {task_id} is {state_words(task.state)}; answers are taken while it awaits them."
        )
    found = next((q for q in task.questions if q.position == question), None)
    if found is None:
        raise NotFound(f"Task {task_id} has no question {question} (it has {len(task.questions)}).")
    text = (text or "").strip() or None
    if option is None and text is None:
        raise InvalidInput("Give an option number or a written answer.")
    if option is not None and not 1 <= option <= len(found.options):
        raise InvalidInput(f"Question {question} has options 1-{len(found.options)}.")
    found.answer_option, found.answer_text, found.answered_at = option, text, _now()
    event_log.record(
        session,
        "question.answered",
        f"Q{question} answered: {_answer_text(found)}",
        task_id=task.id,
        project_id=task.project_id,
        data={"question": question, "option": option, "text": text},
    )
    if all(q.answered for q in task.questions):
        all_answered(session, settings, task)
    return task


def all_answered(session: Session, settings: Settings, task: Task) -> None:
    """Every question of the task has its answer: they become requirements and the task
    goes on with the stage that asked."""
    # Each answer becomes a requirement once (a later round adds only its own).
    answers = [_answer_text(q) for q in task.questions]
    task.requirements = [
        *task.requirements,
        *(a for a in dict.fromkeys(answers) if a not in task.requirements),
    ]
    asked_by = task.questions[-1].phase  # the newest question is the round just answered
    if asked_by == "revise":
        _set_state(session, task, TaskState.REVISING, "All questions answered; revising on")
        # A rebase onto a moved base asks as a revise round does; with no review comments
        # open, it is the rebase that goes on.
        rebasing = task.base_moved_to and not _open_comment_count(task)
        _enqueue(session, settings, JobKind.REBASE if rebasing else JobKind.REVISE, task)
    elif asked_by == "execute":
        # The work was under way: it goes on whatever auto_execute says.
        _set_state(session, task, TaskState.READY, "All questions answered")
        execute(session, settings, task.id)
    else:
        _set_state(session, task, TaskState.READY, "All questions answered")
        start_execution_if_auto(session, settings, task)


def _answer_text(q: Question) -> str:
    parts = []
    if q.answer_option is not None:
        parts.append(str(q.options[q.answer_option - 1]["requirement"]))
    if q.answer_text:
        parts.append(q.answer_text)
    return " ".join(parts)


def start_execution_if_auto(session: Session, settings: Settings, task: Task) -> None:
    if not task.project.auto_execute:
        return
    from errands.accounts import budget  # imported here: the CLI's start-up stays quick

    over = budget.project_over_budget(session, task.project)
    if over is not None:
        # Spending nothing unasked: the task waits, ready, for someone to execute it.
        event_log.record(
            session,
            "task.auto_execute_skipped",
            f"Not executing automatically. {over}",
            task_id=task.id,
            project_id=task.project_id,
        )
        return
    execute(session, settings, task.id)


def execute(session: Session, settings: Settings, task_id: int) -> Task:
    task = get_task(session, task_id)
    _set_state(session, task, TaskState.EXECUTING, "Execution queued")
    _enqueue(session, settings, JobKind.EXECUTE, task)
    return task


def cancel(session: Session, task_id: int) -> Task:
    task = get_task(session, task_id)
    job = ledger.active_job(session, task.id)
    if job is not None and job.kind == JobKind.MERGE:
        # Half a cancellation is worse than none: the merge may already have landed.
        raise Conflict(f"Task {task_id} is being merged; it can no longer be cancelled.")
    _set_state(session, task, TaskState.CANCELLED, "Task cancelled")
    ledger.request_cancel(session, task.id)
    return task


def retry(session: Session, settings: Settings, task_id: int) -> Task:
    task = get_task(session, task_id)
    if task.state != TaskState.FAILED:
        raise Conflict(
            f"Task {task_id} is {state_words(task.state)}; only a failed task can be retried."
        )
    stage = {
        TaskState.CREATED: (TaskState.RESEARCHING, JobKind.RESEARCH),
        TaskState.RESEARCHING: (TaskState.RESEARCHING, JobKind.RESEARCH),
        TaskState.READY: (TaskState.EXECUTING, JobKind.EXECUTE),
        TaskState.EXECUTING: (TaskState.EXECUTING, JobKind.EXECUTE),
        TaskState.REVISING: (TaskState.REVISING, JobKind.REVISE),
    }.get(TaskState(task.failed_in or TaskState.RESEARCHING))
    if stage is None:
        raise Conflict(f"Task {task_id} failed while {task.failed_in}; there is nothing to retry.")
    target, kind = stage
    if kind is JobKind.REVISE and task.base_moved_to and not _open_comment_count(task):
        kind = JobKind.REBASE  # what failed was the rebase onto a moved base
    if kind is JobKind.EXECUTE:
        settings.require_llm()
    task.failure_reason = None
    _set_state(session, task, target, f"Retrying {kind}")
    _enqueue(session, settings, kind, task)
    return task


# -- review -------------------------------------------------------------------------------


def _require_review(task: Task) -> None:
    if task.state != TaskState.IN_REVIEW:
        raise Conflict(f"Task {task.id} is {state_words(task.state)}; this needs it in review.")


def diff(
    session: Session,
    settings: Settings,
    task_id: int,
    subtask: int | None = None,
    *,
    detail: Detail | None = None,
    tip: str | None = None,
) -> tuple[Task, Diff]:
    """The whole branch against its base, or one subtask's commit against its parent
    (``detail``: only some files' hunks parsed, see ``Detail``; ``tip``: the branch as the
    mirror has it, when the caller resolved it already)."""
    task = get_task(session, task_id)
    if task.branch is None or task.base_commit is None:
        raise Conflict(f"Task {task_id} has no changes yet (it is {state_words(task.state)}).")
    mirror = open_mirror(settings, task.project_id, task.project.origin)
    if subtask is None:
        tip = tip or mirror.resolve(f"refs/heads/{task.branch}") or task.base_commit
        return task, mirror.diff(task.base_commit, tip, detail=detail)
    found = _subtask(task, subtask)
    if found.commit_sha is None:
        raise Conflict(f"Subtask {subtask} of task {task_id} has no commit ({found.state}).")
    return task, mirror.diff(f"{found.commit_sha}^", found.commit_sha, detail=detail)


def add_comment(
    session: Session,
    settings: Settings,
    task_id: int,
    *,
    path: str,
    line: int,
    body: str,
    kind: str = CommentKind.BLOCKING,
    side: str = Side.NEW,
    end_line: int | None = None,
    subtask: int | None = None,
    parent_id: int | None = None,
    author_id: int | None = None,
) -> ReviewComment:
    task = get_task(session, task_id)
    _require_review(task)
    body = body.strip()
    if not body:
        raise InvalidInput("A comment needs a body.")
    if kind not in CommentKind.__members__.values():
        raise InvalidInput(f"kind must be one of: {', '.join(CommentKind)}.")
    if side not in Side.__members__.values():
        raise InvalidInput(f"side must be one of: {', '.join(Side)}.")
    if line < 1 or (end_line is not None and end_line < line):
        raise InvalidInput("line must be ≥ 1 and end_line ≥ line.")
    parent = None
    if parent_id is not None:
        parent = session.get(ReviewComment, parent_id)
        if parent is None or parent.task_id != task.id:
            raise NotFound(f"Comment {parent_id} does not exist on task {task_id}.")
        path, line, side = parent.path, parent.line, parent.side
    subtask_row: Subtask | None = None
    if subtask is not None:
        subtask_row = next((s for s in task.subtasks if s.position == subtask), None)
        if subtask_row is None:
            raise NotFound(f"Task {task_id} has no subtask {subtask}.")
    _, changes = diff(session, settings, task_id, subtask)
    if parent is None and path not in {f.path for f in changes.files} | {
        f.old_path for f in changes.files if f.old_path
    }:
        raise InvalidInput(f"{path} is not among the files this task changed.")
    comment = ReviewComment(
        task_id=task.id,
        subtask_id=subtask_row.id if subtask_row else None,
        parent_id=parent.id if parent else None,
        path=path,
        line=line,
        end_line=end_line,
        side=side,
        body=body,
        kind=kind,
        commit_sha=subtask_row.commit_sha if subtask_row else None,
        author_id=author_id,
    )
    session.add(comment)
    session.flush()
    event_log.record(
        session,
        "review.comment",
        f"{kind} comment on {path}:{line}: {body[:120]}",
        task_id=task.id,
        project_id=task.project_id,
        data={
            "comment_id": comment.id,
            "path": path,
            "line": line,
            "kind": kind,
            "parent_id": comment.parent_id,
            "author_id": author_id,
        },
    )
    from errands.forges.registry import forge_for

    forge_for(settings, task.project).nudge(session, task.project)  # onto its pull request
    return comment


def _comment(session: Session, task: Task, comment_id: int) -> ReviewComment:
    comment = session.get(ReviewComment, comment_id)
    if comment is None or comment.task_id != task.id:
        raise NotFound(f"Comment {comment_id} does not exist on task {task.id}.")
    return comment


def _nudge_forge(session: Session, settings: Settings | None, project: Project) -> None:
    if settings is not None:
        from errands.forges.registry import forge_for

        forge_for(settings, project).nudge(session, project)


def resolve_comment(
    session: Session,
    task_id: int,
    comment_id: int,
    resolved: bool = True,
    *,
    settings: Settings | None = None,
) -> ReviewComment:
    """Resolve (or reopen) a comment's thread; with ``settings``, its forge hears of it (the
    thread on the pull request is resolved too)."""
    task = get_task(session, task_id)
    comment = _comment(session, task, comment_id)
    comment.resolved = resolved
    event_log.record(
        session,
        "review.resolved" if resolved else "review.reopened",
        f"Comment {comment_id} {'resolved' if resolved else 'reopened'}",
        task_id=task.id,
        project_id=task.project_id,
        data={"comment_id": comment_id},
    )
    _nudge_forge(session, settings, task.project)
    return comment


def _may_change(comment: ReviewComment, author_id: int | None) -> None:
    """A comment is changed by whoever wrote it, where they wrote it."""
    if comment.github_author is not None:
        raise Conflict(
            f"Comment {comment.id} was written on GitHub by @{comment.github_author}; "
            "it is edited or deleted there."
        )
    if comment.author_id is not None and author_id != comment.author_id:
        from errands.accounts.errors import Forbidden

        raise Forbidden(f"Comment {comment.id} is someone else's; only its author changes it.")


def edit_comment(
    session: Session,
    settings: Settings,
    task_id: int,
    comment_id: int,
    body: str,
    *,
    author_id: int | None = None,
) -> ReviewComment:
    """Change a comment's text; one already on the pull request is edited there too."""
    task = get_task(session, task_id)
    _require_review(task)
    comment = _comment(session, task, comment_id)
    _may_change(comment, author_id)
    body = body.strip()
    if not body:
        raise InvalidInput("A comment needs a body.")
    if body == comment.body:
        return comment
    comment.body, comment.edited_at = body, _now()
    if comment.github_id:  # mirrored: the github job writes the edit there
        comment.github_edit_pending = True
    event_log.record(
        session,
        "review.comment_edited",
        f"Comment {comment_id} edited: {body[:120]}",
        task_id=task.id,
        project_id=task.project_id,
        data={"comment_id": comment_id, "author_id": author_id},
    )
    _nudge_forge(session, settings, task.project)
    return comment


def delete_comment(
    session: Session,
    settings: Settings,
    task_id: int,
    comment_id: int,
    *,
    author_id: int | None = None,
) -> None:
    """Delete a comment and its replies; those on the pull request are deleted there too."""
    from errands.store import GitHubOutbox

    task = get_task(session, task_id)
    _require_review(task)
    comment = _comment(session, task, comment_id)
    _may_change(comment, author_id)
    thread = [comment]
    for reply in thread:  # grows as it goes: replies of replies
        thread.extend(c for c in task.comments if c.parent_id == reply.id)
    for gone in thread:
        if gone.github_id:
            session.add(
                GitHubOutbox(
                    project_id=task.project_id,
                    task_id=task.id,
                    kind="delete_review_comment",
                    github_id=gone.github_id,
                )
            )
    for gone in reversed(thread):
        task.comments.remove(gone)  # delete-orphan: the row goes
    session.flush()
    event_log.record(
        session,
        "review.comment_deleted",
        f"Comment {comment_id} deleted"
        + (f" with {len(thread) - 1} repl(ies)" if len(thread) > 1 else ""),
        task_id=task.id,
        project_id=task.project_id,
        data={"comment_id": comment_id, "author_id": author_id},
    )
    _nudge_forge(session, settings, task.project)


def request_changes(
    session: Session,
    settings: Settings,
    task_id: int,
    reviewer: reviewers.Reviewer = reviewers.LOCAL,
) -> Task:
    task = get_task(session, task_id)
    _require_review(task)
    settings.require_llm()
    open_count = sum(1 for c in task.comments if c.parent_id is None and not c.resolved)
    if open_count == 0:
        raise Conflict(f"Task {task_id} has no open review comments; add one first.")
    reviewers.record_verdict(session, settings, task, reviewer, reviewers.CHANGES)
    _set_state(session, task, TaskState.REVISING, f"Changes requested ({open_count} comment(s))")
    _enqueue(session, settings, JobKind.REVISE, task)
    return task


def _open_comment_count(task: Task) -> int:
    return sum(1 for c in task.comments if c.parent_id is None and not c.resolved)


def base_moved(session: Session, settings: Settings, task: Task, tip: str) -> bool:
    """The task's base branch moved to ``tip`` (a push its forge told of): flag it, and
    when the task is in review with no job, queue the rebase at once. A task with a job
    running is rebased when that job brings it back to review (see rebase_if_moved).
    Returns whether a rebase was queued."""
    task.base_moved_to = tip
    return rebase_if_moved(session, settings, task)


def rebase_if_moved(session: Session, settings: Settings, task: Task) -> bool:
    """Queue the rebase of a task in review whose base moved, unless a job of it runs."""
    if (
        task.base_moved_to is None
        or task.base_moved_to == task.base_commit
        or task.state != TaskState.IN_REVIEW
        or ledger.active_job(session, task.id) is not None
    ):
        return False
    _set_state(
        session,
        task,
        TaskState.REVISING,
        f"{task.base_branch} moved to {task.base_moved_to[:10]}: rebasing the stack onto it",
    )
    _enqueue(session, settings, JobKind.REBASE, task)
    return True


def rebase(session: Session, settings: Settings, task_id: int) -> Task:
    """Rebase a task in review onto its base branch's tip now (for a forge that sends no
    push notifications, or to try a failed rebase again)."""
    task = get_task(session, task_id)
    _require_review(task)
    _set_state(session, task, TaskState.REVISING, f"Rebasing onto {task.base_branch}'s tip")
    _enqueue(session, settings, JobKind.REBASE, task)
    return task


def approve(
    session: Session,
    settings: Settings,
    task_id: int,
    reviewer: reviewers.Reviewer = reviewers.LOCAL,
) -> Task:
    """This reviewer approves the branch as it is; the merge is queued once the project's
    required number of reviewers approved this same tip."""
    task = get_task(session, task_id)
    _require_review(task)
    blocking = [
        c
        for c in task.comments
        if c.parent_id is None and not c.resolved and c.kind == CommentKind.BLOCKING
    ]
    if blocking:
        raise Conflict(
            f"Task {task_id} has {len(blocking)} unresolved blocking comment(s); resolve them or "
            "request changes first."
        )
    if not _branch_changes_something(settings, task):
        # Approving would land an empty commit and mark the task merged: done, though
        # nothing was done. The task stays in review with its reasons; cancel closes it.
        raise NothingToMerge(
            f"Task {task_id} changed nothing: its branch is the same as its base "
            f"({str(task.base_commit)[:10]}), so there is nothing to merge. If nothing needs "
            "to change (the subtasks say why), cancel the task; otherwise hand off a new task "
            "that says what must change."
        )
    approvals = reviewers.record_verdict(session, settings, task, reviewer, reviewers.APPROVED)
    needed = task.project.required_approvals
    event_log.record(
        session,
        "review.approved",
        f"Approved by {reviewer.name}; merge queued"
        if approvals >= needed
        else f"Approved by {reviewer.name} ({approvals} of {needed} approvals)",
        task_id=task.id,
        project_id=task.project_id,
        data={"reviewer": reviewer.name, "approvals": approvals, "needed": needed},
    )
    if approvals < needed:
        return task
    task.merge_error = None
    _enqueue(session, settings, JobKind.MERGE, task)
    return task


def _branch_changes_something(settings: Settings, task: Task) -> bool:
    """Whether the reviewed branch differs from its base: no subtask committed anything,
    or the commits undo each other, both mean no."""
    if not any(s.commit_sha for s in task.subtasks):
        return False
    path = mirror_path(settings, task.project_id)
    if task.branch is None or task.base_commit is None or not path.is_dir():
        return True  # nothing to compare with here; the merge job checks again
    tip = resolve(path, f"refs/heads/{task.branch}")
    if tip is None:
        return True
    return peel(path, tip, "tree") != peel(path, task.base_commit, "tree")


# -- views for the web app ----------------------------------------------------------------


def tokens_by_task(session: Session, task_ids: list[int]) -> dict[int, int]:
    """Input plus output tokens every job of each task used (the board's "cost so far")."""
    if not task_ids:
        return {}
    rows = session.execute(
        select(Job.task_id, func.sum(Job.input_tokens + Job.output_tokens))
        .where(Job.task_id.in_(task_ids))
        .group_by(Job.task_id)
    )
    return {task_id: int(total or 0) for task_id, total in rows if task_id is not None}


def recent_events(session: Session, task_id: int, limit: int = 500) -> list[Event]:
    """The newest ``limit`` events of a task, oldest first (a page shows the tail of a log)."""
    get_task(session, task_id)
    newest = session.scalars(
        select(Event).where(Event.task_id == task_id).order_by(Event.id.desc()).limit(limit)
    )
    return list(reversed(list(newest)))


def review_heads(session: Session, task_id: int) -> list[str]:
    """The branch tip each time the task came back for review (round 1 first)."""
    get_task(session, task_id)
    return versions.review_heads(session, task_id)


def interdiff(
    session: Session, settings: Settings, task_id: int, since_round: int | None = None
) -> tuple[Task, Diff, str, str]:
    """What changed on the whole stack since review round ``since_round`` (the one before
    the last by default): (task, diff, old, new). The new side is the branch tip, not the
    last round's head: an applied suggestion moves it too."""
    task = get_task(session, task_id)
    heads = versions.review_heads(session, task_id)
    if len(heads) < 2:
        raise Conflict(f"Task {task_id} has not been revised since its first review.")
    since = len(heads) - 1 if since_round is None else since_round
    if not 1 <= since <= len(heads):
        raise NotFound(f"Task {task_id} has review rounds 1 to {len(heads)}, not {since}.")
    mirror = open_mirror(settings, task.project_id, task.project.origin)
    tip = (mirror.resolve(f"refs/heads/{task.branch}") if task.branch else None) or heads[-1]
    return task, mirror.diff(heads[since - 1], tip), heads[since - 1], tip


def _subtask(task: Task, position: int) -> Subtask:
    found = next((s for s in task.subtasks if s.position == position), None)
    if found is None:
        raise NotFound(f"Task {task.id} has no subtask {position} (it has {len(task.subtasks)}).")
    return found


def subtask_version(task: Task, position: int, number: int) -> SubtaskVersion:
    subtask = _subtask(task, position)
    if not 1 <= number <= len(subtask.versions):
        raise NotFound(
            f"Subtask {position} of task {task.id} has versions 1 to {len(subtask.versions)}, "
            f"not {number}."
        )
    return subtask.versions[number - 1]


def version_diff(
    session: Session, settings: Settings, task_id: int, position: int, number: int
) -> tuple[Task, Diff]:
    """Subtask ``position``'s diff as version ``number`` made it (against its parent then)."""
    task = get_task(session, task_id)
    sha = subtask_version(task, position, number).commit_sha
    mirror = open_mirror(settings, task.project_id, task.project.origin)
    return task, mirror.diff(f"{sha}^", sha)


def version_interdiff(
    session: Session, settings: Settings, task_id: int, position: int, old: int, new: int
) -> RangeDiff:
    """What subtask ``position`` does differently in version ``new`` than in ``old``,
    computed as ``git range-diff`` does (the rest of the stack underneath left out)."""
    task = get_task(session, task_id)
    before = subtask_version(task, position, old).commit_sha
    after = subtask_version(task, position, new).commit_sha
    return range_diff(
        open_mirror(settings, task.project_id, task.project.origin).path, before, after
    )


def branch_tip(settings: Settings, task: Task) -> str | None:
    """The task branch's commit in this machine's mirror (None: not there), resolved once for
    a page that needs it several times."""
    if task.branch is None or not mirror_path(settings, task.project_id).is_dir():
        return None
    return resolve(mirror_path(settings, task.project_id), f"refs/heads/{task.branch}")


def commit_sizes(
    session: Session, settings: Settings, task_id: int, *, tip: str | None = None
) -> dict[str, tuple[int, int]]:
    """Lines added and removed by each commit of the task's branch, by commit id (one
    ``git log --numstat`` for the whole stack; binary files count as no lines). ``tip``: the
    branch as the mirror has it, when the caller resolved it already."""
    task = get_task(session, task_id)
    path = mirror_path(settings, task.project_id)
    if task.branch is None or task.base_commit is None or not path.is_dir():
        return {}
    # Read straight from the mirror the diff was just made from: opening it again through
    # open_mirror re-checks its configuration, which costs more than this whole query.
    tip = tip or resolve(path, f"refs/heads/{task.branch}")
    return {} if tip is None else dict(_numstat(str(path), task.base_commit, tip))


@lru_cache(maxsize=256)
def _numstat(repo: str, base: str, tip: str) -> tuple[tuple[str, tuple[int, int]], ...]:
    # Keyed by commit ids, which name immutable history: safe to remember.
    out = git("log", "--numstat", "--format=%x00%H", f"{base}..{tip}", cwd=Path(repo))
    sizes: list[tuple[str, tuple[int, int]]] = []
    for record in out.split("\0"):
        lines = record.strip().splitlines()
        if not lines:
            continue
        added = removed = 0
        for stat in lines[1:]:
            fields = stat.split("\t")
            if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
                added, removed = added + int(fields[0]), removed + int(fields[1])
        sizes.append((lines[0], (added, removed)))
    return tuple(sizes)


def file_at(session: Session, settings: Settings, task_id: int, path: str, rev: str) -> str:
    """A file's text at a commit of the task's history (its base, a subtask, the tip)."""
    task = get_task(session, task_id)
    mirror = open_mirror(settings, task.project_id, task.project.origin)
    if not re.fullmatch(r"[0-9a-f]{7,64}", rev) and rev not in ("base", "tip"):
        raise InvalidInput(f"{rev!r} is not a commit of this task.")
    if rev == "base":
        rev = task.base_commit or mirror.resolve(mirror.base_ref(task.base_branch)) or ""
    elif rev == "tip":
        rev = (mirror.resolve(f"refs/heads/{task.branch}") if task.branch else None) or ""
        rev = rev or task.base_commit or ""
    # A path is named from the top of the tree, one plain name per part: no "..", no
    # absolute path, nothing git would read as something other than a file of the commit.
    parts = path.split("/")
    if not rev or "\0" in path or any(part in ("", ".", "..") for part in parts):
        raise NotFound(f"{path!r} is not a file of task {task_id}.")
    result = run_git("cat-file", "blob", f"{rev}:{path}", cwd=mirror.path)
    if not result.ok:
        raise NotFound(f"{path} does not exist at {rev[:10]}.")
    return result.stdout


# -- suggestions ---------------------------------------------------------------------------

SUGGESTION_BLOCK = re.compile(r"```suggestion[^\n]*\n(.*?)```", re.DOTALL)


def suggestion_of(body: str) -> str | None:
    """The replacement code a suggestion carries (GitHub's ```suggestion fence), if any."""
    found = SUGGESTION_BLOCK.search(body)
    return found.group(1) if found else None


def apply_suggestion(
    session: Session, settings: Settings, task_id: int, comment_id: int
) -> Subtask:
    """Commit a suggestion's replacement code on top of the task branch, as one more
    subtask of the stack, and resolve its thread.

    The commit is made in the mirror's object database (no work tree), and the branch ref
    moves by compare-and-swap: a job that moved it meanwhile makes this fail, not vanish.
    """
    task = get_task(session, task_id)
    _require_review(task)
    comment = session.get(ReviewComment, comment_id)
    if comment is None or comment.task_id != task.id or comment.parent_id is not None:
        raise NotFound(f"Comment {comment_id} is not a thread of task {task_id}.")
    code = suggestion_of(comment.body)
    if comment.kind != CommentKind.SUGGESTION or code is None:
        raise InvalidInput(f"Comment {comment_id} carries no suggested code to apply.")
    if comment.side != Side.NEW:
        raise InvalidInput("Only lines of the new version can be replaced.")
    if ledger.active_job(session, task.id) is not None:
        raise Conflict(f"Task {task_id} has a job running; apply the suggestion after it.")
    assert task.branch is not None and task.base_commit is not None  # in review
    mirror = open_mirror(settings, task.project_id, task.project.origin)
    tip = mirror.resolve(f"refs/heads/{task.branch}")
    if tip is None:
        raise Conflict(f"The branch {task.branch} is missing from the mirror.")
    path, start = comment.path, comment.line
    end = comment.end_line or start
    commented = file_at(session, settings, task_id, path, comment.commit_sha or tip)
    current = file_at(session, settings, task_id, path, tip)
    before, now = commented.splitlines(keepends=True), current.splitlines(keepends=True)
    if end > len(now) or before[start - 1 : end] != now[start - 1 : end]:
        raise Conflict(
            f"{path}:{start}-{end} changed since the suggestion was made; "
            "request changes instead, or suggest again on the current code."
        )
    replacement = code.splitlines(keepends=True)
    if replacement and not replacement[-1].endswith("\n") and now[end - 1].endswith("\n"):
        replacement[-1] += "\n"
    content = "".join([*now[: start - 1], *replacement, *now[end:]])
    message = f"Apply review suggestion on {path}:{start}\n\n{comment.body}\n"
    sha = _commit_file(mirror.path, tip, path, content, message)
    with repo_lock(mirror.path):
        git("update-ref", f"refs/heads/{task.branch}", sha, tip, cwd=mirror.path)
    subtask = Subtask(
        position=len(task.subtasks) + 1,
        title=f"Apply suggestion on {path}:{start}",
        steps=[comment.body],
        origin="suggestion",
        state=SubtaskState.COMMITTED,
        commit_sha=sha,
        summary="Applied the reviewer's suggested code as written.",
    )
    task.subtasks.append(subtask)
    session.flush()
    versions.record_version(session, subtask, sha)
    comment.resolved = True
    comment.addressed_by_subtask_id = subtask.id
    event_log.record(
        session,
        "review.suggestion_applied",
        f"Suggestion {comment_id} applied as {sha[:10]}",
        task_id=task.id,
        project_id=task.project_id,
        data={"comment_id": comment_id, "sha": sha, "path": path},
    )
    try:
        mirror.publish(task.branch)
    except GitError as exc:
        event_log.record(
            session,
            "branch.publish_failed",
            f"Could not push {task.branch} to the project: {exc}",
            task_id=task.id,
            project_id=task.project_id,
        )
    return subtask


def _commit_file(repo: Path, parent: str, path: str, content: str, message: str) -> str:
    """A commit: ``parent`` with ``path`` replaced by ``content``, through a private index."""
    mode = git("ls-tree", parent, "--", path, cwd=repo).split(" ", 1)[0] or "100644"
    blob = git("hash-object", "-w", "--stdin", cwd=repo, input=content).strip()
    with tempfile.TemporaryDirectory() as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index"), **ERRANDS_IDENTITY}
        git("read-tree", parent, cwd=repo, env=env)
        git("update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", cwd=repo, env=env)
        tree = git("write-tree", cwd=repo, env=env).strip()
        return git(
            "commit-tree",
            "--no-gpg-sign",
            "-p",
            parent,
            "-F",
            "-",
            tree,
            cwd=repo,
            input=message,
            env=env,
        ).strip()


# -- chat ----------------------------------------------------------------------------------

CHAT_KINDS = ("chat.user", "chat.agent")
MAX_CHAT_MESSAGE = 20_000


def chat_history(session: Session, task_id: int) -> list[Event]:
    get_task(session, task_id)
    return list(
        session.scalars(
            select(Event)
            .where(Event.task_id == task_id, Event.kind.in_(CHAT_KINDS))
            .order_by(Event.id)
        )
    )


def record_chat(session: Session, task_id: int, kind: str, text: str, **data: object) -> Event:
    """A chat turn is an event of the task: the conversation is part of its record."""
    task = get_task(session, task_id)
    if kind not in CHAT_KINDS:
        raise InvalidInput(f"kind must be one of: {', '.join(CHAT_KINDS)}.")
    text = text.strip()
    if not text:
        raise InvalidInput("An empty message says nothing.")
    if len(text) > MAX_CHAT_MESSAGE:
        raise InvalidInput(f"Messages are limited to {MAX_CHAT_MESSAGE:,} characters.")
    who = "You" if kind == "chat.user" else "Agent"
    return event_log.record(
        session,
        kind,
        f"{who}: {text[:300]}",
        task_id=task.id,
        project_id=task.project_id,
        data={"text": text, **data},
    )


def add_requirement(session: Session, task_id: int, text: str) -> Task:
    """A requirement agreed in chat joins the task's before it executes."""
    task = get_task(session, task_id)
    if task.state not in (
        TaskState.CREATED,
        TaskState.RESEARCHING,
        TaskState.AWAITING_ANSWERS,
        TaskState.READY,
    ):
        raise Conflict(
            f"Task {task_id} is {state_words(task.state)}; requirements are fixed once it executes."
        )
    text = text.strip()
    if not text or len(text) > 2_000:
        raise InvalidInput("A requirement is 1-2,000 characters.")
    if text not in task.requirements:
        task.requirements = [*task.requirements, text]
        event_log.record(
            session,
            "task.requirement_added",
            f"Requirement added: {text[:200]}",
            task_id=task.id,
            project_id=task.project_id,
            data={"text": text},
        )
    return task
