"""Per-reviewer review state, kept on the server so it follows a reviewer across devices:
files marked viewed (per subtask version, reset when the subtask's change to that file
changes), the tip each reviewer last reviewed ("changes since my last review"), and verdicts
that every reviewer sees (a project may require several approvals)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from errands.errors import Conflict, NotFound
from errands.git import Diff
from errands.git.rangediff import file_patch
from errands.settings import Settings
from errands.store import ReviewerState, ReviewMark, Subtask, Task
from errands.workflow import versions
from errands.workflow.mirrors import open_mirror

APPROVED = "approved"
CHANGES = "changes_requested"


@dataclass(frozen=True)
class Reviewer:
    key: str  # "user:<id>", "local" (single-user mode), "github:<login>"
    name: str  # what the other reviewers see


LOCAL = Reviewer("local", "you")


def _tip(session: Session, settings: Settings, task: Task, known: str | None = None) -> str:
    """The branch as the reviewer sees it: this machine's copy (which an applied suggestion
    moves), else the head the task last came back for review with — where the workers run
    on other machines, with data directories of their own, this machine's mirror may never
    have held the branch."""
    if known is not None:
        return known  # the caller resolved the branch in this mirror already
    mirror = open_mirror(settings, task.project_id, task.project.origin)
    tip = mirror.resolve(f"refs/heads/{task.branch}") if task.branch else None
    if tip is None and task.branch:
        heads = versions.review_heads(session, task.id)
        tip = heads[-1] if heads else None
    if tip is None:
        raise Conflict(f"Task {task.id} has no branch to review.")
    return tip


def state_of(session: Session, task: Task, reviewer: Reviewer) -> ReviewerState:
    found = session.scalars(
        select(ReviewerState).where(
            ReviewerState.task_id == task.id, ReviewerState.reviewer == reviewer.key
        )
    ).first()
    if found is None:
        found = ReviewerState(task_id=task.id, reviewer=reviewer.key, name=reviewer.name)
        session.add(found)
    found.name = reviewer.name
    return found


def reviewers(session: Session, task_id: int) -> list[ReviewerState]:
    return list(
        session.scalars(
            select(ReviewerState).where(ReviewerState.task_id == task_id).order_by(ReviewerState.id)
        )
    )


def _subtask(task: Task, position: int) -> Subtask:
    found = next((s for s in task.subtasks if s.position == position), None)
    if found is None or not found.versions:
        raise NotFound(f"Task {task.id} has no committed subtask {position}.")
    return found


def mark_viewed(
    session: Session,
    settings: Settings,
    task: Task,
    reviewer: Reviewer,
    position: int,
    path: str,
    viewed: bool,
) -> None:
    """Mark (or unmark) ``path`` viewed in subtask ``position`` at its newest version; the
    reviewer has reviewed the branch as it is now."""
    subtask = _subtask(task, position)
    mark = session.scalars(
        select(ReviewMark).where(
            ReviewMark.subtask_id == subtask.id,
            ReviewMark.reviewer == reviewer.key,
            ReviewMark.path == path,
        )
    ).first()
    if viewed:
        if mark is None:
            mark = ReviewMark(subtask_id=subtask.id, reviewer=reviewer.key, path=path, version=0)
            session.add(mark)
        mark.version = subtask.versions[-1].number
    elif mark is not None:
        session.delete(mark)
    state_of(session, task, reviewer).reviewed_head = _tip(session, settings, task)


def viewed_files(
    session: Session, settings: Settings, task: Task, reviewer: Reviewer, position: int
) -> set[str]:
    """The files of subtask ``position`` this reviewer has seen as they are now: marked at a
    version whose change to the file is still the newest version's."""
    subtask = _subtask(task, position)
    marks = session.scalars(
        select(ReviewMark).where(
            ReviewMark.subtask_id == subtask.id, ReviewMark.reviewer == reviewer.key
        )
    )
    repo = str(open_mirror(settings, task.project_id, task.project.origin).path)
    newest = subtask.versions[-1]
    seen = set()
    for mark in marks:
        if not 1 <= mark.version <= len(subtask.versions):
            continue
        then = subtask.versions[mark.version - 1].commit_sha
        if then == newest.commit_sha or _patch(repo, then, mark.path) == _patch(
            repo, newest.commit_sha, mark.path
        ):
            seen.add(mark.path)
    return seen


@lru_cache(maxsize=1024)
def _patch(repo: str, commit: str, path: str) -> str:
    # Keyed by a commit id, which names immutable history: safe to remember.
    return file_patch(Path(repo), commit, path)


def since_my_last_review(
    session: Session, settings: Settings, task: Task, reviewer: Reviewer
) -> tuple[Diff, str, str]:
    """The whole stack now against the tip this reviewer last reviewed (their base when they
    never did): (diff, old, new)."""
    state = state_of(session, task, reviewer)
    old = state.reviewed_head or task.base_commit
    if old is None:
        raise Conflict(f"Task {task.id} has no changes yet.")
    mirror = open_mirror(settings, task.project_id, task.project.origin)
    tip = _tip(session, settings, task)
    return mirror.diff(old, tip), old, tip


def record_verdict(
    session: Session, settings: Settings, task: Task, reviewer: Reviewer, verdict: str
) -> int:
    """This reviewer's verdict on the branch as it is now; returns how many reviewers have
    approved this same tip."""
    tip = _tip(session, settings, task)
    state = state_of(session, task, reviewer)
    state.verdict, state.verdict_head, state.reviewed_head = verdict, tip, tip
    session.flush()
    return sum(1 for s in reviewers(session, task.id) if approves(s, tip))


def approves(state: ReviewerState, tip: str) -> bool:
    """An approval counts for the tip it was given on (a new round needs new approvals)."""
    return state.verdict == APPROVED and state.verdict_head == tip


@dataclass(frozen=True)
class Standing:
    """One reviewer as the others see them."""

    state: ReviewerState
    you: bool
    current: bool  # their verdict is on the branch as it is now


def standings(
    session: Session,
    settings: Settings,
    task: Task,
    reviewer: Reviewer,
    *,
    tip: str | None = None,
) -> tuple[int, int, list[Standing]]:
    """(approvals needed, approvals of the tip, every reviewer); ``tip``: the branch as this
    machine's mirror has it, when the caller resolved it already."""
    tip = _tip(session, settings, task, tip) if task.branch else None
    found = [
        Standing(s, s.reviewer == reviewer.key, s.verdict_head == tip and tip is not None)
        for s in reviewers(session, task.id)
    ]
    approvals = sum(1 for f in found if tip is not None and approves(f.state, tip))
    return task.project.required_approvals, approvals, found
