"""Per-reviewer review state over real HTTP and in Chromium, with two signed-in reviewers:
viewed marks are kept on the server per reviewer and reset only for the file whose change a
revise round changed; "changes since my last review" is each reviewer's own; each sees the
other's verdict; a project may require two approvals of the same head; the review page shows
a subtask's versions and the interdiff between them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, expect

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.support import (
    final,
    phase_of,
    route_as_left,
    running_server,
    settings_for,
    wait_for_state,
)

PASSWORD = "correct horse battery"


def script(req: ChatRequest) -> Reply:
    phase = phase_of(req)
    if phase == "research":
        return final(overview="c", requirements=["r"], relevant_files=[], risks=[], questions=[])
    if phase == "plan":
        return final(subtasks=[{"title": "Multiply and notes", "steps": ["s"]}], out_of_scope=[])
    if phase == "execute":
        return [
            Reply.call(
                "edit_file",
                path="calc.py",
                old_text="    return a + b\n",
                new_text="    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n",
            ),
            Reply.call("write_file", path="NOTES.md", content="# Notes\n\nmultiply added\n"),
            final(summary="Added multiply and notes.", decisions=[]),
        ][min(req.n_assistant, 2)]
    if phase == "route":
        return route_as_left(req)
    if phase == "revise":
        return [
            Reply.call(
                "edit_file",
                path="calc.py",
                old_text="def multiply(a, b):\n",
                new_text='def multiply(a, b):\n    """The product."""\n',
            ),
            final(summary="Documented.", decisions=[]),
        ][min(req.n_assistant, 1)]
    raise AssertionError(f"unexpected phase {phase}")


def _reviewer(url: str, email: str, **signup: Any) -> tuple[httpx.Client, httpx.Cookies]:
    made = httpx.post(
        f"{url}/api/auth/signup", json={"email": email, "password": PASSWORD, **signup}
    )
    assert made.status_code == 201, made.text
    token = httpx.post(
        f"{url}/api/tokens",
        json={"name": "t"},
        cookies=made.cookies,
        headers={"X-CSRF-Token": made.json()["csrf_token"]},
    ).json()["token"]
    client = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
    return client, made.cookies


def _files(client: httpx.Client, task_id: int) -> set[str]:
    since = client.get(f"/api/tasks/{task_id}/interdiff", params={"mine": True})
    assert since.status_code == 200, since.text
    return {f["path"] for f in since.json()["files"]}


def _viewed(client: httpx.Client, task_id: int) -> list[str]:
    found = client.get(f"/api/tasks/{task_id}/viewed", params={"subtask": 1})
    assert found.status_code == 200, found.text
    viewed: list[str] = found.json()["viewed"]
    return viewed


def test_two_reviewers_keep_their_own_state(
    sample_repo: Path, home: Path, chromium: Browser, screenshots: Path
) -> None:
    with ScriptedLLM(script) as llm:
        settings = settings_for(home, llm.base_url, local_origins=[sample_repo.parent])
        with running_server(settings) as url:
            ann, ann_cookies = _reviewer(url, "ann@example.test")
            invited = ann.post(
                "/api/invitations", json={"email": "bob@example.test", "role": "member"}
            )
            assert invited.status_code == 201, invited.text
            code = invited.json()["link"].split("code=")[1]
            bob, _ = _reviewer(url, "bob@example.test", invite_code=code)

            project = ann.post("/api/projects", json={"origin": str(sample_repo)}).json()
            set_two = ann.patch(f"/api/projects/{project['id']}", json={"required_approvals": 2})
            assert set_two.status_code == 200 and set_two.json()["required_approvals"] == 2
            task_id = ann.post(
                "/api/tasks", json={"project": project["id"], "title": "Multiply", "body": "x"}
            ).json()["id"]
            wait_for_state(ann, task_id, "in_review")
            both = {"calc.py", "NOTES.md"}
            assert _files(ann, task_id) == both == _files(bob, task_id)  # nobody reviewed yet

            # Ann marks both files viewed: on the server, for her only.
            for path in both:
                marked = ann.post(f"/api/tasks/{task_id}/viewed", json={"subtask": 1, "path": path})
                assert marked.status_code == 200, marked.text
            assert sorted(_viewed(ann, task_id)) == sorted(both)
            assert _viewed(bob, task_id) == []

            # Ann asks for a change to calc.py: revise rewrites subtask 1 (v2), calc.py only.
            made = ann.post(
                f"/api/tasks/{task_id}/comments",
                json={"path": "calc.py", "line": 5, "body": "Document it.", "subtask": 1},
            )
            assert made.status_code == 201, made.text
            assert ann.post(f"/api/tasks/{task_id}/request-changes").status_code == 200
            task = wait_for_state(ann, task_id, "in_review")
            assert len(task["subtasks"][0]["versions"]) == 2

            # Her mark on calc.py is reset (its change changed); NOTES.md's stays.
            assert _viewed(ann, task_id) == ["NOTES.md"]
            # Since her last review: only calc.py; Bob never reviewed: everything.
            assert _files(ann, task_id) == {"calc.py"}
            assert _files(bob, task_id) == both

            # Bob approves: one of two approvals; the task stays in review, and Ann sees it.
            assert bob.post(f"/api/tasks/{task_id}/approve").status_code == 200
            standing = ann.get(f"/api/tasks/{task_id}/reviewers").json()
            assert standing["required_approvals"] == 2 and standing["approvals"] == 1
            by_name = {r["name"]: r for r in standing["reviewers"]}
            assert by_name["bob@example.test"]["verdict"] == "approved"
            assert by_name["bob@example.test"]["current"] is True
            assert by_name["ann@example.test"]["verdict"] == "changes_requested"
            assert by_name["ann@example.test"]["current"] is False  # an earlier round's
            assert by_name["ann@example.test"]["you"] is True
            assert ann.get(f"/api/tasks/{task_id}").json()["state"] == "in_review"
            # Bob's approval made his last review the tip: nothing new since, for him.
            assert _files(bob, task_id) == set()

            # Ann's browser (another device): her marks, Bob's verdict, the versions.
            context = chromium.new_context(base_url=url, viewport={"width": 1280, "height": 900})
            context.add_cookies(
                [{"name": c.name, "value": c.value or "", "url": url} for c in ann_cookies.jar]
            )
            page = context.new_page()
            page.goto(f"/tasks/{task_id}/review?view=subtask&subtask=1")
            notes = page.locator('.file[data-path="NOTES.md"] .viewed-box')
            calc = page.locator('.file[data-path="calc.py"] .viewed-box')
            expect(notes).to_be_checked()
            expect(calc).not_to_be_checked()
            expect(page.locator("#verdicts")).to_contain_text("bob@example.test")
            expect(page.locator("#approvals")).to_have_text("1 of 2")
            expect(page.locator("#versions")).to_contain_text("v2")
            page.screenshot(path=str(screenshots / "review-versions.png"), full_page=True)
            # Marking calc.py viewed here is on the server: the API (any device) sees it.
            calc.check()
            expect(page.locator('.file[data-path="calc.py"]')).to_have_attribute(
                "data-viewed-saved", "true"
            )
            assert sorted(_viewed(ann, task_id)) == ["NOTES.md", "calc.py"]
            page.locator('[data-compare="1-2"]').click()
            expect(page.locator("#interdiff-title")).to_have_text("v1 → v2")
            rows = page.locator("#range-diff tr.outer-add")
            expect(rows.filter(has_text='"""The product."""')).to_have_count(1)
            page.screenshot(path=str(screenshots / "review-interdiff.png"), full_page=True)
            context.close()

            assert ann.post(f"/api/tasks/{task_id}/approve").status_code == 200
            wait_for_state(ann, task_id, "merged")
            assert llm.script_errors == []
