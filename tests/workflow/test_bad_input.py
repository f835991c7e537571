"""Bad input gets a clear error and loses nothing: unknown ids, illegal transitions, a path
that is not a repository, a huge body, malformed requests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from errands.testing.scripted_llm import ScriptedLLM
from tests.support import (
    CalcScript,
    add_project,
    add_task,
    running_server,
    settings_for,
    wait_for_state,
)


@pytest.fixture
def client(home: Path) -> Iterator[httpx.Client]:
    with ScriptedLLM(CalcScript()) as llm, running_server(settings_for(home, llm.base_url)) as url:
        yield httpx.Client(base_url=url, timeout=30)


def error_of(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["message"]
    return error


def test_unknown_ids_are_404_with_a_message(client: httpx.Client) -> None:
    assert "Task 999 does not exist" in error_of(client.get("/api/tasks/999"), 404)["message"]
    for path in ("approve", "cancel", "request-changes", "retry", "execute"):
        assert error_of(client.post(f"/api/tasks/999/{path}"), 404)["code"] == "not_found"
    assert error_of(client.get("/api/tasks/999/diff"), 404)["code"] == "not_found"
    assert error_of(client.get("/api/tasks/999/events"), 404)["code"] == "not_found"
    assert error_of(client.get("/api/tasks/999/events/stream"), 404)["code"] == "not_found"
    assert error_of(client.get("/api/projects/999"), 404)["code"] == "not_found"
    missing_project = client.post("/api/tasks", json={"project": 42, "title": "x"})
    assert "Project 42 does not exist" in error_of(missing_project, 404)["message"]


def test_a_body_that_is_not_json_is_400_and_invalid_input_422(client: httpx.Client) -> None:
    not_json = client.post(
        "/api/projects", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert error_of(not_json, 400)["code"] == "malformed_json"  # as README and OpenAPI say
    no_title = client.post("/api/tasks", json={"project": 1})
    assert "title" in error_of(no_title, 422)["message"]
    assert error_of(client.get("/api/tasks/abc"), 422)["code"] == "invalid_input"
    assert error_of(client.get("/api/tasks", params={"state": "bogus"}), 422)["code"]


def test_a_project_name_the_paths_could_not_address_is_refused(
    client: httpx.Client, sample_repo: Path
) -> None:
    """Projects are named in URL paths (/api/projects/{id or name}/…): a name with a "/"
    could never be reached by name, and one of digits alone would read as an id."""
    for name in ("team/calc", "42"):
        refused = client.post("/api/projects", json={"origin": str(sample_repo), "name": name})
        assert "cannot" in error_of(refused, 422)["message"], name
    assert client.get("/api/projects").json() == []
    add_project(client, sample_repo)  # its own name, calc
    assert client.get("/api/projects/calc").json()["name"] == "calc"


def test_a_path_that_is_not_a_repository(client: httpx.Client, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    error = error_of(client.post("/api/projects", json={"origin": str(plain)}), 422)
    assert error["code"] == "not_a_git_repository"
    assert str(plain) in error["message"]
    missing = client.post("/api/projects", json={"origin": str(tmp_path / "nowhere")})
    assert error_of(missing, 422)["code"] == "not_a_git_repository"
    assert client.get("/api/projects").json() == []


def test_a_one_megabyte_body_is_refused_and_nothing_is_created(
    client: httpx.Client, sample_repo: Path
) -> None:
    project_id = add_project(client, sample_repo)
    huge = "x" * (1024 * 1024)
    response = client.post("/api/tasks", json={"project": project_id, "title": "t", "body": huge})
    error = error_of(response, 422)
    assert "1,048,576 characters" in error["message"] and "limit" in error["message"]
    assert client.get("/api/tasks").json() == []


def test_illegal_transitions_are_409(client: httpx.Client, sample_repo: Path) -> None:
    project_id = add_project(client, sample_repo, auto_execute=False)
    task_id = add_task(client, project_id)
    wait_for_state(client, task_id, "awaiting_answers")

    approve = error_of(client.post(f"/api/tasks/{task_id}/approve"), 409)
    assert "is awaiting answers; this needs it in review" in approve["message"]
    execute = error_of(client.post(f"/api/tasks/{task_id}/execute"), 409)
    assert execute["code"] == "illegal_transition"
    assert "'awaiting_answers' to 'executing'" in execute["message"]
    bad_option = client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 9})
    assert "options 1-2" in error_of(bad_option, 422)["message"]
    no_question = client.post(f"/api/tasks/{task_id}/answers", json={"question": 7, "option": 1})
    assert error_of(no_question, 404)["message"] == "Task 1 has no question 7 (it has 1)."
    comment = client.post(
        f"/api/tasks/{task_id}/comments", json={"path": "calc.py", "line": 1, "body": "x"}
    )
    assert "this needs it in review" in error_of(comment, 409)["message"]

    # auto_execute is off: answering makes it ready, and it waits there.
    client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 2})
    assert client.get(f"/api/tasks/{task_id}").json()["state"] == "ready"
    again = client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 1})
    assert error_of(again, 409)["code"] == "conflict"

    assert client.post(f"/api/tasks/{task_id}/cancel").json()["state"] == "cancelled"
    twice = error_of(client.post(f"/api/tasks/{task_id}/cancel"), 409)
    assert twice["code"] == "illegal_transition"
    assert "final state" in twice["message"]
    assert error_of(client.post(f"/api/tasks/{task_id}/retry"), 409)["code"] == "conflict"


def test_comments_must_point_into_the_change(client: httpx.Client, sample_repo: Path) -> None:
    from tests.support import to_review

    task_id, _ = to_review(client, sample_repo)
    url = f"/api/tasks/{task_id}/comments"
    outside = client.post(url, json={"path": "README.md", "line": 1, "body": "hm"})
    assert "not among the files" in error_of(outside, 422)["message"]
    bad_kind = client.post(url, json={"path": "calc.py", "line": 1, "body": "x", "kind": "nit"})
    assert "kind must be one of" in error_of(bad_kind, 422)["message"]
    empty = client.post(url, json={"path": "calc.py", "line": 1, "body": "   "})
    assert error_of(empty, 422)["code"] == "invalid_input"
    reply_to_nothing = client.post(
        url, json={"path": "calc.py", "line": 1, "body": "x", "parent_id": 999}
    )
    assert error_of(reply_to_nothing, 404)["code"] == "not_found"
    no_open = client.post(f"/api/tasks/{task_id}/request-changes")
    assert "no open review comments" in error_of(no_open, 409)["message"]
    assert error_of(client.get(f"/api/tasks/{task_id}/diff?subtask=9"), 404)["code"]


def test_index_detects_and_the_user_overrides_verify_commands(
    client: httpx.Client, sample_repo: Path
) -> None:
    from tests.support import wait_for

    project_id = add_project(client, sample_repo)
    project = wait_for(
        lambda: (p := client.get(f"/api/projects/{project_id}").json())["indexed_at"] and p
    )
    assert project["languages"] == {"Python": 2}
    assert project["file_count"] == 5
    assert project["detected_commands"] == ["python3 -m pytest -q"]

    url = f"/api/projects/{project_id}"
    changed = client.patch(url, json={"verify_commands": ["pytest -x", "  ", "ruff check ."]})
    assert changed.json()["effective"]["verify_commands"] == ["pytest -x", "ruff check ."]
    assert client.get("/api/projects/calc").json()["verify_commands"] == [
        "pytest -x",
        "ruff check .",
    ]
    cleared = client.patch(url, json={"clear_verify_commands": True}).json()
    assert cleared["effective"]["verify_commands"] == ["python3 -m pytest -q"]
    duplicate = client.post("/api/projects", json={"origin": str(sample_repo)})
    assert "already exists" in error_of(duplicate, 409)["message"]


def test_web_pages_cannot_drive_the_local_api(client: httpx.Client, sample_repo: Path) -> None:
    project_id = add_project(client, sample_repo, auto_execute=False)
    task_id = add_task(client, project_id)
    wait_for_state(client, task_id, "awaiting_answers")

    # A page on another site posting to the API (a form or fetch in no-cors mode).
    evil = client.post(f"/api/tasks/{task_id}/cancel", headers={"Origin": "http://evil.example"})
    assert error_of(evil, 403)["code"] == "forbidden"
    sneaky = client.post(f"/api/tasks/{task_id}/cancel", headers={"Sec-Fetch-Site": "cross-site"})
    assert error_of(sneaky, 403)["code"] == "forbidden"
    # DNS rebinding: the page's own host name pointing at 127.0.0.1.
    rebound = client.get(f"/api/tasks/{task_id}", headers={"Host": "evil.example:8765"})
    assert "loopback" in error_of(rebound, 403)["message"]
    assert client.get(f"/api/tasks/{task_id}").json()["state"] == "awaiting_answers"

    # The same origin (a page Errands itself serves) and plain clients are fine.
    host = str(client.base_url.netloc.decode())
    same = client.post(f"/api/tasks/{task_id}/cancel", headers={"Origin": f"http://{host}"})
    assert same.status_code == 200 and same.json()["state"] == "cancelled"
