"""Notifications by email (a real SMTP server on loopback) and webhook (a receiver on
loopback): who gets what, one message per burst of a task's events, signed webhooks retried
after a 500, and webhook URLs that name internal addresses refused."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from errands.domain import TaskState
from errands.notifications import outbox, prefs, webhook
from errands.store import Notification, NotificationOutbox, ReviewComment
from errands.store import events as event_log
from tests.notifications.conftest import Receiver, Team, make_team, verify
from tests.smtp import Inbox, body_of


def with_smtp(team: Team, port: int) -> None:
    team.settings = team.settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_tls": "none"}
    )


def set_prefs(team: Team, user_id: int, **chosen: list[str]) -> prefs.Prefs:
    with team.db.session() as session:
        return prefs.save(session, user_id, chosen, webhook_url=None)  # type: ignore[arg-type]


def test_needs_answers_mails_the_organizations_members_once_with_a_link_to_the_questions(
    team: Team, inbox: tuple[Inbox, int]
) -> None:
    mails, port = inbox
    with_smtp(team, port)
    team.say(TaskState.AWAITING_ANSWERS)
    outbox.run(team.db, team.settings)
    outbox.run(team.db, team.settings)  # nothing more: composed and sent once
    for address in ("owner@example.test", "member@example.test"):
        [message] = mails.to(address)
        assert (
            message["Subject"]
            == f"Task #{team.task_id} needs your answers: Add <multiply> & divide"
        )
        assert f"https://errands.example.test/tasks/{team.task_id}#questions" in body_of(message)
        assert message["Message-ID"].startswith("<errands-notification-")
    assert mails.to("viewer@example.test") == []  # viewers cannot answer
    with team.db.session() as session:
        rows = session.scalars(select(Notification).where(Notification.channel == "email")).all()
        assert sorted(r.state for r in rows) == ["sent", "sent"]
        # The browser channel is written too (the open app fetches it).
        assert (
            len(
                session.scalars(select(Notification).where(Notification.channel == "browser")).all()
            )
            == 2
        )


def test_a_burst_of_events_of_one_task_is_one_message(
    home: Path, sample_repo: Path, inbox: tuple[Inbox, int]
) -> None:
    mails, port = inbox
    team = make_team(home, sample_repo, notify_coalesce_seconds=0.6)
    with_smtp(team, port)
    team.say(TaskState.IN_REVIEW)
    team.say(TaskState.FAILED, reason="Verification failed: 1 test")
    outbox.run(team.db, team.settings)
    assert mails.to("owner@example.test") == []  # still within the window
    time.sleep(0.7)
    outbox.run(team.db, team.settings)
    [message] = mails.to("owner@example.test")
    assert "is ready for review · failed" in message["Subject"]
    text = body_of(message)
    assert f"/tasks/{team.task_id}/review" in text and "reason: Verification failed: 1 test" in text
    team.db.dispose()


def test_preferences_choose_events_per_channel(team: Team, inbox: tuple[Inbox, int]) -> None:
    mails, port = inbox
    with_smtp(team, port)
    set_prefs(team, team.member_id, email=["merged"], browser=[])
    team.say(TaskState.IN_REVIEW)
    outbox.run(team.db, team.settings)
    assert mails.to("member@example.test") == []
    assert len(mails.to("owner@example.test")) == 1  # defaults: every event
    team.say(TaskState.MERGED)
    outbox.run(team.db, team.settings)
    [merged] = mails.to("member@example.test")
    assert "was merged" in merged["Subject"]
    with team.db.session() as session:
        mine = session.scalars(
            select(Notification).where(
                Notification.user_id == team.member_id, Notification.channel == "browser"
            )
        ).all()
        assert mine == []


def test_a_signed_webhook_is_retried_after_a_500_with_slack_text_and_no_secret(
    home: Path, sample_repo: Path, receiver: Receiver
) -> None:
    team = make_team(home, sample_repo, webhook_allowed_networks=["127.0.0.0/8"])
    with team.db.session() as session:
        saved = prefs.save(
            session, team.owner_id, {"email": [], "browser": []}, webhook_url=receiver.url
        )
    secret = saved.webhook_secret
    assert secret and len(secret) == 64
    receiver.statuses = [500]
    team.say(TaskState.AWAITING_ANSWERS)
    outbox.run(team.db, team.settings)
    assert len(receiver.received) == 1  # answered 500
    with team.db.session() as session:
        [row] = session.scalars(select(Notification).where(Notification.channel == "webhook"))
        assert (row.state, row.attempts) == ("pending", 1)
        assert "HTTP 500" in (row.last_error or "")
    time.sleep(0.2)  # the backoff (0.05 s, doubling, jittered)
    outbox.run(team.db, team.settings)
    assert len(receiver.received) == 2
    for headers, body in receiver.received:
        assert verify(secret, headers, body)
        assert not verify("another secret", headers, body)
        assert secret not in body.decode()
        assert headers["x-errands-event"] == "needs_answers"
    # The same delivery id both times: a receiver can tell a retry from a new message.
    assert len({h["x-errands-delivery"] for h, _ in receiver.received}) == 1
    payload = receiver.bodies()[-1]
    assert payload["text"].startswith(
        f"Task #{team.task_id} needs your answers: Add &lt;multiply&gt; &amp; divide"
    )
    assert payload["url"] == f"https://errands.example.test/tasks/{team.task_id}#questions"
    assert payload["task"]["state"] == "awaiting_answers"
    with team.db.session() as session:
        [row] = session.scalars(select(Notification).where(Notification.channel == "webhook"))
        assert (row.state, row.attempts) == ("sent", 2)
    team.db.dispose()


def test_a_webhook_to_an_internal_address_is_refused_unless_allowed(
    team: Team, receiver: Receiver
) -> None:
    with team.db.session() as session:
        prefs.save(session, team.owner_id, {"email": [], "browser": []}, webhook_url=receiver.url)
    team.say(TaskState.FAILED, reason="boom")
    outbox.run(team.db, team.settings)
    assert receiver.received == []
    with team.db.session() as session:
        [row] = session.scalars(select(Notification).where(Notification.channel == "webhook"))
        assert row.state == "failed"  # a refusal is not retried
        assert "internal address" in (row.last_error or "")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "::1",
        "::ffff:127.0.0.1",
        "fd00::1",
        "0.0.0.0",
        "100.64.0.1",
        "224.0.0.1",
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    with pytest.raises(webhook.WebhookRefused):
        webhook.check_address(ipaddress.ip_address(address), [])


def test_public_and_allowed_addresses_pass() -> None:
    webhook.check_address(ipaddress.ip_address("140.82.112.3"), [])
    webhook.check_address(ipaddress.ip_address("10.1.2.3"), webhook.networks(["10.0.0.0/8"]))


def test_a_failed_stage_writes_the_outbox_row_in_its_own_transaction(team: Team) -> None:
    def stage() -> None:
        with team.db.session() as session:
            event_log.record(
                session, "task.state", "x", task_id=team.task_id, data={"state": "in_review"}
            )
            raise RuntimeError("the stage's transaction rolls back")

    with pytest.raises(RuntimeError):
        stage()
    with team.db.session() as session:
        assert session.scalars(select(NotificationOutbox)).all() == []


def test_a_reply_notifies_the_others_in_the_thread_with_a_link_to_it(
    team: Team, inbox: tuple[Inbox, int]
) -> None:
    mails, port = inbox
    with_smtp(team, port)
    with team.db.session() as session:
        root = ReviewComment(
            task_id=team.task_id, path="calc.py", line=1, body="Why?", author_id=team.owner_id
        )
        session.add(root)
        session.flush()
        reply = ReviewComment(
            task_id=team.task_id,
            parent_id=root.id,
            path="calc.py",
            line=1,
            body="Because.",
            author_id=team.member_id,
        )
        session.add(reply)
        session.flush()
        reply_id = reply.id
        event_log.record(
            session,
            "review.comment",
            "reply",
            task_id=team.task_id,
            data={"comment_id": reply.id, "parent_id": root.id, "author_id": team.member_id},
        )
    outbox.run(team.db, team.settings)
    [message] = mails.to("owner@example.test")
    assert "has a reply in your review thread" in message["Subject"]
    assert f"/tasks/{team.task_id}/review#c{reply_id}" in body_of(message)
    assert mails.to("member@example.test") == []  # who replied
    assert mails.to("viewer@example.test") == []  # not in the thread
