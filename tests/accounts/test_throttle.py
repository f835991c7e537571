"""Password guessing is throttled per account and per client address, with delays that grow
and stop at a cap; the counts live in the store, so every server process applies them. The
app's clock is injected: the tests move it instead of sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from errands.accounts import throttle
from errands.accounts.errors import TooManyAttempts
from errands.settings import Settings
from errands.store import Database
from errands.store.models import utcnow
from errands.web.app import create_app
from tests.services import postgres_url
from tests.support import settings_for

from .conftest import BASE, PASSWORD, invite_code

WRONG = "not the password at all"
MAX_DELAY = 300


@dataclass
class Clock:
    now: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Site:
    settings: Settings
    clock: Clock
    app: FastAPI
    victim: str = "victim@alpha.test"
    bystander: str = "bystander@alpha.test"

    def client(self, address: str, app: FastAPI | None = None) -> TestClient:
        return TestClient(app or self.app, base_url=BASE, client=(address, 50000))


@pytest.fixture
def site(home: Path) -> Iterator[Site]:
    settings = settings_for(home, "http://127.0.0.1:9/v1", sign_in_max_delay=MAX_DELAY)
    clock = Clock()
    app = create_app(settings, clock=clock)
    with TestClient(app, base_url=BASE) as owner:
        me = owner.post(
            "/api/auth/signup", json={"email": "victim@alpha.test", "password": PASSWORD}
        )
        assert me.status_code == 201, me.text
        code = invite_code(owner, me.json()["csrf_token"], "bystander@alpha.test", "member")
        joined = TestClient(app, base_url=BASE).post(
            "/api/auth/signup",
            json={"email": "bystander@alpha.test", "password": PASSWORD, "invite_code": code},
        )
        assert joined.status_code == 201, joined.text
        yield Site(settings, clock, app)


def login(client: TestClient, email: str, password: str) -> tuple[int, int | None]:
    answer = client.post("/api/auth/login", json={"email": email, "password": password})
    retry = answer.headers.get("retry-after")
    if answer.status_code == 429:
        assert answer.json()["error"]["code"] == "too_many_attempts"
        assert retry is not None
    return answer.status_code, int(retry) if retry else None


def guess_wrong(site: Site, client: TestClient, email: str, times: int) -> list[int]:
    """``times`` wrong passwords actually checked, waiting (on the clock) whenever told to;
    returns the waits asked for."""
    waits = []
    checked = 0
    while checked < times:
        status, retry = login(client, email, WRONG)
        if status == 429:
            assert retry is not None
            waits.append(retry)
            site.clock.advance(retry)
            continue
        assert status == 401
        checked += 1
    return waits


def test_fifty_wrong_passwords_then_the_right_one_waits_a_bounded_time(site: Site) -> None:
    attacker = site.client("203.0.113.7")
    waits = guess_wrong(site, attacker, site.victim, 50)
    # The free attempts, then 1 s doubling with each failure, capped at the setting.
    assert waits[:9] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert set(waits[9:]) == {MAX_DELAY}

    # The right password now is refused too, without being checked, here and through
    # another server process on the same store.
    assert login(attacker, site.victim, PASSWORD) == (429, MAX_DELAY)
    other_process = create_app(site.settings, clock=site.clock)
    with site.client("203.0.113.7", other_process) as elsewhere:
        assert login(elsewhere, site.victim, PASSWORD) == (429, MAX_DELAY)
    form = attacker.post(
        "/login",
        data={"email": site.victim, "password": PASSWORD},
        headers={"Accept": "text/html"},
        follow_redirects=False,
    )
    assert form.status_code == 429 and form.headers["retry-after"] == str(MAX_DELAY)
    assert "try again in" in form.text

    site.clock.advance(MAX_DELAY - 1)
    assert login(attacker, site.victim, PASSWORD) == (429, 1)
    site.clock.advance(1)
    # The lockout ends after at most the cap: the real password works, and clears the count.
    assert login(attacker, site.victim, PASSWORD) == (200, None)
    assert login(site.client("198.51.100.1"), site.victim, WRONG) == (401, None)


def test_another_address_is_held_back_only_by_the_account_rule(site: Site) -> None:
    attacker = site.client("203.0.113.7")
    guess_wrong(site, attacker, site.victim, 25)  # past both the account's and the address's

    # The attacker's address waits, whichever account it tries next ...
    status, _ = login(attacker, site.bystander, PASSWORD)
    assert status == 429
    # ... while from another address, another account signs in at once, and the attacked
    # one waits at most the cap.
    colleague = site.client("198.51.100.1")
    assert login(colleague, site.bystander, PASSWORD) == (200, None)
    status, retry = login(colleague, site.victim, PASSWORD)
    assert status == 429 and retry is not None and retry <= MAX_DELAY


def test_spraying_many_accounts_from_one_address_is_held_back(site: Site) -> None:
    attacker = site.client("203.0.113.7")
    answers = [login(attacker, f"user{n}@alpha.test", WRONG)[0] for n in range(21)]
    assert answers == [401] * 20 + [429]
    # Signing in to an account of one's own between guesses does not wipe the address's count.
    site.clock.advance(1)
    assert login(attacker, site.bystander, PASSWORD) == (200, None)
    assert login(attacker, "user99@alpha.test", WRONG) == (429, 1)


def test_guesses_sent_at_once_are_counted_before_any_is_checked(site: Site) -> None:
    attacker = site.client("203.0.113.7")
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: login(attacker, site.victim, WRONG)[0], range(24)))
    # The clock does not move: exactly the free attempts were checked, whatever the order.
    assert sorted(statuses) == [401] * site.settings.sign_in_free_attempts + [429] * (
        24 - site.settings.sign_in_free_attempts
    )


def test_password_reset_codes_are_throttled_per_address(site: Site) -> None:
    attacker = site.client("203.0.113.7")
    body = {"code": "guessed-code", "password": "a new password 123"}
    answers = [
        attacker.post("/api/auth/password-reset/confirm", json=body).status_code
        for _ in range(site.settings.sign_in_address_free_attempts + 1)
    ]
    assert answers[-1] == 429 and set(answers[:-1]) == {422}
    page = attacker.post(
        "/reset/confirm", data=body, headers={"Accept": "text/html"}, follow_redirects=False
    )
    assert page.status_code == 429 and "retry-after" in page.headers


def test_postgres_counts_attempts_sent_at_once_before_any_is_checked() -> None:
    """The same rule on PostgreSQL, where concurrent attempts take row locks (SQLite has
    one writer): of many attempts at one instant, exactly the free ones are let through."""
    rules = throttle.Rules(
        free_attempts=5, address_free_attempts=20, max_delay=timedelta(seconds=300)
    )
    keys = [rules.account("victim@alpha.test"), rules.address("203.0.113.7")]
    now = utcnow()

    def attempt(_: int) -> bool:
        try:
            throttle.admit(db, rules, keys, now)
        except TooManyAttempts:
            return False
        return True

    with postgres_url() as url:
        db = Database(url)
        db.migrate()
        with ThreadPoolExecutor(max_workers=8) as pool:
            admitted = list(pool.map(attempt, range(24)))
        assert admitted.count(True) == rules.free_attempts
        # A right password after the wait clears the account's count: five free ones again.
        later = now + timedelta(seconds=1)
        throttle.admit(db, rules, keys, later)
        throttle.succeeded(db, rules, keys)
        account = [rules.account("victim@alpha.test")]
        for _ in range(rules.free_attempts):
            throttle.admit(db, rules, account, later)
        with pytest.raises(TooManyAttempts):
            throttle.admit(db, rules, account, later)
        db.dispose()
