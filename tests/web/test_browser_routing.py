"""The review page in a real browser shows, beside each comment, where the revise round sent it
(a fix inside a subtask, or a new subtask) and the agent's reason, as text."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.support import (
    Override,
    final,
    listed_comments,
    running_server,
    settings_for,
    to_review,
    wait_for_state,
)

REASON = "<b>divide</b> is new work, not a fix"


def hook(req: ChatRequest, phase: str) -> Reply | None:
    if phase == "route":
        # The first listed comment fixes subtask 1; the second is new work.
        (fix, _), (new, _) = listed_comments(req)
        return final(
            routes=[
                {"comment": fix, "into": 1, "reason": "multiply is written in subtask 1"},
                {"comment": new, "into": "new", "reason": REASON},
            ]
        )
    if phase == "revise" and "revising subtask" not in req.user:
        return [
            Reply.call(
                "write_file", path="divide.py", content="def divide(a, b):\n    return a / b\n"
            ),
            final(summary="Added divide.", decisions=[]),
        ][min(req.n_assistant, 1)]
    return None


def _on_multiply(client: httpx.Client, task_id: int, body: str) -> int:
    diff = client.get(f"/api/tasks/{task_id}/diff", params={"subtask": 1}).json()
    line = next(
        ln["new_no"]
        for hunk in diff["files"][0]["hunks"]
        for ln in hunk["lines"]
        if ln["kind"] == "added" and "def multiply" in ln["text"]
    )
    made = client.post(
        f"/api/tasks/{task_id}/comments",
        json={"path": "calc.py", "line": line, "body": body, "subtask": 1},
    )
    assert made.status_code == 201, made.text
    comment_id: int = made.json()["id"]
    return comment_id


def test_the_review_page_shows_where_each_comment_went_and_why(
    sample_repo: Path, home: Path, chromium: Browser, screenshots: Path
) -> None:
    with (
        ScriptedLLM(Override(hook)) as llm,
        running_server(settings_for(home, llm.base_url)) as url,
    ):
        client = httpx.Client(base_url=url, timeout=30)
        task_id, _ = to_review(client, sample_repo)
        fix = _on_multiply(client, task_id, "Document multiply.")
        new = _on_multiply(client, task_id, "Also add a divide(a, b).")
        assert client.post(f"/api/tasks/{task_id}/request-changes").status_code == 200
        wait_for_state(client, task_id, "revising", timeout=10)
        task = wait_for_state(client, task_id, "in_review", timeout=180)
        assert [s["origin"] for s in task["subtasks"]] == ["plan", "plan", "revise"]

        context = chromium.new_context(base_url=url, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        expect.set_options(timeout=15_000)
        page.goto(f"/tasks/{task_id}/review?view=subtask&subtask=1")
        index = page.locator(".thread-index li")
        expect(index).to_have_count(2)
        fixed = index.filter(has_text="Document multiply").locator(".route")
        expect(fixed.locator(".badge")).to_have_text("fix in subtask 1")
        expect(fixed.locator(".route-reason")).to_have_text("multiply is written in subtask 1")
        moved = index.filter(has_text="divide(a, b)").locator(".route")
        expect(moved.locator(".badge")).to_have_text("new subtask 3")
        # The agent's words are text: its markup is shown, never made an element.
        expect(moved.locator(".route-reason")).to_have_text(REASON)
        expect(moved.locator("b")).to_have_count(0)
        # Beside the thread itself, where the comment was left.
        thread = page.locator(f"#c{fix}")
        expect(thread.locator(".route .badge")).to_have_text("fix in subtask 1")
        expect(page.locator(f"#c{new} .route .route-reason")).to_have_text(REASON)
        page.locator("#threads").screenshot(path=str(screenshots / "review-routes.png"))
        thread.screenshot(path=str(screenshots / "review-route-thread.png"))
        context.close()
        assert llm.script_errors == []
