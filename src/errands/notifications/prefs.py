"""Who wants to hear about what, over which channel."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from errands.domain import NotifyEvent
from errands.errors import InvalidInput
from errands.store import NotificationSettings

Channel = Literal["email", "webhook", "browser"]
CHANNELS: tuple[Channel, ...] = ("email", "webhook", "browser")
EVENTS: tuple[NotifyEvent, ...] = tuple(NotifyEvent)
EVENT_WORDS: dict[NotifyEvent, str] = {
    NotifyEvent.NEEDS_ANSWERS: "needs your answers",
    NotifyEvent.READY_FOR_REVIEW: "is ready for review",
    NotifyEvent.FAILED: "failed",
    NotifyEvent.MERGED: "was merged",
    NotifyEvent.REVIEW_REPLY: "has a reply in your review thread",
}
MAX_URL = 2_000


def _all() -> list[str]:
    return [str(e) for e in EVENTS]


@dataclass
class Prefs:
    """A user's notification settings. Without a saved row: every event by email and in the
    browser; webhooks once a URL is set."""

    email: list[str] = field(default_factory=_all)
    webhook: list[str] = field(default_factory=_all)
    browser: list[str] = field(default_factory=_all)
    webhook_url: str | None = None
    webhook_secret: str | None = None

    def wants(self, channel: Channel, event: str) -> bool:
        if channel == "webhook" and not self.webhook_url:
            return False
        chosen: list[str] = getattr(self, channel)
        return event in chosen


def load(session: Session, user_id: int) -> Prefs:
    row = session.get(NotificationSettings, user_id)
    if row is None:
        return Prefs()
    return Prefs(
        email=list(row.email),
        webhook=list(row.webhook),
        browser=list(row.browser),
        webhook_url=row.webhook_url,
        webhook_secret=row.webhook_secret,
    )


def check_url(url: str) -> str:
    """An http(s) URL without credentials in it; whether its host may be reached is checked
    when it is called (the name may resolve elsewhere by then)."""
    url = url.strip()
    if len(url) > MAX_URL or any(ord(c) < 33 for c in url):
        raise InvalidInput(f"A webhook URL is at most {MAX_URL:,} characters, without spaces.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("A webhook URL starts with https:// (or http://) and names a host.")
    if parts.username or parts.password:
        raise InvalidInput("A webhook URL may not carry a user name or password.")
    return url


def save(
    session: Session,
    user_id: int,
    chosen: dict[Channel, list[str]],
    *,
    webhook_url: str | None,
    new_secret: bool = False,
) -> Prefs:
    for channel, events in chosen.items():
        unknown = sorted(set(events) - set(_all()))
        if unknown:
            raise InvalidInput(
                f"Unknown {channel} notification event(s): {', '.join(unknown)}; "
                f"known: {', '.join(_all())}."
            )
    row = session.get(NotificationSettings, user_id)
    if row is None:
        row = NotificationSettings(user_id=user_id, email=_all(), webhook=_all(), browser=_all())
        session.add(row)
    for channel, events in chosen.items():
        setattr(row, channel, [e for e in _all() if e in events])
    row.webhook_url = check_url(webhook_url) if webhook_url and webhook_url.strip() else None
    if row.webhook_url and (new_secret or not row.webhook_secret):
        row.webhook_secret = secrets.token_hex(32)
    session.flush()
    return load(session, user_id)
