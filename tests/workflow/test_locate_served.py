"""`locate` served by the running server (POST /api/projects/{project}/locate): a real
server on loopback answering from the project's query file it holds open, a re-index seen
by the next locate, hostile text refused or answered (never a 500, never logged), and
`errands locate --remote` asking it with the token `errands login` kept."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from errands import runtime
from errands.settings import Settings
from errands.workflow.code_index import index_file, locate_once, query_file
from errands.workflow.index import index_project
from tests.conftest import run_git
from tests.support import add_project, running_server, settings_for

TRACEBACK = 'Traceback (most recent call last):\n  File "/src/calc.py", line 2, in add\nTypeError'
MARKER = "zq-hostile-marker-7731"


def _index(settings: Settings, project_id: int) -> None:
    db = runtime.open_database(settings)
    try:
        index_project(settings, db, project_id, emit=lambda *_: None)
    finally:
        db.dispose()


def _commit(repo: Path, name: str, text: str) -> None:
    (repo / name).write_text(text)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", f"add {name}")


@dataclass
class _Served:
    settings: Settings
    url: str
    client: httpx.Client
    project_id: int


@contextmanager
def _serving(home: Path, sample_repo: Path) -> Iterator[_Served]:
    """A real server on loopback (no worker: the tests index when they choose) with the
    sample repository added as a project, not indexed yet."""
    settings = settings_for(home, "http://127.0.0.1:9/v1")
    with running_server(settings, embedded_worker=False) as url:
        client = httpx.Client(base_url=url, timeout=60)
        yield _Served(settings, url, client, add_project(client, sample_repo))


def _locate(client: httpx.Client, project: int | str, text: str, **extra: object) -> httpx.Response:
    return client.post(f"/api/projects/{project}/locate", json={"text": text, **extra})


def test_the_server_answers_locate_from_the_index_and_sees_each_reindex(
    home: Path, sample_repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with _serving(home, sample_repo) as served:
        settings, client, project_id = served.settings, served.client, served.project_id
        not_yet = _locate(client, project_id, TRACEBACK)
        assert not_yet.status_code == 422, not_yet.text
        error = not_yet.json()["error"]
        assert error["code"] == "invalid_input" and "no code index yet" in error["message"]
        assert f"errands index {project_id}" in error["message"]

        _index(settings, project_id)
        answered = _locate(client, "calc", TRACEBACK + MARKER, limit=3)
        assert answered.status_code == 200, answered.text
        ranked = answered.json()
        assert ranked[0]["path"] == "calc.py"
        assert any("traceback" in reason.lower() for reason in ranked[0]["reasons"])
        assert ranked[0]["symbols"][0] == {"name": "add", "kind": "function", "line": 1, "end": 2}
        # The same answer as a process reading the index itself (the CLI's).
        here = locate_once(home, project_id, TRACEBACK + MARKER, limit=3)
        assert here is not None and ranked == [hit.to_json() for hit in here]

        # The repository moves and is re-indexed (the query file updated in place): the next
        # locate answers from the new index.
        held = query_file(home, project_id).stat().st_ino
        _commit(sample_repo, "geometry.py", "def circle_area(radius):\n    return 3 * radius\n")
        _index(settings, project_id)
        assert query_file(home, project_id).stat().st_ino == held
        found = _locate(client, project_id, "circle_area of a radius").json()
        assert found[0]["path"] == "geometry.py"

        # Re-indexed from scratch (the query file written whole, renamed over the held one).
        _commit(sample_repo, "shapes.py", "def triangle_perimeter(a, b, c):\n    return a+b+c\n")
        index_file(home, project_id).unlink()
        _index(settings, project_id)
        assert query_file(home, project_id).stat().st_ino != held
        found = _locate(client, project_id, "triangle_perimeter").json()
        assert found[0]["path"] == "shapes.py"

        # The index gone: said so, not answered from the file still held.
        query_file(home, project_id).unlink()
        index_file(home, project_id).unlink()
        gone = _locate(client, project_id, "triangle_perimeter")
        assert gone.status_code == 422 and "no code index yet" in gone.text
    assert MARKER not in caplog.text  # the text is data: never logged


def test_bad_and_hostile_text_gets_a_clear_answer_never_a_500(
    home: Path, sample_repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with _serving(home, sample_repo) as served:
        client, project_id = served.client, served.project_id
        _index(served.settings, project_id)
        path = f"/api/projects/{project_id}/locate"
        refused = {
            "no text": {"limit": 3},
            "empty": {"text": ""},
            "blank": {"text": " \n\t "},
            "too long": {"text": "a" * 65_537},
            "not text": {"text": ["calc"]},
            "limit 0": {"text": "calc", "limit": 0},
            "limit 101": {"text": "calc", "limit": 101},
            "limit not a number": {"text": "calc", "limit": "ten"},
        }
        for what, body in refused.items():
            answer = client.post(path, json=body)
            assert answer.status_code == 422, (what, answer.text)
            assert answer.json()["error"]["code"] == "invalid_input", what
        not_json = client.post(path, content=b"{text", headers={"content-type": "application/json"})
        assert not_json.status_code == 400  # as every route answers a body that is not JSON
        assert not_json.json()["error"]["code"] == "malformed_json"

        hostile = [
            "a" * 65_536,  # the most there may be
            'File "' + "/x" * 20_000 + '.py", line 1\n' * 3,
            MARKER + "\x00 calc.add \x00 ' OR 1=1; DROP TABLE files; --",
            "calc.py\ud800 add \udfff",  # lone surrogates: not UTF-8
            "\u202e\ufeff calc \U0001f600 " + "\u0301" * 1000,
            "*" * 60_000,
            " ".join(f"name_{i}" for i in range(8_000)),
        ]
        for text in hostile:
            raw = json.dumps({"text": text, "limit": 100}).encode()  # ensure_ascii: \ud800 as is
            answer = client.post(path, content=raw, headers={"content-type": "application/json"})
            assert answer.status_code in (200, 422), (text[:60], answer.text[:300])
            fields = {"path", "score", "reasons", "symbols"}
            if answer.status_code == 200:
                assert all(set(hit) == fields for hit in answer.json())
            else:
                assert answer.json()["error"]["code"] == "invalid_input"
        still = client.post(path, json={"text": TRACEBACK}).json()
        assert still[0]["path"] == "calc.py"
    assert MARKER not in caplog.text


def _cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args],
        env={**os.environ, "ERRANDS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def test_cli_locate_remote_asks_the_server_with_the_stored_token(
    home: Path, sample_repo: Path, tmp_path: Path
) -> None:
    laptop = tmp_path / "laptop"  # holds only the login: the answer comes over HTTP
    with _serving(home, sample_repo) as served:
        url, client, project_id = served.url, served.client, served.project_id
        _index(served.settings, project_id)
        signup = client.post(
            "/api/auth/signup",
            json={
                "email": "dev@example.test",
                "password": "correct horse battery",
                "org_name": "Dev",
            },
        )
        token = client.post(
            "/api/tokens",
            json={"name": "laptop"},  # signed in: the client keeps the session's cookie
            headers={"X-CSRF-Token": signup.json()["csrf_token"]},
        ).json()["token"]
        cli = ["-m", "errands.cli", "locate"]
        not_logged_in = _cli(laptop, *cli, "calc", TRACEBACK, "--remote", check=False)
        assert not_logged_in.returncode == 1 and "errands login" in not_logged_in.stderr
        _cli(laptop, "-m", "errands.cli", "login", url, "--token", token)

        remote = json.loads(_cli(laptop, *cli, "calc", TRACEBACK, "--json", "--remote").stdout)
        local = json.loads(_cli(home, *cli, "calc", TRACEBACK, "--json").stdout)
        assert remote == local and remote[0]["path"] == "calc.py"
        table = _cli(laptop, *cli, "calc", "add in calc", "--remote").stdout
        assert "calc.py" in table and "add:1" in table
        piped = subprocess.run(
            [sys.executable, *cli, "calc", "-", "--remote", "--json", "--limit", "1"],
            input=TRACEBACK,
            env={**os.environ, "ERRANDS_HOME": str(laptop)},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert [hit["path"] for hit in json.loads(piped.stdout)] == ["calc.py"]
        missing = _cli(laptop, *cli, "nope", "x", "--remote", check=False)
        assert missing.returncode == 1 and "Project 'nope' does not exist" in missing.stderr
        too_many = _cli(laptop, *cli, "calc", "x", "--remote", "--limit", "500", check=False)
        assert too_many.returncode == 1 and "limit" in too_many.stderr
        # The remote path imports an HTTP client, not the index (numpy), the store or
        # pydantic-settings.
        imported = _cli(laptop, "-X", "importtime", *cli, "calc", TRACEBACK, "--remote")
        assert "calc.py" in imported.stdout
        for heavy in ("numpy", "errands.index", "sqlalchemy", "pydantic_settings", "httpx"):
            assert heavy not in imported.stderr, heavy
        # The token revoked: refused as `errands whoami` is.
        revoked = (laptop / "remote.toml").read_text().replace(token, "ert_revoked")
        (laptop / "remote.toml").write_text(revoked)
        refused = _cli(laptop, *cli, "calc", "x", "--remote", check=False)
        assert refused.returncode == 1 and "refused the token" in refused.stderr
    # The server gone: said so, no traceback.
    gone = _cli(laptop, *cli, "calc", "x", "--remote", check=False)
    assert gone.returncode == 1 and "Cannot reach" in gone.stderr, gone.stderr
    assert not (laptop / "errands.db").exists()
