"""One organization cannot take another's repository: not by its path under any spelling,
not through Errands' own mirrors, not through the server's own GitHub credentials; and local
paths are the administrator's to allow (ERRANDS_LOCAL_ORIGINS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from fastapi.testclient import TestClient

from errands.testing.fake_github import FakeGitHub
from errands.web.app import create_app
from tests.accounts.conftest import BASE, World, sign_up, token_of
from tests.accounts.test_github_oauth import CLIENT_ID, CLIENT_SECRET, serving, sign_in
from tests.conftest import run_git
from tests.support import free_port, settings_for


@pytest.fixture
def github_repo_dir(sample_repo: Path, tmp_path: Path) -> Path:
    """What GitHub's git server holds for acme/calc."""
    remote = tmp_path / "github" / "acme" / "calc.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(sample_repo), str(remote))
    return remote


class _Response(Protocol):
    """httpx's response, or the test client's (which is typed as another httpx)."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def _refused(response: _Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


def test_another_organization_cannot_take_a_repository(
    world: World, sample_repo: Path, home: Path, tmp_path: Path
) -> None:
    client = world.client()
    beta = world.bearer(world.outsider_token)
    # Alpha's mirror as the index job makes it, a symlink and a linked work tree of Alpha's
    # repository, all inside the directory the administrator allowed (tmp_path).
    mirror = home / "mirrors" / f"project-{world.project_id}.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(sample_repo), str(mirror))
    (tmp_path / "link").symlink_to(sample_repo)
    run_git(sample_repo, "worktree", "add", "-q", str(tmp_path / "tree"), "-b", "side")

    spellings = [
        str(sample_repo),
        f"{sample_repo}/",
        f"{sample_repo}//",
        f"{sample_repo}/../{sample_repo.name}",
        f"{sample_repo}/tests",
        str(tmp_path / "link"),
        f"file://{sample_repo}",
        f"file://{tmp_path / 'link'}/",
        f"file://localhost{sample_repo}/./",
        str(tmp_path / "tree"),
    ]
    for n, origin in enumerate(spellings):
        taken = client.post("/api/projects", json={"origin": origin, "name": f"x{n}"}, headers=beta)
        _refused(taken, 409, "already a project of another organization")
    for origin in (
        str(mirror),
        f"file://{mirror}",
        f"{home}/../{home.name}/mirrors/project-{world.project_id}.git/",
        str(home),
    ):
        taken = client.post("/api/projects", json={"origin": origin, "name": "m"}, headers=beta)
        _refused(taken, 403, "inside Errands' own data directory")
    assert client.get("/api/projects", headers=beta).json() == []

    # Beta's own repository in the allowed directory is fine; Alpha may add its own again.
    own = tmp_path / "beta-repo"
    run_git(tmp_path, "clone", "-q", str(sample_repo), str(own))
    added = client.post("/api/projects", json={"origin": f"{own}/", "name": "b"}, headers=beta)
    assert added.status_code == 201, added.text
    assert added.json()["origin"] == str(own)  # stored canonical
    alpha = world.bearer(world.owner_token)
    again = client.post(
        "/api/projects", json={"origin": str(tmp_path / "link"), "name": "a2"}, headers=alpha
    )
    assert again.status_code == 201, again.text
    assert again.json()["origin"] == str(sample_repo)
    # And now Alpha cannot take Beta's.
    taken = client.post("/api/projects", json={"origin": str(own), "name": "a3"}, headers=alpha)
    _refused(taken, 409, "another organization")


def test_local_paths_only_where_the_administrator_allows(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client = world.client()
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "repo"
    elsewhere.mkdir()
    run_git(elsewhere, "init", "-q", "-b", "main")
    for token in (world.owner_token, world.outsider_token):
        for origin in (
            str(elsewhere),
            f"file://{elsewhere}",
            str(elsewhere / "missing"),  # refused the same way: no probing of the disk
            "/etc",
        ):
            refused = client.post(
                "/api/projects", json={"origin": origin, "name": "e"}, headers=world.bearer(token)
            )
            _refused(refused, 403, "ERRANDS_LOCAL_ORIGINS")


def test_by_default_only_the_machines_user_attaches_local_repositories(
    home: Path, sample_repo: Path
) -> None:
    """No ERRANDS_LOCAL_ORIGINS: with accounts, the server attaches no local repository; the
    CLI on the machine (a fresh install's `errands project add ~/src/app`) still does."""
    settings = settings_for(
        home,
        "http://127.0.0.1:9/v1",
        secret_key="test-secret-key-0123456789",
        github_token="ghp_server-own-token-0123456789",
        github_api_url="https://github.example.test/api/v3",
    )
    app = create_app(settings)
    with TestClient(app, base_url=BASE) as local:
        owner, me = sign_up(app, email="owner@alpha.test", org_name="Alpha")
        auth = {"Authorization": f"Bearer {token_of(owner, me['csrf_token'], 'ci')['token']}"}
        refused = local.post("/api/projects", json={"origin": str(sample_repo)}, headers=auth)
        _refused(refused, 403, "ERRANDS_LOCAL_ORIGINS")
        # A plain git URL on the configured GitHub would get the server's token: refused
        # before anything is fetched, pointing at the GitHub projects route.
        on_github = local.post(
            "/api/projects",
            json={"origin": "https://github.example.test/acme/private.git"},
            headers=auth,
        )
        _refused(on_github, 403, "POST /api/github/projects")
        assert local.get("/api/projects", headers=auth).json() == []

    env = {
        **os.environ,
        "ERRANDS_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    cli = subprocess.run(
        [sys.executable, "-m", "errands.cli", "project", "add", str(sample_repo), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert str(sample_repo) in cli.stdout


def test_a_github_repository_needs_a_member_who_may_write_to_it(
    home: Path, github_repo_dir: Path
) -> None:
    fake = FakeGitHub()
    fake.add_oauth_app(CLIENT_ID, CLIENT_SECRET)
    fake.personal_tokens.add("ghp_server-own-token-0123456789")
    fake.add_repo("acme/calc", github_repo_dir)
    fake.set_permission("acme/calc", "octocat", "read")
    with fake.serve():
        settings = settings_for(
            home,
            "http://127.0.0.1:9/v1",
            secret_key="test-secret-key-0123456789",
            github_api_url=fake.base_url,
            github_web_url=fake.base_url,
            github_oauth_client_id=CLIENT_ID,
            github_oauth_client_secret=CLIENT_SECRET,
            github_token="ghp_server-own-token-0123456789",
            port=free_port(),
        )
        with serving(settings) as url:
            fake.sign_in_as("octocat", user_id=583231, email="octo@example.test")
            browser, done = sign_in(url, fake)
            assert done.status_code == 303, done.text
            csrf = {"X-CSRF-Token": browser.get("/api/me").json()["csrf_token"]}
            body = {"repository": "acme/calc"}
            read_only = browser.post("/api/github/projects", json=body, headers=csrf)
            _refused(read_only, 403, "@octocat has no write access to acme/calc")

            # A member without a linked GitHub account cannot use the server's access.
            invited = browser.post(
                "/api/invitations", json={"email": "m@alpha.test", "role": "owner"}, headers=csrf
            )
            assert invited.status_code == 201, invited.text
            code = invited.json()["link"].split("code=")[1]
            member = httpx.Client(base_url=url, timeout=20)
            joined = member.post(
                "/api/auth/signup",
                json={
                    "email": "m@alpha.test",
                    "password": "correct horse battery",
                    "invite_code": code,
                },
            )
            assert joined.status_code == 201, joined.text
            unlinked = member.post(
                "/api/github/projects",
                json=body,
                headers={"X-CSRF-Token": joined.json()["csrf_token"]},
            )
            _refused(unlinked, 403, "GitHub account linked")

            fake.set_permission("acme/calc", "octocat", "write")
            added = browser.post("/api/github/projects", json=body, headers=csrf)
            assert added.status_code == 201, added.text
