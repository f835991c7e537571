"""A project's GitHub side by hand (the ``errands github`` commands and their HTTP twins):
what is linked, one issue imported as a task, a task's pull request synced again.

Network calls (GitHub) happen outside any transaction, as in the sync job.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from errands.domain import TaskState
from errands.errors import Conflict, InvalidInput, NotFound
from errands.github import issues as text
from errands.github import payloads
from errands.github.errors import GitHubError
from errands.github.forge import repo_access
from errands.github.intake import request_sync
from errands.github.markers import find_marker
from errands.github.rest import RepoAPI
from errands.settings import Settings
from errands.store import Database, Project, ReviewComment, ReviewerState, Task
from errands.store import events as event_log
from errands.workflow import actions


def writers_comments(api: RepoAPI, number: int) -> list[tuple[str, str]]:
    """The comments on issue ``number`` by people with write access, oldest first, ours
    left out (network: call outside any transaction)."""
    found = []
    for raw in api.issue_comments(number):
        comment = payloads.IssueComment.model_validate(raw, strict=False)
        if find_marker(comment.body) is None and api.can_write(comment.user.login):
            found.append((comment.user.login, comment.body))
    return found


def issue_task(
    session: Session, project: Project, issue: payloads.Issue, comments: list[tuple[str, str]]
) -> Task:
    """A new task (``created``) from an issue and its writers' comments."""
    task = Task(
        project_id=project.id,
        title=text.issue_title(issue),
        body=text.issue_body(issue, comments),
        state=TaskState.CREATED,
        base_branch=project.base_branch,
        github_issue=issue.number,
    )
    session.add(task)
    session.flush()
    return task


def _github_project(session: Session, ref: int | str) -> Project:
    project = actions.get_project(session, ref)
    if project.github_repo is None:
        raise Conflict(f"Project {project.name} is not on GitHub.")
    return project


def _task_for_issue(session: Session, project_id: int, number: int) -> Task | None:
    return session.scalars(
        select(Task).where(Task.project_id == project_id, Task.github_issue == number)
    ).first()


def linked(session: Session, ref: int | str) -> list[Task]:
    """The project's tasks that have an issue or a pull request on GitHub, oldest first."""
    project = _github_project(session, ref)
    return list(
        session.scalars(
            select(Task)
            .where(
                Task.project_id == project.id,
                (Task.github_issue.is_not(None)) | (Task.github_pr.is_not(None)),
            )
            .order_by(Task.id)
        )
    )


def import_issue(
    settings: Settings, db: Database, ref: int | str, number: int, *, start: bool = False
) -> tuple[int, bool]:
    """Issue ``number`` of the project's repository as a task (with its writers' comments,
    hidden text stripped), unless one exists; ``start`` starts its research. Returns (task
    id, whether it was created)."""
    if not 1 <= number <= 2**31 - 1:
        raise InvalidInput(f"{number} is not an issue number.")
    with db.session() as session:
        project = _github_project(session, ref)
        project_id, full_name = project.id, str(project.github_repo)
        installation = project.github_installation_id
        existing = _task_for_issue(session, project_id, number)
        if existing is not None:
            return existing.id, False
    with repo_access(settings, full_name, installation) as access:
        try:
            raw = access.api.issue(number)
        except GitHubError as exc:
            if exc.http_status in (404, 410):
                raise NotFound(f"{full_name} has no issue #{number}.") from exc
            raise
        try:
            issue = payloads.Issue.model_validate(raw, strict=False)
        except ValueError as exc:
            raise GitHubError(f"GitHub's issue #{number} does not read as an issue.") from exc
        if issue.pull_request is not None:
            raise InvalidInput(f"#{number} of {full_name} is a pull request, not an issue.")
        comments = writers_comments(access.api, number)
    with db.session() as session:
        project = session.get_one(Project, project_id)
        existing = _task_for_issue(session, project_id, number)  # imported meanwhile
        if existing is not None:
            return existing.id, False
        task = issue_task(session, project, issue, comments)
        event_log.record(
            session,
            "task.created",
            f"Task {task.id} imported from GitHub issue #{number}: {task.title}",
            task_id=task.id,
            project_id=project_id,
        )
        if start:
            actions.start_research(session, settings, task.id)
        return task.id, True


def resync(session: Session, settings: Settings, task_id: int) -> Task:
    """Have the project's github job bring the task's pull request and issue in line again:
    its progress note, every comment of Errands' on the pull request (text and thread
    resolution) and the verdicts given in Errands, each checked against GitHub and written
    only where it differs (nothing is posted twice: posts are found by their markers)."""
    task = actions.get_task(session, task_id)
    if task.project.github_repo is None:
        raise Conflict(f"Task {task_id}'s project is not on GitHub.")
    if task.github_pr is None and task.github_issue is None:
        raise Conflict(f"Task {task_id} has neither an issue nor a pull request on GitHub.")
    task.github_status_digest = None
    for comment in session.scalars(select(ReviewComment).where(ReviewComment.task_id == task.id)):
        if comment.github_id and comment.github_author is None:
            comment.github_edit_pending = True
        if comment.github_id and comment.parent_id is None:
            # Unknown: the job reads the thread's state and changes it only if it differs.
            comment.github_resolved = not comment.resolved
    for state in session.scalars(select(ReviewerState).where(ReviewerState.task_id == task.id)):
        state.github_posted = None
    event_log.record(
        session,
        "github.resync",
        f"Task {task_id} to be synced again with GitHub",
        task_id=task.id,
        project_id=task.project_id,
    )
    request_sync(session, settings, task.project_id)
    return task
