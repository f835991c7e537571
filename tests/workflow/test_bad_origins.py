"""An origin that cannot be a project is the user's mistake: 422 naming the problem, from
the API and the page, and nothing is stored."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from errands.web.app import create_app
from tests.support import settings_for

BASE = "http://127.0.0.1"


@pytest.fixture
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(
        create_app(settings_for(home, "http://127.0.0.1:9/v1")), base_url=BASE
    ) as client:
        yield client


@pytest.mark.parametrize(
    ("origin", "words"),
    [
        ("file:///nonexistent/repo.git", r"/nonexistent/repo\.git is not a git repository"),
        ("file://elsewhere.example/repo.git", "not a file:// URL of a repository on this machine"),
        (
            "http://127.0.0.1:1/x.git",
            r"Could not read the git repository at http://127\.0\.0\.1:1/x\.git",
        ),
        ("/nonexistent/" + "a" * 300, "is not a git repository"),  # a name past NAME_MAX
        ("x" * 5000, "at most 2,000 characters"),
        ("repo\x00.git", "without control characters"),
    ],
    ids=["file-missing", "file-other-host", "unreachable", "long-name", "5000-chars", "nul"],
)
def test_a_bad_origin_is_422_naming_it(client: TestClient, origin: str, words: str) -> None:
    api = client.post("/api/projects", json={"origin": origin})
    assert api.status_code == 422, api.text
    assert re.search(words, api.json()["error"]["message"])
    page = client.post("/projects/new", data={"origin": origin}, headers={"Origin": BASE})
    assert page.status_code == 422, page.text
    assert re.search(words, html.unescape(page.text))
    assert client.get("/api/projects").json() == []
