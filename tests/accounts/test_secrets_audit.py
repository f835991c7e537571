"""Organization secrets are stored encrypted and never shown again; jobs of the
organization's projects use them (and redact them); the audit log records who changed what."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from errands.accounts import vault
from errands.accounts.crypto import SecretBoxError
from errands.store import OrgSecret
from tests.accounts.conftest import World

KEY = "sk-org-alpha-0123456789-wxyz"


def test_secrets_are_encrypted_never_shown_and_used_by_the_orgs_jobs(world: World) -> None:
    client = world.client()
    owner = world.bearer(world.owner_token)
    saved = client.put("/api/secrets/openai_api_key", json={"value": KEY}, headers=owner)
    assert saved.status_code == 200, saved.text
    assert saved.json()["hint"] == "…wxyz" and KEY not in saved.text
    listed = client.get("/api/secrets", headers=owner)
    assert KEY not in listed.text and [s["name"] for s in listed.json()] == ["openai_api_key"]
    unknown = client.put("/api/secrets/aws_key", json={"value": KEY}, headers=owner)
    assert unknown.status_code == 422

    settings = world.app.state.settings
    db = world.app.state.db
    with db.session() as session:
        row = session.scalars(select(OrgSecret)).one()
        assert KEY not in row.ciphertext
    job_settings = vault.settings_for_project(db, settings, world.project_id)
    assert job_settings.openai_api_key is not None
    assert job_settings.openai_api_key.get_secret_value() == KEY
    assert KEY in job_settings.secrets()  # so the job's events are scrubbed of it
    rotated = settings.model_copy(update={"secret_key": SecretStr("another-key-entirely")})
    with pytest.raises(SecretBoxError, match="ERRANDS_SECRET_KEY") as refused:
        vault.settings_for_project(db, rotated, world.project_id)
    assert KEY not in refused.value.message


def test_the_audit_log_records_who_changed_what(world: World) -> None:
    client = world.client()
    owner = world.bearer(world.owner_token)
    client.put("/api/budget", json={"usd": 25}, headers=owner)
    client.put(f"/api/tasks/{world.task_id}/budget", json={"usd": 2}, headers=owner)
    entries = client.get("/api/audit", headers=owner).json()
    actions = [(e["actor"], e["action"]) for e in entries]
    assert ("owner@alpha.test", "set_budget") in actions
    assert ("owner@alpha.test", "put_task_budget") in actions
    assert ("owner@alpha.test", "remove_member") in actions
    assert ("owner@alpha.test", "invite") in actions
    assert ("viewer@alpha.test", "sign_in") in actions
    # Beta's owner sees none of it; Alpha's viewer may not read it.
    assert client.get("/api/audit", headers=world.bearer(world.outsider_token)).json() == [
        e
        for e in client.get("/api/audit", headers=world.bearer(world.outsider_token)).json()
        if e["actor"] == "owner@beta.test"
    ]
    assert client.get("/api/audit", headers=world.bearer(world.viewer_token)).status_code == 403
