"""From outbox rows to messages: one per user and channel for all of a task's recent events.

A task often says several things in a row (it fails while a reviewer replies; a revise
round ends in review a minute after the last): whoever listens gets one message for them,
written once the task has been quiet for ``ERRANDS_NOTIFY_COALESCE_SECONDS`` (or after five
times that, so a chatty task still gets heard).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from errands.accounts import mail
from errands.accounts.mail import public_url
from errands.accounts.service import project_org_id
from errands.domain import NotifyEvent
from errands.notifications import prefs
from errands.settings import Settings
from errands.store import (
    Database,
    Membership,
    Notification,
    NotificationOutbox,
    ReviewComment,
    Task,
)
from errands.store.models import utcnow

MAX_AGE_FACTOR = 5


def link(settings: Settings, task_id: int, row: NotificationOutbox) -> str:
    """The exact page the event asks the user to look at."""
    base = f"{public_url(settings)}/tasks/{task_id}"
    kind = NotifyEvent(row.kind)
    if kind is NotifyEvent.NEEDS_ANSWERS:
        return f"{base}#questions"
    if kind is NotifyEvent.READY_FOR_REVIEW:
        return f"{base}/review"
    if kind is NotifyEvent.REVIEW_REPLY:
        return f"{base}/review#c{row.data.get('comment_id', '')}"
    return base


def _recipients(session: Session, task: Task, row: NotificationOutbox) -> set[int]:
    if row.kind == NotifyEvent.REVIEW_REPLY:
        # The people who wrote in the thread, but not the one who just replied.
        reply = session.get(ReviewComment, row.data.get("comment_id"))
        if reply is None or reply.parent_id is None:
            return set()
        thread = session.scalars(
            select(ReviewComment.author_id).where(
                (ReviewComment.id == reply.parent_id) | (ReviewComment.parent_id == reply.parent_id)
            )
        )
        return {a for a in thread if a is not None and a != reply.author_id}
    org_id = project_org_id(session, task.project)
    if org_id is None:  # single-user mode: nobody to tell by name
        return set()
    return set(
        session.scalars(
            select(Membership.user_id).where(
                Membership.org_id == org_id, Membership.role.in_(("owner", "member"))
            )
        )
    )


def _due(rows: list[NotificationOutbox], now: datetime, window: float) -> bool:
    newest = max(r.created_at for r in rows)
    oldest = min(r.created_at for r in rows)
    quiet = now - newest >= timedelta(seconds=window)
    too_old = now - oldest >= timedelta(seconds=window * MAX_AGE_FACTOR)
    return quiet or too_old


def _message(
    settings: Settings, task: Task, rows: list[NotificationOutbox]
) -> tuple[str, str, str]:
    """Title, text and link of the message for ``rows`` (oldest first). Only names, states
    and links: never a secret, nor what the agent wrote."""
    words = [prefs.EVENT_WORDS[NotifyEvent(r.kind)] for r in rows]
    title = f"Task #{task.id} {' · '.join(dict.fromkeys(words))}: {task.title}"[:300]
    lines = [f"Task #{task.id} “{task.title}” ({task.project.name}):", ""]
    for row, said in zip(rows, words, strict=True):
        lines.append(
            f"- {said} ({row.created_at:%Y-%m-%d %H:%M} UTC): {link(settings, task.id, row)}"
        )
        if row.kind == NotifyEvent.FAILED and task.failure_reason:
            lines.append(f"  reason: {task.failure_reason[:500]}")
    # The link of the newest event is the one to follow.
    return title, "\n".join(lines), link(settings, task.id, rows[-1])


def compose_task(
    session: Session, settings: Settings, task_id: int, rows: list[NotificationOutbox]
) -> int:
    """Write the notifications for ``rows`` and mark them composed, all or nothing: the
    marking is a compare-and-swap, so of two workers composing at once one writes nothing."""
    now = utcnow()
    marked = session.execute(
        update(NotificationOutbox)
        .where(
            NotificationOutbox.id.in_([r.id for r in rows]),
            NotificationOutbox.composed_at.is_(None),
        )
        .values(composed_at=now)
        .execution_options(synchronize_session=False)
    )
    if marked.rowcount != len(rows):  # type: ignore[attr-defined]
        session.rollback()
        return 0
    task = session.get_one(Task, task_id)
    per_user: dict[int, list[NotificationOutbox]] = defaultdict(list)
    for row in rows:
        for user_id in _recipients(session, task, row):
            per_user[user_id].append(row)
    written = 0
    for user_id, theirs in sorted(per_user.items()):
        chosen = prefs.load(session, user_id)
        for channel in prefs.CHANNELS:
            if channel == "email" and not mail.configured(settings):
                continue  # no SMTP server: nothing could be sent
            wanted = [r for r in theirs if chosen.wants(channel, r.kind)]
            if not wanted:
                continue
            title, text, url = _message(settings, task, wanted)
            session.add(
                Notification(
                    user_id=user_id,
                    task_id=task_id,
                    channel=channel,
                    events=[r.kind for r in wanted],
                    title=title,
                    text=text,
                    url=url,
                    # The browser fetches its own; nothing to deliver.
                    state="sent" if channel == "browser" else "pending",
                    sent_at=now if channel == "browser" else None,
                    next_attempt_at=now,
                )
            )
            written += 1
    return written


def compose_due(db: Database, settings: Settings) -> int:
    """Compose every task whose pending outbox rows are due; the number of messages."""
    now = utcnow()
    with db.session() as session:
        pending = session.scalars(
            select(NotificationOutbox)
            .where(NotificationOutbox.composed_at.is_(None))
            .order_by(NotificationOutbox.id)
            .limit(1_000)
        ).all()
        by_task: dict[int, list[int]] = defaultdict(list)
        for row in pending:
            if row.created_at <= now:
                by_task[row.task_id].append(row.id)
        due = {
            task_id: ids
            for task_id, ids in by_task.items()
            if _due([r for r in pending if r.id in ids], now, settings.notify_coalesce_seconds)
        }
    written = 0
    for task_id, ids in due.items():
        with db.session() as session:
            rows = list(
                session.scalars(
                    select(NotificationOutbox)
                    .where(NotificationOutbox.id.in_(ids))
                    .order_by(NotificationOutbox.id)
                )
            )
            written += compose_task(session, settings, task_id, rows)
    return written
