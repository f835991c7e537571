"""Fixtures for the GitHub tests: an App key pair, the fake GitHub API on loopback, a bare
repository standing in for GitHub's git remote, and a way to deliver signed webhooks."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from errands.github.signature import sign
from errands.settings import Settings
from errands.testing.fake_github import FakeGitHub
from tests.support import settings_for

APP_ID = "4242"
INSTALLATION = 77
REPO = "acme/calc"
WEBHOOK_SECRET = "whsec-test-0123456789"


@dataclass(frozen=True)
class KeyPair:
    private: str
    public: str


def app_settings(
    home: Path, llm_base_url: str, fake: FakeGitHub, key: KeyPair, **overrides: Any
) -> Settings:
    """Settings of a server that is the GitHub App, talking to the fake GitHub API."""
    return settings_for(
        home,
        llm_base_url,
        github_api_url=fake.base_url,
        github_app_id=APP_ID,
        github_private_key=key.private,
        github_webhook_secret=WEBHOOK_SECRET,
        **overrides,
    )


@pytest.fixture(scope="session")
def app_key() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private, public)


@pytest.fixture
def github_remote(sample_repo: Path, tmp_path: Path) -> Path:
    """A bare clone of the sample repository: what GitHub's git server holds."""
    remote = tmp_path / "github" / "acme" / "calc.git"
    remote.parent.mkdir(parents=True)
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(sample_repo), str(remote)],
        check=True,
        capture_output=True,
    )
    return remote


@pytest.fixture
def fake_github(app_key: KeyPair, github_remote: Path) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(app_id=APP_ID, public_key=app_key.public)
    fake.add_repo(REPO, github_remote)
    fake.add_installation(INSTALLATION, "acme", [REPO])
    fake.set_permission(REPO, "maintainer", "maintain")
    fake.set_permission(REPO, "admin-alice", "admin")
    fake.set_permission(REPO, "reader", "read")
    with fake.serve():
        yield fake


def deliver(
    client: httpx.Client,
    event: str,
    payload: Any,
    *,
    delivery: str | None = None,
    secret: str = WEBHOOK_SECRET,
    raw: bytes | None = None,
) -> httpx.Response:
    """POST a webhook as GitHub does: raw JSON body, signature, event and delivery headers."""
    body = raw if raw is not None else json.dumps(payload).encode()
    return client.post(
        "/api/github/webhook",
        content=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/abc123",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "1",
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-Hub-Signature-256": sign(secret, body),
        },
    )


def envelope(fake: FakeGitHub, sender: str, **fields: Any) -> dict[str, Any]:
    """The parts every repository webhook carries."""
    return {
        **fields,
        "repository": fake.repository_json(REPO),
        "sender": fake.user(sender),
        "installation": {"id": INSTALLATION, "node_id": "MDIz"},
    }
