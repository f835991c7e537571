"""Sign in with GitHub: the OAuth web flow against a running server and the fake GitHub
(real HTTP on loopback both ways)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, select, text

from errands.accounts.access import SESSION_COOKIE
from errands.accounts.github_login import STATE_COOKIE
from errands.settings import Settings
from errands.store import Base
from errands.testing.fake_github import FakeGitHub
from errands.web.app import create_app
from tests.support import free_port, settings_for

CLIENT_ID = "Iv1.errands-test"
CLIENT_SECRET = "oauth-client-secret-0123456789"
PASSWORD = "correct horse battery"
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    github = FakeGitHub()
    github.add_oauth_app(CLIENT_ID, CLIENT_SECRET)
    with github.serve():
        yield github


def settings_with(home: Path, fake: FakeGitHub, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "github_api_url": fake.base_url,
        "github_web_url": fake.base_url,
        "github_oauth_client_id": CLIENT_ID,
        "github_oauth_client_secret": CLIENT_SECRET,
        "port": free_port(),
    }
    values.update(overrides)
    return settings_for(home, "http://127.0.0.1:9/v1", **values)


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The app on the port its settings name, so http://HOST:PORT is its public address."""
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def server(home: Path, fake: FakeGitHub) -> Iterator[str]:
    with serving(settings_with(home, fake)) as url:
        yield url


def start(url: str, fake: FakeGitHub) -> tuple[httpx.Client, str]:
    """Begin signing in; returns the browser and the callback URL the fake sends it to."""
    browser = httpx.Client(base_url=url, timeout=20)
    begun = browser.get("/login/github", headers=HTML)
    assert begun.status_code == 303, begun.text
    target = begun.headers["location"]
    parts = urlsplit(target)
    assert (
        f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{fake.base_url}/login/oauth/authorize"
    )
    query = parse_qs(parts.query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [f"{url}/login/github/callback"]
    assert query["scope"] == ["read:user user:email"]
    assert len(query["state"][0]) >= 32
    cookie = next(c for c in browser.cookies.jar if c.name == STATE_COOKIE)
    assert cookie.value != query["state"][0]  # only its hash
    assert cookie.has_nonstandard_attr("HttpOnly")
    approved = browser.get(target)
    assert approved.status_code == 302, approved.text
    return browser, approved.headers["location"]


def sign_in(url: str, fake: FakeGitHub) -> tuple[httpx.Client, httpx.Response]:
    browser, callback = start(url, fake)
    return browser, browser.get(callback, headers=HTML)


def me(browser: httpx.Client) -> dict[str, Any]:
    found = browser.get("/api/me")
    assert found.status_code == 200, found.text
    result: dict[str, Any] = found.json()
    return result


def no_session(browser: httpx.Client) -> None:
    assert SESSION_COOKIE not in browser.cookies
    status = browser.get("/api/auth/status")
    assert status.status_code == 200 and status.json()["signed_in"] is False


def test_first_user_via_github_is_owner_signs_in_again_and_the_token_stays_secret(
    home: Path, fake: FakeGitHub, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    login_page = httpx.get(f"{server}/login", headers=HTML)
    assert "Sign in with GitHub" in login_page.text and 'href="/login/github"' in login_page.text

    fake.sign_in_as("octocat", user_id=583231, email="Octo@Example.test", name="The Octocat")
    browser, done = sign_in(server, fake)
    assert done.status_code == 303 and done.headers["location"] == "/", done.text
    first = me(browser)
    assert first["email"] == "octo@example.test" and first["name"] == "The Octocat"
    assert first["org"]["role"] == "owner" and first["email_verified"] is True

    # Signed out (another browser), the linked GitHub account signs in as the same user.
    again, done = sign_in(server, fake)
    assert done.status_code == 303, done.text
    assert me(again)["id"] == first["id"]
    # ... even after changing its primary email on GitHub: the link is by GitHub id.
    fake.sign_in_as("octocat", user_id=583231, email="new-address@example.test")
    third, done = sign_in(server, fake)
    assert done.status_code == 303, done.text
    assert me(third)["id"] == first["id"]

    # The access tokens GitHub issued appear nowhere: not in any table (events included),
    # not in any log record.
    issued = list(fake.oauth_tokens)
    assert len(issued) == 3
    engine = create_engine(f"sqlite:///{home / 'errands.db'}")
    with engine.connect() as conn:
        dump = "\n".join(
            repr(row)
            for table in Base.metadata.sorted_tables
            for row in conn.execute(select(table))
        )
        github_id = conn.execute(text("SELECT github_id, github_login FROM users")).one()
    engine.dispose()
    assert tuple(github_id) == (583231, "octocat")
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    for token in issued:
        assert token not in dump and token not in logged
    assert CLIENT_SECRET not in dump and CLIENT_SECRET not in logged


def test_an_existing_user_is_linked_by_verified_email_and_a_stranger_is_refused(
    fake: FakeGitHub, server: str
) -> None:
    signup = httpx.post(
        f"{server}/api/auth/signup",
        json={"email": "dev@example.test", "password": PASSWORD, "org_name": "Dev"},
    )
    assert signup.status_code == 201, signup.text

    # An unverified primary address links nothing.
    fake.sign_in_as("dev-gh", user_id=77, email="dev@example.test", verified=False)
    browser, refused = sign_in(server, fake)
    assert refused.status_code == 403 and "invitation" in refused.text
    no_session(browser)

    fake.sign_in_as("dev-gh", user_id=77, email="DEV@example.test")
    browser, done = sign_in(server, fake)
    assert done.status_code == 303, done.text
    linked = me(browser)
    assert linked["id"] == signup.json()["id"] and linked["org"]["role"] == "owner"
    # The password still works too.
    login = httpx.post(
        f"{server}/api/auth/login", json={"email": "dev@example.test", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text

    fake.sign_in_as("stranger", user_id=99, email="stranger@example.test")
    browser, refused = sign_in(server, fake)
    assert refused.status_code == 403, refused.text
    assert "No account here belongs to the GitHub user stranger" in refused.text
    assert "invitation" in refused.text
    no_session(browser)
    as_json = start(server, fake)
    refused_json = as_json[0].get(as_json[1])
    assert refused_json.status_code == 403 and refused_json.json()["error"]["code"] == "forbidden"


def test_a_missing_wrong_or_reused_state_signs_nobody_in(fake: FakeGitHub, server: str) -> None:
    fake.sign_in_as("octocat", user_id=583231, email="octo@example.test")
    browser, callback = start(server, fake)
    code = parse_qs(urlsplit(callback).query)["code"][0]

    missing = browser.get(f"/login/github/callback?code={code}", headers=HTML)
    assert missing.status_code == 400 and "start again" in missing.text
    wrong = browser.get(f"/login/github/callback?code={code}&state=not-the-state", headers=HTML)
    assert wrong.status_code == 400 and "does not match" in wrong.text
    no_session(browser)

    # Another browser (no state cookie) cannot use the callback either.
    other = httpx.Client(base_url=server)
    assert other.get(callback, headers=HTML).status_code == 400
    no_session(other)

    # The right browser succeeds once; replaying the callback with the old cookie fails.
    hashed = browser.cookies[STATE_COOKIE]
    done = browser.get(callback, headers=HTML)
    assert done.status_code == 303, done.text
    assert STATE_COOKIE not in browser.cookies
    replay = httpx.Client(base_url=server, cookies={STATE_COOKIE: hashed})
    replayed = replay.get(callback, headers=HTML)
    assert replayed.status_code == 400 and "used already" in replayed.text
    no_session(replay)


def test_a_wrong_client_secret_is_a_clear_error(
    home: Path, fake: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.sign_in_as("octocat", user_id=583231, email="octo@example.test")
    wrong = "not-the-client-secret-999"
    with serving(settings_with(home, fake, github_oauth_client_secret=wrong)) as url:
        browser, failed = sign_in(url, fake)
        assert failed.status_code == 502
        assert (
            "incorrect_client_credentials" in failed.text and "Nobody was signed in" in failed.text
        )
        no_session(browser)
    assert wrong not in "\n".join(r.getMessage() for r in caplog.records)


def test_not_configured_is_404_and_the_login_page_has_no_button(home: Path) -> None:
    with serving(settings_for(home, "http://127.0.0.1:9/v1", port=free_port())) as url:
        page = httpx.get(f"{url}/login/github", headers=HTML)
        assert page.status_code == 404 and "GitHub sign-in is not configured" in page.text
        api = httpx.get(f"{url}/login/github", headers={"Accept": "application/json"})
        assert api.status_code == 404 and "GitHub sign-in is not configured" in api.text
        callback = httpx.get(f"{url}/login/github/callback?code=x&state=y")
        assert callback.status_code == 404
        assert "Sign in with GitHub" not in httpx.get(f"{url}/login", headers=HTML).text
