"""The REST client and App auth against the fake GitHub server over real HTTP: pagination,
rate limits and back-off, installation tokens cached, narrowed and refreshed."""

from __future__ import annotations

import time

import pytest

from errands.github.auth import GitHubApp, InstallationToken
from errands.github.client import GitHubClient, Throttle
from errands.github.errors import GitHubError, RateLimited
from errands.github.rest import RepoAPI
from errands.testing.fake_github import FakeGitHub
from tests.github.conftest import APP_ID, INSTALLATION, REPO, KeyPair


class Clock:
    """Time for the client: sleeps are recorded and advance the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def repo_api(fake: FakeGitHub, clock: Clock, *, max_wait: float = 600.0) -> RepoAPI:
    fake.personal_tokens.add("github_pat_test")
    client = GitHubClient(
        fake.base_url,
        lambda: "Bearer github_pat_test",
        throttle=Throttle(max_wait=max_wait, sleep=clock.sleep, clock=clock),
    )
    return RepoAPI(client, REPO)


def test_pagination_follows_link_headers(fake_github: FakeGitHub) -> None:
    fake_github.max_per_page = 2
    for n in range(5):
        fake_github.add_issue(REPO, f"Issue {n}", "body")
    fake_github.repos[REPO].pulls[99] = {}  # numbers are shared; the listing skips PRs
    fake_github.repos[REPO].issues[6] = {
        **fake_github.repos[REPO].issues[1],
        "number": 6,
        "pull_request": {"url": "x"},
    }
    api = repo_api(fake_github, Clock())
    titles = [i["title"] for i in api.open_issues()]
    assert titles == [f"Issue {n}" for n in range(5)]
    pages = [p for m, p in fake_github.requests if p == f"/repos/{REPO}/issues"]
    assert len(pages) == 3  # 6 items, 2 per page


@pytest.mark.parametrize(
    ("status", "headers", "message", "expected_wait"),
    [
        (403, {"retry-after": "7"}, "You have exceeded a secondary rate limit", 7.0),
        (429, {"retry-after": "3"}, "Too many requests", 3.0),
        (429, {}, "Too many requests", 60.0),
        (403, {}, "You have exceeded a secondary rate limit.", 60.0),
    ],
)
def test_rate_limits_are_waited_out(
    fake_github: FakeGitHub,
    status: int,
    headers: dict[str, str],
    message: str,
    expected_wait: float,
) -> None:
    clock = Clock()
    api = repo_api(fake_github, clock)
    fake_github.fail_next("GET", r"^/repos/acme/calc$", status, headers=headers, message=message)
    assert api.repository()["full_name"] == REPO
    assert clock.sleeps == [expected_wait]


def test_primary_limit_waits_until_the_reset(fake_github: FakeGitHub) -> None:
    clock = Clock()
    api = repo_api(fake_github, clock)
    reset = int(clock.now) + 42
    fake_github.fail_next(
        "GET",
        r"^/repos/acme/calc$",
        403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    api.repository()
    assert len(clock.sleeps) == 1
    assert 42 <= clock.sleeps[0] <= 44


def test_secondary_limits_back_off_longer_each_time(fake_github: FakeGitHub) -> None:
    clock = Clock()
    api = repo_api(fake_github, clock, max_wait=10_000)
    fake_github.fail_next("GET", r"^/repos/acme/calc$", 429, times=3)
    api.repository()
    assert clock.sleeps == [60.0, 120.0, 240.0]


def test_a_wait_beyond_the_limit_fails_with_when_to_retry(fake_github: FakeGitHub) -> None:
    clock = Clock()
    api = repo_api(fake_github, clock, max_wait=30)
    fake_github.fail_next("GET", r"^/repos/acme/calc$", 403, headers={"retry-after": "3600"})
    with pytest.raises(RateLimited) as caught:
        api.repository()
    assert caught.value.wait == 3600
    assert caught.value.retryable
    assert clock.sleeps == []


def test_a_plain_403_is_not_retried(fake_github: FakeGitHub) -> None:
    clock = Clock()
    api = repo_api(fake_github, clock)
    fake_github.fail_next("GET", r"^/repos/acme/calc$", 403, message="Must have admin rights")
    with pytest.raises(GitHubError) as caught:
        api.repository()
    assert caught.value.http_status == 403
    assert "admin rights" in caught.value.message
    assert clock.sleeps == []


def test_server_errors_are_retried_with_backoff(fake_github: FakeGitHub) -> None:
    clock = Clock()
    api = repo_api(fake_github, clock)
    fake_github.fail_next("GET", r"^/repos/acme/calc$", 502, message="Server Error", times=2)
    assert api.repository()["full_name"] == REPO
    assert clock.sleeps == [2.0, 4.0]


def test_installation_tokens_are_narrowed_cached_and_refreshed(
    fake_github: FakeGitHub, app_key: KeyPair
) -> None:
    clock = Clock()
    app = GitHubApp(APP_ID, app_key.private, fake_github.base_url, clock=clock)
    credentials = InstallationToken(app, app.installation_for(REPO), "calc")
    assert credentials.installation_id == INSTALLATION
    first = credentials.token()
    assert credentials.token() == first  # cached
    assert fake_github.token_requests == [{"installation": INSTALLATION, "repositories": ["calc"]}]
    # 55 minutes later the hour-long token is within the 5-minute margin: a new one.
    clock.now += 55 * 60 + 1
    second = credentials.token()
    assert second != first
    assert len(fake_github.token_requests) == 2
    # The narrowed token works on its repository and nowhere else.
    client = GitHubClient(fake_github.base_url, lambda: f"Bearer {second}")
    assert client.json("GET", f"/repos/{REPO}")["full_name"] == REPO
    fake_github.add_repo("acme/other", fake_github.repos[REPO].git_dir)
    with pytest.raises(GitHubError) as caught:
        client.json("GET", "/repos/acme/other")
    assert caught.value.http_status == 401


def test_a_revoked_token_is_replaced_once(fake_github: FakeGitHub, app_key: KeyPair) -> None:
    app = GitHubApp(APP_ID, app_key.private, fake_github.base_url)
    credentials = InstallationToken(app, INSTALLATION, "calc")
    client = GitHubClient(
        fake_github.base_url,
        lambda: f"Bearer {credentials.token()}",
        on_unauthorized=credentials.invalidate,
    )
    fake_github.tokens.clear()  # GitHub no longer accepts the token we hold
    credentials.token()
    fake_github.tokens.clear()
    assert client.json("GET", f"/repos/{REPO}")["full_name"] == REPO
    assert len(fake_github.token_requests) == 2


def test_a_wrong_app_key_is_refused(fake_github: FakeGitHub) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    app = GitHubApp(APP_ID, other, fake_github.base_url)
    with pytest.raises(GitHubError) as caught:
        app.installation_token(INSTALLATION, "calc")
    assert caught.value.http_status == 401
