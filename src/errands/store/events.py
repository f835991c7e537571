"""The append-only event log: everything that happened to a task, in order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from errands.domain import notify_event
from errands.store.models import Event, NotificationOutbox

MAX_TEXT = 8_000  # characters kept of any one string in an event; the rest is elided


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Keep the head and the tail of long text: errors usually sit at the end."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… [{len(text) - limit} characters elided] …\n{text[-half:]}"


def _clip_data(value: Any) -> Any:
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, dict):
        return {str(k): _clip_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clip_data(v) for v in value]
    return value


def record(
    session: Session,
    kind: str,
    message: str,
    *,
    task_id: int | None = None,
    project_id: int | None = None,
    job_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    event = Event(
        kind=kind,
        message=clip(message, 2_000),
        task_id=task_id,
        project_id=project_id,
        job_id=job_id,
        data=_clip_data(data or {}),
    )
    session.add(event)
    session.flush()
    notify = notify_event(kind, event.data) if task_id is not None else None
    if notify is not None:
        # The outbox row commits or rolls back with the event (and the state change it
        # records): a notification is never lost to a crash, nor made twice by a retry.
        session.add(
            NotificationOutbox(task_id=task_id, event_id=event.id, kind=notify, data=event.data)
        )
        session.flush()
    return event


def list_events(
    session: Session,
    *,
    task_id: int | None = None,
    project_id: int | None = None,
    after: int = 0,
    limit: int = 1_000,
) -> list[Event]:
    query = select(Event).where(Event.id > after).order_by(Event.id).limit(limit)
    if task_id is not None:
        query = query.where(Event.task_id == task_id)
    if project_id is not None:
        query = query.where(Event.project_id == project_id)
    return list(session.scalars(query))
