"""Subtask versions, like patch sets: every commit a subtask has had, the round it was made
for, and the review rounds themselves (the branch tip each time the task came to review)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from errands.domain import TaskState
from errands.store import Event, Subtask, SubtaskVersion


def review_heads(session: Session, task_id: int) -> list[str]:
    """The branch tip each time the task came back for review, oldest first: round N's
    head is ``review_heads(...)[N - 1]``."""
    events = session.scalars(
        select(Event).where(Event.task_id == task_id, Event.kind == "task.state").order_by(Event.id)
    )
    heads: list[str] = []
    for event in events:
        head = event.data.get("head")
        is_review = event.data.get("state") == TaskState.IN_REVIEW and isinstance(head, str)
        if is_review and (not heads or heads[-1] != head):
            heads.append(str(head))
    return heads


def current_round(session: Session, task_id: int) -> int:
    """The review round being prepared: 1 until the task first comes to review."""
    return len(review_heads(session, task_id)) + 1


def record_version(session: Session, subtask: Subtask, sha: str) -> SubtaskVersion:
    """``sha`` is the subtask's commit now: its newest version (the same commit again is no
    new version — a resumed job records what an earlier attempt did)."""
    if subtask.versions and subtask.versions[-1].commit_sha == sha:
        return subtask.versions[-1]
    version = SubtaskVersion(
        number=len(subtask.versions) + 1,
        commit_sha=sha,
        round=current_round(session, subtask.task_id),
    )
    subtask.versions.append(version)
    return version


def forget_version(subtask: Subtask, sha: str) -> None:
    """A commit that never reached the branch (its machine died first) is no version."""
    for version in list(subtask.versions):
        if version.commit_sha == sha:
            subtask.versions.remove(version)
