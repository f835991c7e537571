"""Delivering composed notifications: claimed by a compare-and-swap, sent, marked.

A claim holds a notification for ``ERRANDS_NOTIFY_CLAIM_SECONDS``; a worker that dies while
holding one leaves it to be claimed again after that. The one window left is a worker dying
after the receiver has the message and before it is marked sent: then it is sent again with
the same delivery id (``X-Errands-Delivery``, the email's ``Message-ID``), so a receiver can
recognise it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, or_, select, update

from errands.accounts import mail
from errands.errors import ErrandsError
from errands.faults import crash_point
from errands.jobs.ledger import retry_delay
from errands.notifications import webhook
from errands.settings import Settings
from errands.store import Database, Notification, NotificationSettings, Task, User
from errands.store.models import utcnow

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 3_600.0
BATCH = 50


def _slack(text: str) -> str:
    # Slack's mrkdwn gives these three a meaning; everything else is shown as written.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def payload(row: Notification, task: Task) -> dict[str, object]:
    """The webhook body: names, states and links only (no secret, no agent output). ``text``
    makes a Slack incoming-webhook URL work as it is."""
    return {
        "text": f"{_slack(row.title)}\n<{row.url}|Open in Errands>",
        "id": row.id,
        "title": row.title,
        "url": row.url,
        "events": list(row.events),
        "task": {
            "id": task.id,
            "title": task.title,
            "state": task.state,
            "project": task.project.name,
        },
        "created_at": row.created_at.isoformat() + "Z",
    }


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Due and unclaimed, or claimed by a worker that did not finish in time (it died)."""
    return or_(
        (Notification.state == "pending") & (Notification.next_attempt_at <= now),
        (Notification.state == "sending") & (Notification.claimed_until < now),
    )


def _claim_next(db: Database, settings: Settings) -> int | None:
    """Claim one due notification (one at a time: a claim must not run out while the ones
    before it are sent)."""
    now = utcnow()
    with db.session() as session:
        candidates = session.scalars(
            select(Notification.id).where(_claimable(now)).order_by(Notification.id).limit(10)
        ).all()
    for notification_id in candidates:
        with db.session() as session:
            result = session.execute(
                update(Notification)
                .where(Notification.id == notification_id, _claimable(now))
                .values(
                    state="sending",
                    attempts=Notification.attempts + 1,
                    claimed_until=now + timedelta(seconds=settings.notify_claim_seconds),
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return notification_id
    return None


def _send(db: Database, settings: Settings, notification_id: int) -> None:
    with db.session() as session:
        row = session.get_one(Notification, notification_id)
        task = session.get_one(Task, row.task_id)
        user = session.get_one(User, row.user_id)
        prefs_row = session.get(NotificationSettings, row.user_id)
        body = payload(row, task)
        channel, title, text, email = row.channel, row.title, row.text, user.email
        url = prefs_row.webhook_url if prefs_row else None
        secret = prefs_row.webhook_secret if prefs_row else None
        events = list(row.events)
    delivery = f"errands-notification-{notification_id}"
    if channel == "email":
        host = urlsplit(mail.public_url(settings)).hostname or "localhost"
        sent = mail.send(
            settings,
            email,
            title,
            f"{text}\n\nChange what Errands tells you on your account page: "
            f"{mail.public_url(settings)}/account#notifications\n",
            headers={"Message-ID": f"<{delivery}@{host}>"},
        )
        if not sent:
            raise webhook.WebhookRefused("No SMTP server is configured (ERRANDS_SMTP_HOST).")
    elif channel == "webhook":
        if not url or not secret:
            raise webhook.WebhookRefused("The user has no webhook URL any more.")
        webhook.post(
            url,
            body,
            secret=secret,
            delivery=delivery,
            event=",".join(events),
            allowed=settings.webhook_allowed_networks,
        )


def _settle(
    db: Database, settings: Settings, notification_id: int, error: ErrandsError | None
) -> None:
    now = utcnow()
    with db.session() as session:
        row = session.get_one(Notification, notification_id)
        if error is None:
            row.state, row.sent_at, row.last_error, row.claimed_until = "sent", now, None, None
            return
        row.last_error = error.message[:2_000]
        row.claimed_until = None
        retryable = error.retryable or isinstance(error, mail.MailError)
        if not retryable or row.attempts >= settings.notify_max_attempts:
            row.state = "failed"
            return
        delay = retry_delay(row.attempts, settings.notify_retry_delay, MAX_RETRY_DELAY)
        row.state, row.next_attempt_at = "pending", now + timedelta(seconds=delay)


def deliver_due(db: Database, settings: Settings) -> int:
    """Send what is due; the number sent."""
    sent = 0
    for _ in range(BATCH):
        notification_id = _claim_next(db, settings)
        if notification_id is None:
            break
        crash_point("notify.claimed")
        error: ErrandsError | None = None
        try:
            _send(db, settings, notification_id)
        except ErrandsError as exc:
            error = exc
            log.warning("notification %s not delivered: %s", notification_id, exc.message)
        crash_point("notify.sent")
        _settle(db, settings, notification_id, error)
        sent += error is None
    return sent
