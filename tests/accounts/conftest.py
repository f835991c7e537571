"""A server with two organizations: Alpha (an owner, a viewer, a project with a task) and
Beta (an owner who is no member of Alpha). Driven in-process through the ASGI app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from errands.web.app import create_app
from tests.support import settings_for

BASE = "http://127.0.0.1"
PASSWORD = "correct horse battery"


@dataclass
class World:
    app: FastAPI
    owner: TestClient  # Alpha's owner, signed in with a session cookie
    owner_csrf: str
    owner_token: str
    owner_token_id: int
    owner_id: int
    viewer_token: str
    outsider_token: str  # Beta's owner
    project: str
    project_id: int
    task_id: int

    def client(self) -> TestClient:
        return TestClient(self.app, base_url=BASE)

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def invite_code(owner: TestClient, csrf: str, email: str, role: str) -> str:
    sent = owner.post(
        "/api/invitations", json={"email": email, "role": role}, headers={"X-CSRF-Token": csrf}
    )
    assert sent.status_code == 201, sent.text
    link = sent.json()["link"]  # no SMTP server configured: the owner gets the link
    return str(parse_qs(urlsplit(link).query)["code"][0])


def sign_up(app: FastAPI, **body: Any) -> tuple[TestClient, dict[str, Any]]:
    client = TestClient(app, base_url=BASE)
    response = client.post("/api/auth/signup", json={"password": PASSWORD, **body})
    assert response.status_code == 201, response.text
    return client, response.json()


def token_of(client: TestClient, csrf: str, name: str) -> dict[str, Any]:
    created = client.post("/api/tokens", json={"name": name}, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


@pytest.fixture
def world(home: Path, sample_repo: Path) -> Iterator[World]:
    # No worker: no model is called.
    settings = settings_for(
        home,
        "http://127.0.0.1:9/v1",
        secret_key="test-secret-key-0123456789",
        local_origins=[sample_repo.parent],  # the test's directory: its repositories may be used
    )
    app = create_app(settings)
    with TestClient(app, base_url=BASE) as local:
        # Single-user mode first: a project and a task, as before accounts existed.
        project = local.post("/api/projects", json={"origin": str(sample_repo), "name": "alpha"})
        assert project.status_code == 201, project.text
        task = local.post("/api/tasks", json={"project": "alpha", "title": "Secret alpha task"})
        assert task.status_code == 201, task.text

        owner, me = sign_up(app, email="owner@alpha.test", org_name="Alpha")
        csrf = me["csrf_token"]
        owner_token = token_of(owner, csrf, "ci")

        viewer, _ = sign_up(
            app,
            email="viewer@alpha.test",
            invite_code=invite_code(owner, csrf, "viewer@alpha.test", "viewer"),
        )
        viewer_csrf = viewer.get("/api/me").json()["csrf_token"]
        viewer_token = token_of(viewer, viewer_csrf, "viewer's")["token"]

        # Beta's owner: invited to Alpha to get an account, starts Beta, leaves Alpha.
        outsider, out_me = sign_up(
            app,
            email="owner@beta.test",
            invite_code=invite_code(owner, csrf, "owner@beta.test", "member"),
        )
        out_csrf = out_me["csrf_token"]
        beta = outsider.post("/api/orgs", json={"name": "Beta"}, headers={"X-CSRF-Token": out_csrf})
        assert beta.status_code == 201, beta.text
        switched = outsider.post(
            "/api/me/org", json={"org_id": beta.json()["id"]}, headers={"X-CSRF-Token": out_csrf}
        )
        assert switched.status_code == 200, switched.text
        removed = owner.delete(f"/api/members/{out_me['id']}", headers={"X-CSRF-Token": csrf})
        assert removed.status_code == 204, removed.text
        outsider_token = token_of(outsider, out_csrf, "beta")["token"]

        yield World(
            app=app,
            owner=owner,
            owner_csrf=csrf,
            owner_token=owner_token["token"],
            owner_token_id=owner_token["id"],
            owner_id=me["id"],
            viewer_token=viewer_token,
            outsider_token=outsider_token,
            project="alpha",
            project_id=project.json()["id"],
            task_id=task.json()["id"],
        )
