"""The web app over real HTTP (no browser): errors for people and for programs, forms with
bad input, the guard, JSON on request, and review actions that need no JavaScript."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import escape, unescape
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from errands.testing.scripted_llm import ScriptedLLM
from tests.conftest import run_git
from tests.support import CalcScript, running_server, settings_for, to_review

HTML = {"Accept": "text/html,application/xhtml+xml"}
JSON = {"Accept": "application/json"}


@pytest.fixture
def server(home: Path) -> Iterator[str]:
    # No model is reachable: nothing here needs one.
    with running_server(settings_for(home, "http://127.0.0.1:9/v1")) as url:
        yield url


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30)


def test_unknown_ids_get_a_clear_page_or_json(server: str) -> None:
    client = _client(server)
    for path, message in [
        ("/tasks/999", "Task 999 does not exist."),
        ("/tasks/999/review", "Task 999 does not exist."),
        ("/projects/nope", "Project 'nope' does not exist."),
        ("/nowhere", "There is no page at this address."),
    ]:
        page = client.get(path, headers=HTML)
        assert page.status_code == 404, path
        assert page.headers["content-type"].startswith("text/html")
        assert message in unescape(page.text)
        assert "Traceback" not in page.text
        data = client.get(path, headers=JSON)
        assert data.status_code == 404
        assert data.json()["error"]["code"] == "not_found"
    # A malformed id is a clear 422, not a stack trace.
    page = client.get("/tasks/abc", headers=HTML)
    assert page.status_code == 422
    assert "not valid" in page.text
    # The API answers JSON whatever the client accepts.
    api = client.get("/api/tasks/999", headers=HTML)
    assert api.status_code == 404
    assert api.json()["error"]["message"] == "Task 999 does not exist."


def test_bad_forms_say_what_is_wrong(server: str, sample_repo: Path) -> None:
    client = _client(server)
    page = client.post("/tasks/new", data={"title": "x"}, headers=HTML)
    assert page.status_code == 422
    assert "Choose the project this task is for." in page.text

    page = client.post("/projects/new", data={"origin": "/definitely/not/a/repo"}, headers=HTML)
    assert page.status_code in (404, 422)
    assert "/definitely/not/a/repo" in page.text
    assert 'value="/definitely/not/a/repo"' in page.text  # the form keeps what was typed

    added = client.post("/projects/new", data={"origin": str(sample_repo)}, headers=HTML)
    assert added.status_code == 303
    assert added.headers["location"] == "/projects/calc"

    page = client.post("/tasks/new", data={"project": "calc", "title": "  "}, headers=HTML)
    assert page.status_code in (400, 422)
    assert "A task needs a title." in page.text or "ERRANDS_MODEL" in page.text

    edit = client.post("/projects/calc", data={"sandbox_backend": "docker"}, headers=HTML)
    assert edit.status_code == 422
    assert "sandbox must be one of" in edit.text
    edit = client.post("/projects/calc", data={"executor": "aider"}, headers=HTML)
    assert edit.status_code == 422
    assert "Unknown executor" in edit.text and "aider" in edit.text

    page = client.post("/tasks/999/answer", data={"question": "1", "option": "1"}, headers=HTML)
    assert page.status_code == 404
    assert "Task 999 does not exist." in page.text


def test_projects_are_edited_through_their_form(server: str, sample_repo: Path) -> None:
    client = _client(server)
    assert client.post("/projects/new", data={"origin": str(sample_repo)}).status_code == 303
    saved = client.post(
        "/projects/calc",
        data={
            "verify_commands": "pytest -q\n\nruff check .\n",
            "setup_commands": "pip install -e .",
            "setup_network": "on",
            "setup_hosts": "pypi.org:443\n\nMirror.LAN:8080\n",
            "sandbox_backend": "none",
            "base_branch": "main",
            "executor": "claude-code",
            "revise_executor": "native",
            "lean_after_hours": "2.5",
        },
    )
    assert saved.status_code == 303
    project = client.get("/api/projects/calc").json()
    assert project["lean_after_hours"] == 2.5
    assert project["setup_hosts"] == ["mirror.lan:8080", "pypi.org:443"]
    assert project["effective"]["setup_hosts"] == ["mirror.lan:8080", "pypi.org:443"]
    bad = client.patch("/api/projects/calc", json={"setup_hosts": ["pypi.org"]})
    assert bad.status_code == 422 and "not host:port" in bad.text
    assert client.get("/api/projects/calc").json()["setup_hosts"] == project["setup_hosts"]
    assert (project["executor"], project["revise_executor"]) == ("claude-code", "native")
    assert project["effective"]["executor"] == "claude-code"
    assert project["verify_commands"] == ["pytest -q", "ruff check ."]
    assert project["setup_commands"] == ["pip install -e ."]
    assert project["setup_network"] is True
    assert project["sandbox_backend"] == "none"
    assert project["auto_execute"] is False  # the checkbox was left unticked
    page = client.get("/projects/calc", headers=HTML)
    assert "ruff check ." in page.text
    assert "openai:scripted-model" in page.text  # the model of each phase
    assert '<option value="claude-code" selected>' in page.text  # the executor select
    assert 'name="lean_after_hours" type="number"' in page.text and 'value="2.5"' in page.text
    for wrong in ("soon", "0", "nan"):
        refused = client.post("/projects/calc", data={"lean_after_hours": wrong}, headers=HTML)
        assert refused.status_code == 422 and "hours" in refused.text, (wrong, refused.text)
    assert client.get("/api/projects/calc").json()["lean_after_hours"] == 2.5
    # Emptying a list hands it back to the repository's file and detection.
    client.post("/projects/calc", data={"auto_execute": "1"})
    assert client.get("/api/projects/calc").json()["verify_commands"] is None
    assert client.get("/api/projects/calc").json()["effective"]["executor"] == "native"
    assert client.get("/api/projects/calc").json()["lean_after_hours"] is None  # field empty
    assert client.post("/projects/calc/reindex").status_code == 303
    # JSON clients of the page URLs get data.
    assert client.get("/projects", headers=JSON).json()[0]["name"] == "calc"
    assert client.get("/projects/calc", headers=JSON).json()["name"] == "calc"
    assert client.get("/", headers=JSON).json() == []


def test_links_and_redirects_reach_a_project_whose_name_means_something_in_a_url(
    server: str, sample_repo: Path
) -> None:
    """A project name may hold ``#``, ``?``, ``&``, ``%`` or spaces (only ``/`` and digits
    alone are refused): every link and redirect to it must still reach it, not a project
    named by its part before the ``?`` or a fragment."""
    client = _client(server)
    name = "calc #2?x=1&y %41"
    added = client.post("/projects/new", data={"origin": str(sample_repo), "name": name})
    assert added.status_code == 303
    assert client.get(added.headers["location"]).status_code == 200
    saved = client.post(added.headers["location"], data={"base_branch": "main"})
    assert saved.status_code == 303
    page = client.get(saved.headers["location"])
    assert page.status_code == 200 and "Saved" in page.text
    reindexed = client.post(next(a for a in _hrefs(page.text, "action") if a.endswith("/reindex")))
    assert reindexed.status_code == 303
    assert client.get(reindexed.headers["location"]).status_code == 200
    # Every link the project pages and the board make to it names it whole.
    project_id = client.get("/api/projects").json()[0]["id"]
    for listing in ("/projects", f"/?project={project_id}", saved.headers["location"]):
        links = [
            h
            for h in _hrefs(client.get(listing).text, "href")
            if "project=" in h or (h.startswith("/projects/") and h != "/projects/new")
        ]
        assert links, listing
        for href in links:
            followed = client.get(href)
            assert followed.status_code == 200, (listing, href)
            assert unescape(name) in unescape(followed.text), (listing, href)
            if "?project=" in href:  # the board and the new-task form, set to it
                assert f"selected>{escape(name)}</option>" in followed.text, (listing, href)


def _hrefs(html: str, attribute: str) -> list[str]:
    return [unescape(m) for m in re.findall(rf'{attribute}="([^"]*)"', html)]


def test_the_guard_covers_forms_and_the_chat_socket(server: str, sample_repo: Path) -> None:
    client = _client(server)
    refused = client.post(
        "/projects/new",
        data={"origin": str(sample_repo)},
        headers={"Origin": "http://evil.example", **HTML},
    )
    assert refused.status_code == 403
    assert client.get("/api/projects").json() == []
    same_site = client.post(
        "/projects/new", data={"origin": str(sample_repo)}, headers={"Origin": server}
    )
    assert same_site.status_code == 303

    ws_url = server.replace("http://", "ws://") + "/tasks/1/chat"
    with pytest.raises(InvalidStatus):
        connect(ws_url, origin=Origin("http://evil.example"), open_timeout=10)
    with connect(ws_url, origin=Origin(server), open_timeout=10) as socket:
        reply = socket.recv(timeout=10)
    assert "Task 1 does not exist." in str(reply)


def test_review_without_a_browser(sample_repo: Path, home: Path) -> None:
    """Comment with a suggestion, apply it as a commit, expand context, JSON of the diff."""
    with (
        ScriptedLLM(CalcScript()) as llm,
        running_server(settings_for(home, llm.base_url)) as url,
    ):
        client = _client(url)
        task_id, task = to_review(client, sample_repo)
        review = client.get(f"/tasks/{task_id}/review?view=all&layout=split", headers=HTML)
        assert review.status_code == 200
        assert 'class="diff split"' in review.text
        assert client.get(f"/tasks/{task_id}/review", headers=JSON).json()["files"][0]["path"]

        # The unchanged lines of a file, highlighted, for the expand buttons.
        lines = client.get(
            f"/tasks/{task_id}/review/lines",
            params={"path": "calc.py", "rev": "tip", "start": 1, "end": 2},
        ).json()
        assert lines["start"] == 1 and len(lines["lines"]) == 2
        assert "add" in lines["lines"][0]
        missing = client.get(
            f"/tasks/{task_id}/review/lines",
            params={"path": "nope.py", "rev": "tip", "start": 1},
            headers=JSON,
        )
        assert missing.status_code == 404

        # A suggestion with replacement code on "return a * b" (new line 6 of subtask 1).
        made = client.post(
            f"/tasks/{task_id}/review/comments",
            data={
                "path": "calc.py",
                "line": "6",
                "side": "new",
                "kind": "suggestion",
                "body": "Name the product.",
                "suggestion": "    product = a * b\n    return product",
                "subtask": "1",
                "back": f"/tasks/{task_id}/review?view=subtask&subtask=1",
            },
        )
        assert made.status_code == 303, made.text
        assert made.headers["location"].startswith(f"/tasks/{task_id}/review?view=subtask")
        comment = client.get(f"/api/tasks/{task_id}/comments").json()[0]
        assert "```suggestion" in comment["body"]

        applied = client.post(f"/tasks/{task_id}/review/comments/{comment['id']}/apply")
        assert applied.status_code == 303, applied.text
        task = client.get(f"/api/tasks/{task_id}").json()
        assert [s["origin"] for s in task["subtasks"]] == ["plan", "plan", "suggestion"]
        assert task["comments"][0]["resolved"] is True
        sha = task["subtasks"][2]["commit_sha"]
        calc = run_git(sample_repo, "show", f"{sha}:calc.py")
        assert "    product = a * b\n    return product\n" in calc
        assert run_git(sample_repo, "rev-parse", task["branch"]).strip() == sha  # published
        again = client.post(f"/tasks/{task_id}/review/comments/{comment['id']}/apply", headers=HTML)
        assert again.status_code == 409  # the lines changed: it was applied already
        assert "changed since the suggestion" in again.text

        # Bad review forms come back with the reason.
        page = client.post(
            f"/tasks/{task_id}/review/comments",
            data={"path": "calc.py", "line": "x", "body": "hm"},
            headers=HTML,
        )
        assert page.status_code == 422
        assert "The line must be a number" in page.text
        page = client.post(
            f"/tasks/{task_id}/review/comments",
            data={"path": "README.md", "line": "1", "body": "hm"},
            headers=HTML,
        )
        assert page.status_code == 422
        assert "README.md is not among the files this task changed." in page.text
        page = client.post(f"/tasks/{task_id}/review/request-changes", headers=HTML)
        assert page.status_code == 409
        assert "no open review comments" in page.text
        assert llm.script_errors == []
