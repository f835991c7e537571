"""Routes of notifications: a user's settings, and the feed the open app shows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from errands.accounts.access import UserPrincipal
from errands.accounts.service import Principal
from errands.errors import Conflict
from errands.limits import Count
from errands.notifications import prefs
from errands.store import Notification
from errands.web.deps import get_db
from errands.web.errors import error_responses

router = APIRouter(prefix="/api", tags=["notifications"])
FEED_LIMIT = 50


class NotificationSettingsPublic(BaseModel):
    email: list[str] = Field(description="Events sent by email.")
    webhook: list[str] = Field(description="Events posted to the webhook (once it has a URL).")
    browser: list[str] = Field(description="Events shown in the open app.")
    webhook_url: str | None = None
    webhook_secret: str | None = Field(
        default=None,
        description="The key webhook bodies are signed with: only in the answer that made it.",
    )
    webhook_secret_hint: str | None = Field(default=None, description="Its last 4 characters.")
    events: list[str] = Field(default_factory=lambda: [str(e) for e in prefs.EVENTS])

    @classmethod
    def of(cls, found: prefs.Prefs, *, show_secret: bool = False) -> NotificationSettingsPublic:
        secret = found.webhook_secret
        return cls(
            email=found.email,
            webhook=found.webhook,
            browser=found.browser,
            webhook_url=found.webhook_url,
            webhook_secret=secret if show_secret else None,
            webhook_secret_hint=secret[-4:] if secret else None,
        )


class NotificationSettingsSet(BaseModel):
    email: list[str] | None = None
    webhook: list[str] | None = None
    browser: list[str] | None = None
    webhook_url: str | None = Field(default=None, max_length=prefs.MAX_URL)
    new_secret: bool = Field(default=False, description="Make a new signing key.")


class NotificationPublic(BaseModel):
    id: int
    task_id: int
    events: list[str]
    title: str
    text: str
    url: str
    created_at: datetime


class NotificationFeed(BaseModel):
    latest: int = Field(description="The newest notification's id: the next `after`.")
    items: list[NotificationPublic]


NEEDS_USER = error_responses(409)


def user_of(principal: Principal) -> int:
    if principal.user_id is None:
        raise Conflict(
            "Notifications are per user: there are no accounts yet (single-user mode). Sign "
            "up the first user at /signup first."
        )
    return principal.user_id


def save(
    session: Session, user_id: int, body: NotificationSettingsSet
) -> NotificationSettingsPublic:
    before = prefs.load(session, user_id).webhook_secret
    given: dict[prefs.Channel, list[str] | None] = {
        "email": body.email,
        "webhook": body.webhook,
        "browser": body.browser,
    }
    chosen = {channel: events for channel, events in given.items() if events is not None}
    saved = prefs.save(
        session, user_id, chosen, webhook_url=body.webhook_url, new_secret=body.new_secret
    )
    return NotificationSettingsPublic.of(saved, show_secret=saved.webhook_secret != before)


@router.get("/me/notifications", responses=NEEDS_USER)
def get_settings(request: Request, principal: UserPrincipal) -> NotificationSettingsPublic:
    user_id = user_of(principal)
    with get_db(request).session() as session:
        return NotificationSettingsPublic.of(prefs.load(session, user_id))


@router.put("/me/notifications", responses=NEEDS_USER)
def put_settings(
    body: NotificationSettingsSet, request: Request, principal: UserPrincipal
) -> NotificationSettingsPublic:
    """Which events reach you by email, webhook and in the browser; the webhook's URL. A new
    URL (or ``new_secret``) makes a signing key, shown once in this answer."""
    user_id = user_of(principal)
    with get_db(request).session() as session:
        return save(session, user_id, body)


@router.get("/notifications", responses=NEEDS_USER)
def feed(
    request: Request, principal: UserPrincipal, after: Annotated[Count, Query()] = 0
) -> NotificationFeed:
    """Your in-app notifications after ``after`` (oldest first), for the open app to show."""
    user_id = user_of(principal)
    mine = (Notification.user_id == user_id) & (Notification.channel == "browser")
    with get_db(request).session() as session:
        latest = session.scalar(select(func.max(Notification.id)).where(mine)) or 0
        rows = session.scalars(
            select(Notification)
            .where(mine, Notification.id > after)
            .order_by(Notification.id)
            .limit(FEED_LIMIT)
        ).all()
        items = [NotificationPublic.model_validate(r, from_attributes=True) for r in rows]
        return NotificationFeed(latest=latest, items=items)
