"""The two set-ups every chaos test runs on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.services import postgres_url, redis_queue


@pytest.fixture(params=["sqlite", "postgres+redis"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            yield {"database_url": None, "redis": None, "shared_home": True, "bare": False}
        else:
            url = stack.enter_context(postgres_url())
            redis_url, queue = stack.enter_context(redis_queue())
            yield {
                "database_url": url,
                "redis": (redis_url, queue),
                "shared_home": False,
                "bare": True,
            }
