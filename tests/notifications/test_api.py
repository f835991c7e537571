"""Notification settings and the in-app feed over the HTTP API."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from errands.domain import TaskState
from errands.notifications import outbox
from errands.web.app import create_app
from tests.notifications.conftest import PASSWORD, make_team

BASE = "http://127.0.0.1"


def test_settings_secret_shown_once_bad_input_and_the_feed(home: Path, sample_repo: Path) -> None:
    team = make_team(home, sample_repo)
    app = create_app(team.settings, embedded_worker=False)
    with TestClient(app, base_url=BASE) as client:
        signed = client.post(
            "/api/auth/login", json={"email": "owner@example.test", "password": PASSWORD}
        )
        assert signed.status_code == 200, signed.text
        csrf = {"X-CSRF-Token": client.get("/api/me").json()["csrf_token"]}
        found = client.get("/api/me/notifications").json()
        assert found["email"] == found["browser"] == found["events"]
        assert found["webhook_url"] is None

        put = client.put(
            "/api/me/notifications",
            json={"email": ["failed"], "webhook_url": "https://hooks.example.test/x"},
            headers=csrf,
        )
        assert put.status_code == 200, put.text
        secret = put.json()["webhook_secret"]
        assert secret and put.json()["email"] == ["failed"]
        again = client.get("/api/me/notifications").json()
        assert again["webhook_secret"] is None and again["webhook_secret_hint"] == secret[-4:]
        same = client.put("/api/me/notifications", json={"browser": []}, headers=csrf).json()
        assert same["webhook_secret"] is None  # kept, not shown again
        same = client.put(
            "/api/me/notifications",
            json={"webhook_url": "https://hooks.example.test/x"},
            headers=csrf,
        ).json()
        assert same["webhook_secret"] is None and same["browser"] == []

        for bad in (
            {"webhook_url": "ftp://example.test/x"},
            {"webhook_url": "https://user:pw@example.test/x"},
            {"email": ["everything"]},
        ):
            refused = client.put("/api/me/notifications", json=bad, headers=csrf)
            assert refused.status_code == 422, bad
            assert refused.json()["error"]["code"] == "invalid_input"

        client.put("/api/me/notifications", json={"browser": ["needs_answers"]}, headers=csrf)
        assert client.get("/api/notifications").json() == {"latest": 0, "items": []}
        team.say(TaskState.AWAITING_ANSWERS)
        outbox.run(team.db, team.settings)
        feed = client.get("/api/notifications").json()
        [item] = feed["items"]
        assert item["url"] == f"https://errands.example.test/tasks/{team.task_id}#questions"
        assert feed["latest"] == item["id"]
        assert client.get(f"/api/notifications?after={item['id']}").json()["items"] == []
    team.db.dispose()


def test_single_user_mode_has_no_notification_settings(home: Path) -> None:
    from tests.support import settings_for

    app = create_app(settings_for(home, "http://127.0.0.1:9/v1"), embedded_worker=False)
    with TestClient(app, base_url=BASE) as client:
        answer = client.get("/api/me/notifications")
        assert answer.status_code == 409
        assert "single-user mode" in answer.json()["error"]["message"]
