"""Review traffic between a task and its pull request, past the first post: edits, deletions,
thread resolutions and verdicts, both ways.

The rule for a comment edited on both sides: **the newer edit wins**, by its time. An edit on
GitHub carries GitHub's ``updated_at``; an edit made here carries our clock until the github
job has written it to GitHub, and GitHub's time of that write after. So an edit made on GitHub
before ours reached GitHub loses to ours (GitHub ends up showing ours too), and one made after
wins (ours is dropped if not yet sent). What we write to GitHub is remembered by its digest: a
webhook carrying that very text is our own write coming back, never a new edit.

Who may do what, from GitHub: an edit or a resolution counts from someone with write access
(the text steers the agent; a resolution lets a task be approved); a deletion always counts
(GitHub lets only the author or a writer delete, and the comment is gone there either way).

Every lookup is within the task the delivery's pull request belongs to, which is within the
project the delivery's repository is: another repository's delivery (another organization's)
cannot name this project's comments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from errands.github import payloads
from errands.github.markers import find_marker, with_marker
from errands.github.sanitize import sanitize
from errands.store import ReviewComment, ReviewerState, Task
from errands.store.models import utcnow

# A comment GitHub would not take, or one gone from GitHub: never synced again.
NOT_SYNCED = 0
# GitHub's longest comment; anything longer from a webhook is cut to it.
MAX_COMMENT = 65_536

Note = Callable[[Task, str, str], None]


def digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def github_time(stamp: str | None) -> datetime | None:
    """GitHub's ISO 8601 time (``2026-12-06T10:00:00Z``) as the store keeps times (naive
    UTC); None when absent or not a time."""
    if not stamp:
        return None
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def outgoing_body(comment: ReviewComment) -> str:
    """What an Errands comment reads as on GitHub: its text and its marker."""
    return with_marker(comment.body, "comment", comment.id)


def _mirrored(session: Session, task: Task, github_id: int) -> ReviewComment | None:
    return session.scalars(
        select(ReviewComment).where(
            ReviewComment.task_id == task.id, ReviewComment.github_id == github_id
        )
    ).first()


def _root(session: Session, comment: ReviewComment) -> ReviewComment:
    seen = {comment.id}
    while comment.parent_id is not None:
        parent = session.get(ReviewComment, comment.parent_id)
        if parent is None or parent.id in seen:
            break
        seen.add(parent.id)
        comment = parent
    return comment


# -- in -----------------------------------------------------------------------------------


def comment_edited(
    session: Session,
    task: Task,
    event: payloads.PullRequestReviewCommentEvent,
    can_write: bool,
    note: Note,
) -> str:
    remote = event.comment
    row = _mirrored(session, task, remote.id)
    if row is None:
        return "no such comment in Errands"
    if digest(remote.body) == row.github_digest:
        return "our own edit (or one already applied)"
    editor = event.sender.login if event.sender else remote.user.login
    if not can_write:
        note(
            task,
            "github.edit_ignored",
            f"@{editor} edited comment {row.id} on GitHub; not applied: no write access",
        )
        return "editor lacks write access"
    at = github_time(remote.updated_at) or utcnow()
    if row.edited_at is not None and at <= row.edited_at:
        note(
            task,
            "github.edit_ignored",
            f"@{editor}'s edit of comment {row.id} on GitHub is older than its edit in "
            "Errands, which stays",
        )
        return "an older edit: the newer one stays"
    # Ours, if not on GitHub yet, is older: it is dropped, not written over this.
    _take(row, remote.body, at)
    note(task, "review.comment_edited", f"Comment {row.id} edited by @{editor} on GitHub")
    return f"comment {row.id} edited"


def _take(row: ReviewComment, raw: str, at: datetime) -> None:
    row.body = sanitize(raw)[:MAX_COMMENT] or "(empty)"
    row.edited_at, row.github_digest, row.github_edit_pending = at, digest(raw), False


def newer_on_github(known: str | None, edited_at: datetime | None, remote: dict[str, Any]) -> bool:
    """Whether ``remote`` (a review comment as GitHub has it) was edited there since we last
    wrote or read it, later than our edit at ``edited_at``."""
    raw = str(remote.get("body") or "")
    if digest(raw) == known:
        return False
    at = github_time(remote.get("updated_at"))
    return at is not None and (edited_at is None or at > edited_at)


def take_github_edit(row: ReviewComment, remote: dict[str, Any]) -> None:
    _take(row, str(remote.get("body") or ""), github_time(remote.get("updated_at")) or utcnow())


def comment_deleted(
    session: Session, task: Task, event: payloads.PullRequestReviewCommentEvent, note: Note
) -> str:
    row = _mirrored(session, task, event.comment.id)
    if row is None:
        return "no such comment in Errands (deleted here already?)"
    who = event.sender.login if event.sender else "someone"
    replies = [c for c in task.comments if c.parent_id == row.id]
    if replies:
        # The thread's replies stay (as on GitHub); the comment becomes a tombstone.
        row.body = f"(deleted on GitHub by @{who})"
        row.github_id, row.github_edit_pending = NOT_SYNCED, False
        outcome = f"comment {row.id} emptied: its replies stay"
    else:
        task.comments.remove(row)
        outcome = f"comment {row.id} deleted"
    note(task, "review.comment_deleted", f"Comment {row.id} deleted by @{who} on GitHub")
    return outcome


def thread_resolution(
    session: Session,
    task: Task,
    event: payloads.PullRequestReviewThreadEvent,
    can_write: bool,
    note: Note,
) -> str:
    resolved = event.action == "resolved"
    row = next(
        (
            found
            for remote in event.thread.comments
            if (found := _mirrored(session, task, remote.id)) is not None
        ),
        None,
    )
    if row is None:
        return "no such thread in Errands"
    root = _root(session, row)
    who = event.sender.login if event.sender else "someone"
    if root.resolved == resolved:
        root.github_resolved = resolved
        return "already so"  # our own resolution coming back, or a redelivery
    if not can_write:
        note(task, "github.resolution_ignored", f"@{who} lacks write access")
        return "resolver lacks write access"
    root.github_resolved = resolved
    root.resolved = resolved
    word = "resolved" if resolved else "reopened"
    note(task, f"review.{word}", f"Comment {root.id} {word} by @{who} on GitHub")
    return f"thread {root.id} {word}"


def review_changed(
    session: Session,
    task: Task,
    event: payloads.PullRequestReviewEvent,
    can_write: bool,
    note: Note,
) -> str:
    """A review ``dismissed`` (its verdict no longer counts) or ``edited`` (its text)."""
    review = event.review
    login = review.user.login
    if find_marker(review.body) is not None:
        return "our own review"
    state = session.scalars(
        select(ReviewerState).where(
            ReviewerState.task_id == task.id, ReviewerState.reviewer == f"github:{login}"[:64]
        )
    ).first()
    if event.action == "edited":
        text = sanitize(review.body or "")
        note(task, "github.review_edited", f"@{login} edited their review: {text[:500]}")
        return "review edit noted"
    who = event.sender.login if event.sender else "someone"
    if not can_write:
        note(task, "github.review_ignored", f"@{who} dismissed a review; no write access")
        return "dismisser lacks write access"
    if state is None or state.verdict is None:
        return "no verdict to dismiss"
    state.verdict = state.verdict_head = None
    note(task, "review.dismissed", f"@{login}'s review was dismissed by @{who} on GitHub")
    return "verdict dismissed"


# -- out ----------------------------------------------------------------------------------


def verdict_words(verdict: str) -> str:
    return "approved" if verdict == "approved" else "requested changes"


def verdict_body(state: ReviewerState, head: str) -> str:
    """The review Errands posts for a verdict given in Errands: a comment review (GitHub does
    not let an App approve the pull request it opened), naming the reviewed commit."""
    mark = "✅" if state.verdict == "approved" else "✋"
    text = f"{mark} {sanitize(state.name) or 'A reviewer'} {verdict_words(str(state.verdict))} "
    text += f"in Errands, at `{head[:10]}`."
    return with_marker(text, "verdict", state.id)


def posted_key(state: ReviewerState) -> str:
    return f"{state.verdict}@{state.verdict_head}"[:100]


def is_posted(reviews: list[dict[str, Any]], state_id: int, key: str) -> bool:
    """Whether an earlier attempt already posted the verdict ``key`` (see :func:`posted_key`)
    of reviewer state ``state_id``, found by its marker, its words and its head."""
    verdict, _, head = key.partition("@")
    words = verdict_words(verdict)
    return any(
        find_marker(r.get("body")) == ("verdict", state_id)
        and f"`{head[:10]}`" in str(r.get("body"))
        and words in str(r.get("body"))
        for r in reviews
    )
