"""Throttling of password guessing: sign-in (API and form) and password-reset codes.

Each account (by email address, whether or not it exists) and each client address counts
its failed attempts in a row. Past a number of free attempts, the next attempt must wait:
1 second, doubling with each further failure, capped at ``max_delay`` (a few minutes), so an
attacker can slow a real user's sign-in down but never lock them out for long. An attempt
that comes too early is refused with 429 and Retry-After without checking the password (it
neither counts nor costs a password hash). A successful sign-in clears the account's count;
a count nobody added to for an hour is forgotten.

The counts live in the store (``sign_in_throttle``), so every server process sees the same
ones, and an attempt is counted as failed *before* the password is checked (and taken back
when it was right): guesses sent all at once cannot slip past the count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from errands.accounts import crypto
from errands.accounts.errors import TooManyAttempts
from errands.settings import Settings
from errands.store import Database, SignInThrottle

FIRST_DELAY = timedelta(seconds=1)
# A count nobody added to for this long is forgotten (and its row deleted).
FORGET_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class Key:
    kind: Literal["account", "address"]
    digest: str  # only a hash is stored: addresses and mistyped emails are nobody's business
    free: int  # failures in a row before attempts must wait


@dataclass(frozen=True)
class Rules:
    free_attempts: int
    address_free_attempts: int
    max_delay: timedelta

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(
            free_attempts=settings.sign_in_free_attempts,
            address_free_attempts=settings.sign_in_address_free_attempts,
            max_delay=timedelta(seconds=settings.sign_in_max_delay),
        )

    def account(self, email: str) -> Key:
        return Key("account", crypto.digest(f"account:{email.strip().lower()}"), self.free_attempts)

    def address(self, address: str) -> Key:
        return Key("address", crypto.digest(f"address:{address}"), self.address_free_attempts)

    def delay(self, failures: int, free: int) -> timedelta:
        """The wait after ``failures`` failed attempts in a row: none for the free ones, then
        1 s, 2 s, 4 s, … up to max_delay."""
        if failures < free:
            return timedelta(0)
        doublings = min(failures - free, 40)  # 2**40 seconds is past any cap
        grown: timedelta = FIRST_DELAY * (1 << doublings)
        return min(grown, self.max_delay)


def admit(db: Database, rules: Rules, keys: Sequence[Key], now: datetime) -> None:
    """Let one attempt through, counted as failed until ``succeeded`` says otherwise, or
    raise TooManyAttempts when one of the keys must still wait."""
    ordered = sorted(keys, key=lambda k: k.digest)  # one lock order: no deadlock
    with db.session() as session:
        session.execute(
            delete(SignInThrottle).where(
                SignInThrottle.last_attempt_at < now - FORGET_AFTER,
                or_(SignInThrottle.blocked_until.is_(None), SignInThrottle.blocked_until <= now),
            )
        )
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        session.execute(
            insert(SignInThrottle)
            .values([{"key": k.digest, "failures": 0, "last_attempt_at": now} for k in ordered])
            .on_conflict_do_nothing(index_elements=["key"])
        )
        rows = {
            row.key: row
            for row in session.scalars(
                select(SignInThrottle)
                .where(SignInThrottle.key.in_([k.digest for k in ordered]))
                .order_by(SignInThrottle.key)
                .with_for_update()
            )
        }
        waits = [
            row.blocked_until - now
            for row in rows.values()
            if row.blocked_until is not None and row.blocked_until > now
        ]
        if waits:
            seconds = max(1, math.ceil(max(waits).total_seconds()))
            raise TooManyAttempts(
                f"Too many failed attempts: try again in {seconds} seconds.", seconds
            )
        for key in ordered:
            row = rows[key.digest]
            row.failures += 1
            row.last_attempt_at = now
            wait = rules.delay(row.failures, key.free)
            row.blocked_until = now + wait if wait else None


def succeeded(db: Database, rules: Rules, keys: Sequence[Key]) -> None:
    """The attempt ``admit`` let through was right: the account's count starts again; the
    address gets back the one failure counted in advance (only that: an attacker signing in
    to an account of their own between guesses must not wipe their address's count)."""
    with db.session() as session:
        for key in sorted(keys, key=lambda k: k.digest):
            row = session.get(SignInThrottle, key.digest, with_for_update=True)
            if row is None:
                continue
            if key.kind == "account":
                session.delete(row)
                continue
            row.failures = max(0, row.failures - 1)
            wait = rules.delay(row.failures, key.free)
            row.blocked_until = row.last_attempt_at + wait if wait else None
