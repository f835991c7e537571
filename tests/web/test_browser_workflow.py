"""The whole workflow through the web app, in a real browser, against a real server and a
scripted model: add a project, create a task, chat, answer by clicking an option, watch the
plan progress live, review subtask by subtask, comment on a line, request changes, read the
interdiff, resolve a thread, approve, see it merged."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.conftest import run_git
from tests.support import CalcScript, final, phase_of, running_server, settings_for

SPEC = """## System context
calc.py offers add() only.

## Scope
In scope:
- multiply(a, b) next to add

Out of scope:
- division

## Technical specifics
A plain function in calc.py, tested with pytest.

## Acceptance criteria
- multiply(3, 4) == 12 and a test covers it
"""

LIVE = 90_000  # ms: the longest a live update may take (a job running on a shared machine)


class GatedScript:
    """The calc script, plus chat; subtask 2 waits until the test has seen subtask 1
    committed on the page, so "the plan progresses live" is observed, not assumed."""

    def __init__(self) -> None:
        self.calc = CalcScript()
        self.gate = threading.Event()

    def __call__(self, req: ChatRequest) -> Reply:
        if phase_of(req) == "chat":
            return final(
                reply="Yes: **floats** too, so multiply(0.5, 4) == 2.0.",
                requirements=["multiply accepts floats"],
            )
        if phase_of(req) == "execute" and "subtask 2 of 2" in req.user and req.n_assistant == 0:
            self.gate.wait(120)
        return self.calc(req)


def shoot(page: Page, directory: Path, name: str) -> None:
    """The page as it looks now, light and dark."""
    page.evaluate("window.scrollTo(0, 0)")  # a sticky header lands mid-page otherwise
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=str(directory / f"{name}-{scheme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")


def no_reload_since_marked(page: Page) -> bool:
    return bool(page.evaluate("window.__marked === true"))


def test_whole_workflow_in_the_browser(
    sample_repo: Path, home: Path, chromium: Browser, screenshots: Path
) -> None:
    script = GatedScript()
    with ScriptedLLM(script) as llm, running_server(settings_for(home, llm.base_url)) as url:
        context = chromium.new_context(base_url=url, viewport={"width": 1360, "height": 900})
        page = context.new_page()
        expect.set_options(timeout=15_000)

        # A project, added through its form.
        page.goto("/projects/new")
        page.get_by_label("Repository").fill(str(sample_repo))
        page.get_by_role("button", name="Add and index").click()
        expect(page.get_by_role("heading", name="calc", exact=True)).to_be_visible()

        # A task: the readiness hint first points at what the template leaves open.
        page.goto("/")
        page.get_by_role("link", name="New task").last.click()
        hint = page.locator("#readiness")
        expect(hint).to_contain_text("missing")
        page.get_by_label("Title").fill("Add multiply")
        page.get_by_label("Spec").fill(SPEC)
        expect(hint).to_have_text("Reads like a good spec.")
        page.get_by_role("button", name="Hand it off").click()
        expect(page).to_have_url(re.compile(r"/tasks/1$"))
        page.evaluate("window.__marked = true")

        # Research arrives live; its question is offered as option buttons.
        question = page.locator("#q1")
        expect(question.get_by_role("heading")).to_contain_text(
            "Should multiply accept floats?", timeout=LIVE
        )
        assert no_reload_since_marked(page)
        numbers = question.get_by_role("button", name=re.compile("Numbers"))
        expect(numbers).to_contain_text("multiply works for ints and floats")
        expect(numbers).to_contain_text("agent's pick")
        expect(page.locator("#research")).to_contain_text("calc.py")

        # Chat: the agent answers over the WebSocket and proposes a requirement.
        page.get_by_label("Message").fill("Should it take floats?")
        page.get_by_role("button", name="Send").click()
        expect(page.locator("#chat-log")).to_contain_text("multiply(0.5, 4) == 2.0")
        page.get_by_role("button", name="Add requirement: multiply accepts floats").click()
        expect(page.locator("#research")).to_contain_text("multiply accepts floats")

        # Answer by clicking the option; execution starts.
        page.locator("#q1").get_by_role("button", name=re.compile("Numbers")).click()
        expect(page.locator("#q1")).to_contain_text("Answer: Numbers")
        page.evaluate("window.__marked = true")

        # The plan progresses live: subtask 1 committed while subtask 2 is being edited.
        first = page.locator('[data-position="1"] [data-subtask-state]')
        second = page.locator('[data-position="2"] [data-subtask-state]')
        expect(first).to_have_text("committed", timeout=LIVE)
        expect(second).to_have_text("editing", timeout=LIVE)
        expect(page.locator("#log")).to_contain_text("subtask.committed")
        script.gate.set()
        expect(page.locator("#task-state")).to_have_text("in review", timeout=LIVE)
        expect(second).to_have_text("committed")
        assert no_reload_since_marked(page), "the page reloaded instead of updating live"
        expect(page.locator("#handoff")).to_contain_text("What was built")
        shoot(page, screenshots, "task")

        # Review: one subtask at a time, by keyboard.
        page.get_by_role("link", name="Review").click()
        head = page.locator(".diff-head h2")
        expect(head).to_contain_text("1. Add multiply to calc")
        page.keyboard.press("n")
        expect(head).to_contain_text("2. Test multiply")
        expect(page.locator(".file").first).to_have_attribute("data-path", "tests/test_multiply.py")
        page.keyboard.press("p")
        expect(head).to_contain_text("1. Add multiply to calc")

        # Side by side, then back.
        page.get_by_role("link", name="Side by side").click()
        expect(page.locator("table.diff.split")).to_be_visible()
        page.get_by_role("link", name="Unified").click()
        expect(page.locator("table.diff.unified")).to_be_visible()

        # A blocking comment on the line that defines multiply.
        line = page.locator("table.diff tr.added", has_text="def multiply").locator(".ln")
        line.click()
        form = page.locator("form.comment-form")
        form.get_by_placeholder("Leave a comment").fill("Please document multiply.")
        form.get_by_role("button", name="Comment").click()
        thread = page.locator("article.thread").first
        expect(thread).to_contain_text("Please document multiply.")
        expect(thread.locator(".thread-state")).to_have_text("open")
        expect(page.locator("#open-summary")).to_contain_text("1 open blocking")
        shoot(page, screenshots, "review")

        # Approval is refused while it is open.
        page.get_by_role("button", name="Approve and merge").click()
        expect(page.get_by_role("alert")).to_contain_text("blocking")

        # Request changes: the revision runs, live on the task page.
        page.get_by_role("button", name="Request changes").click()
        expect(page).to_have_url(re.compile(r"/tasks/1(#plan)?$"))
        page.evaluate("window.__marked = true")
        expect(page.locator("#task-state")).to_have_text("in review", timeout=LIVE)
        # The fix went inside subtask 1 (where the comment was left): no third subtask.
        expect(page.locator('[data-position="1"] [data-subtask-state]')).to_have_text("committed")
        expect(page.locator('[data-position="3"]')).to_have_count(0)
        assert no_reload_since_marked(page)

        # Only what changed since the last review.
        page.get_by_role("link", name="Review").click()
        page.get_by_role("link", name="Changes since my last review").click()
        expect(page.locator(".diff-head h2")).to_have_text("Changes since your last review")
        files = page.locator(".file")
        expect(files).to_have_count(1)
        expect(files.first.locator("tr.added")).to_have_count(1)
        expect(files.first.locator("tr.added")).to_contain_text("Return the product of a and b.")
        expect(page.locator(".thread-index")).to_contain_text("resolved")  # revise addressed it

        # A new thread on the revision: reply, then resolve it explicitly.
        files.first.locator("tr.added .ln").click()
        form = page.locator("form.comment-form")
        form.get_by_placeholder("Leave a comment").fill("Is one line of docstring enough?")
        form.get_by_role("button", name="Comment").click()
        thread = page.locator("article.thread", has_text="Is one line of docstring enough?")
        thread.get_by_placeholder("Reply…").fill("Yes, for a one-liner.")
        thread.get_by_role("button", name="Reply").click()
        thread = page.locator("article.thread", has_text="Is one line of docstring enough?")
        expect(thread).to_contain_text("Yes, for a one-liner.")
        thread.get_by_role("button", name="Resolve").click()
        thread = page.locator("article.thread", has_text="Is one line of docstring enough?")
        expect(thread.locator(".thread-state")).to_have_text("resolved")

        # Approve: merged, live.
        page.get_by_role("button", name="Approve and merge").click()
        expect(page.locator("#task-state")).to_have_text("merged", timeout=LIVE)
        expect(page.locator("#live-parts")).to_contain_text("Merged into main")

        page.goto("/")
        done = page.locator('[data-column="done"]')
        expect(done).to_contain_text("Add multiply")
        expect(done.locator(".count")).to_have_text("1")
        expect(done).to_contain_text("tokens")
        shoot(page, screenshots, "board")
        context.close()
        assert llm.script_errors == []

    calc = run_git(sample_repo, "show", "main:calc.py")
    assert "def multiply(a, b):" in calc and "Return the product" in calc
