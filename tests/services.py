"""Real PostgreSQL and Redis for the tests that need them, on loopback.

Each test gets its own database (created and dropped here) or its own Redis queue name, so
tests never see each other's rows. Where a service is not running the test is skipped, except
under ``ERRANDS_TEST_SERVICES=require`` (set by ``.ci/run``, which starts both): there a
missing service fails the run instead of hiding it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "ERRANDS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("ERRANDS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable: {exc}"
    if os.environ.get("ERRANDS_TEST_SERVICES") == "require":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def postgres_url() -> Iterator[str]:
    """A URL to a fresh, empty PostgreSQL database, dropped afterwards."""
    import psycopg

    admin = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"errands_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL", exc)
        raise
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_queue() -> Iterator[tuple[str, str]]:
    """(Redis URL, a queue name no other test uses); the queue's keys are removed after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
        raise
    name = f"errands-test-{uuid.uuid4().hex[:12]}"
    try:
        yield REDIS_URL, name
    finally:
        keys = list(client.scan_iter(f"*{name}*"))
        if keys:
            client.delete(*keys)
        client.close()
