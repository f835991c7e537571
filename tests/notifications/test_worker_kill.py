"""A notification is delivered once although the worker delivering it is SIGKILLed: real
``errands worker`` processes, killed by their own crash points (errands.faults) right after
composing, and right after claiming the delivery."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from errands.domain import TaskState
from errands.notifications import prefs
from errands.store import Notification
from errands.testing.workload import Fleet, worker_env
from tests.notifications.conftest import Receiver, make_team, verify
from tests.support import wait_for


def _state(team_db: object, channel: str = "webhook") -> tuple[str, int] | None:
    with team_db.session() as session:  # type: ignore[attr-defined]
        row = session.scalars(select(Notification).where(Notification.channel == channel)).first()
        return (row.state, row.attempts) if row else None


@pytest.mark.parametrize(
    ("point", "attempts"),
    [("notify.composed", 1), ("notify.claimed", 2)],
)
def test_a_worker_killed_while_notifying_sends_the_webhook_exactly_once(
    home: Path, sample_repo: Path, receiver: Receiver, tmp_path: Path, point: str, attempts: int
) -> None:
    team = make_team(
        home, sample_repo, webhook_allowed_networks=["127.0.0.0/8"], notify_claim_seconds=2
    )
    with team.db.session() as session:
        secret = prefs.save(
            session, team.owner_id, {"email": [], "browser": []}, webhook_url=receiver.url
        ).webhook_secret
    assert secret
    extra = {
        "ERRANDS_NOTIFY_COALESCE_SECONDS": "0",
        "ERRANDS_NOTIFY_CLAIM_SECONDS": "2",
        "ERRANDS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "ERRANDS_PUBLIC_URL": "https://errands.example.test",
    }
    doomed = Fleet(
        [worker_env(team.settings, ERRANDS_CRASH_POINTS=f"{point}:1", **extra)],
        tmp_path / "doomed",
    )
    team.say(TaskState.IN_REVIEW)
    doomed.start()
    try:
        code = doomed.processes[0].wait(timeout=60)
    except subprocess.TimeoutExpired:
        doomed.stop()
        raise
    assert code == -9, f"the worker was to kill itself at {point}"
    assert receiver.received == []
    survivor = Fleet([worker_env(team.settings, **extra)], tmp_path / "survivor")
    survivor.start()
    try:
        wait_for(lambda: _state(team.db) == ("sent", attempts), timeout=60, what="the delivery")
        time.sleep(3.0)  # past another claim's expiry: nothing more is sent
    finally:
        survivor.stop()
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert verify(secret, headers, body)
    team.db.dispose()
