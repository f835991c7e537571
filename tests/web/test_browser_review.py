"""The review page's finer tools in a real browser: colours arriving after the page, expanding
unchanged lines, a large file loaded on demand, viewed files remembered, keyboard comments, a
range suggestion applied as a commit, side by side, and a phone-sized screen."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from errands.web.ui import diffview
from tests.conftest import run_git
from tests.support import (
    add_project,
    add_task,
    final,
    phase_of,
    running_server,
    settings_for,
    wait_for_state,
)

LONG = "".join(f"line_{i} = {i}\n" for i in range(1, 61))
GENERATED = "".join(f"row {i}\n" for i in range(2000))


def script(req: ChatRequest) -> Reply:
    phase = phase_of(req)
    if phase == "research":
        return final(
            overview="A module of sixty assignments.",
            requirements=["Change line 30"],
            relevant_files=[{"path": "long.py", "reason": "holds line 30"}],
            risks=[],
            questions=[],
        )
    if phase == "plan":
        return final(
            subtasks=[{"title": "Change line 30 and add data", "steps": ["Edit", "Generate"]}],
            out_of_scope=[],
        )
    if phase == "execute":
        return [
            Reply.call(
                "edit_file", path="long.py", old_text="line_30 = 30\n", new_text="line_30 = 300\n"
            ),
            Reply.call("write_file", path="data.txt", content=GENERATED),
            final(summary="Changed line 30; generated data.", decisions=[]),
        ][min(req.n_assistant, 2)]
    raise AssertionError(f"unexpected phase {phase}")


def test_review_tools(
    sample_repo: Path,
    home: Path,
    chromium: Browser,
    screenshots: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (sample_repo / "long.py").write_text(LONG)
    run_git(sample_repo, "add", "long.py")
    run_git(sample_repo, "commit", "-q", "-m", "long module")
    with ScriptedLLM(script) as llm, running_server(settings_for(home, llm.base_url)) as url:
        import httpx

        client = httpx.Client(base_url=url, timeout=30)
        task_id = add_task(client, add_project(client, sample_repo), title="Tweak long")
        wait_for_state(client, task_id, "in_review")

        # The deferred colours: by file index; an unknown file or task is a clear 404.
        colours = f"/tasks/{task_id}/review/highlight"
        missing = client.get(colours, params={"file": 7}, headers={"Accept": "application/json"})
        assert missing.status_code == 404 and "no file 7" in missing.text
        assert client.get(f"/tasks/{task_id + 99}/review/highlight?file=0").status_code == 404
        assert client.get(colours, params={"file": "x"}).status_code in (400, 422)
        lines = client.get(colours, params={"file": 1}).json()["files"][0]
        assert lines["path"] == "long.py" and 'class="mi"' in lines["lines"]["new:30"]

        # No highlighting budget: the page comes uncoloured and colours itself in place.
        monkeypatch.setattr(diffview, "HIGHLIGHT_BUDGET", 0)
        diffview.clear_cache()
        context = chromium.new_context(base_url=url, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        expect.set_options(timeout=15_000)
        served: list[str] = []
        page.on("request", lambda r: served.append(r.url) if "/highlight?" in r.url else None)
        page.goto(f"/tasks/{task_id}/review")
        long_file = page.locator('.file[data-path="long.py"]')
        data_file = page.locator('.file[data-path="data.txt"]')
        expect(long_file).not_to_have_class(re.compile(r"\bpending\b"))
        added = long_file.locator("tr.added .src")
        expect(added.locator("span.mi")).to_have_text("300")
        assert added.inner_html() == lines["lines"]["new:30"] and len(served) == 1

        # Unchanged lines above and below the hunk expand in place.
        expand = long_file.locator("button.expand")
        expect(expand).to_have_count(2)
        expect(expand.first).to_have_text("⋯ Show 26 unchanged lines")
        expand.first.click()
        expect(long_file.locator("tr.context", has_text="line_1 = 1").first).to_be_visible()
        long_file.locator("button.expand").click()
        expect(long_file.locator("tr.context", has_text="line_60 = 60")).to_be_visible()
        expect(long_file.locator("button.expand")).to_have_count(0)

        # The generated file waits for the reader.
        expect(data_file).to_contain_text("A large diff (2000 lines)")
        data_file.get_by_role("button", name="Load diff").click()
        expect(data_file.locator("tr.added")).to_have_count(2000)

        # Viewed: the file folds, and stays viewed after a reload (kept on the server).
        data_file.get_by_label("Viewed").check()
        expect(data_file.locator(".file-body")).to_be_hidden()
        expect(data_file).to_have_attribute("data-viewed-saved", "true")
        page.reload()
        expect(data_file.get_by_label("Viewed")).to_be_checked()
        expect(data_file.locator(".file-body")).to_be_hidden()

        # Keyboard: j/k move between files, c opens a comment on its first changed line.
        page.keyboard.press("j")
        expect(page.locator(".file.focused")).to_have_attribute("data-path", "data.txt")
        page.keyboard.press("j")
        expect(page.locator(".file.focused")).to_have_attribute("data-path", "long.py")
        page.keyboard.press("c")
        expect(page.locator("form.comment-form .where")).to_contain_text("long.py line 30")
        page.get_by_role("button", name="Cancel").click()
        expect(page.locator("form.comment-form")).to_have_count(0)

        # A range: click one line, shift-click another; a suggestion with replacement code.
        long_file.locator("button.expand").first.click()
        long_file.locator('.ln[data-side="new"][data-line="29"]').click()
        long_file.locator('.ln[data-side="new"][data-line="31"]').click(modifiers=["Shift"])
        form = page.locator("form.comment-form")
        expect(form.locator(".where")).to_contain_text("long.py lines 29–31")
        form.get_by_label("Suggestion").check()
        replacement = form.locator("textarea[name=suggestion]")
        expect(replacement).to_have_value("line_29 = 29\nline_30 = 300\nline_31 = 31")
        replacement.fill("line_29 = 29\nline_30 = 3000\nline_31 = 31")
        form.get_by_placeholder("Leave a comment").fill("Bigger.")
        form.get_by_role("button", name="Comment").click()
        thread = page.locator("article.thread", has_text="Bigger.")
        expect(thread).to_contain_text("long.py:29-31")
        expect(thread.locator(".suggestion")).to_contain_text("line_30 = 3000")
        page.set_viewport_size({"width": 390, "height": 844})
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(screenshots / "review-phone-light.png"), full_page=False)
        page.set_viewport_size({"width": 1280, "height": 900})
        thread.get_by_role("button", name="Apply as a commit").click()

        # The applied suggestion is one more commit in the stack.
        expect(page.locator(".diff-head h2")).to_contain_text("Whole branch")
        stack = page.locator("nav.stack")
        expect(stack).to_contain_text("Apply suggestion on long.py:29")
        expect(long_file.locator("tr.added", has_text="line_30 = 3000")).to_be_visible()
        stack.get_by_role("link", name=re.compile("Apply suggestion")).click()
        expect(page.locator(".file")).to_have_count(1)

        # Side by side: removed on the left facing added on the right; expanding works too.
        page.get_by_role("link", name="Side by side").click()
        row = page.locator("table.diff.split tr", has_text="line_30 = 3000")
        expect(row.locator("td.code.removed")).to_contain_text("line_30 = 300")
        expect(row.locator("td.code.added")).to_contain_text("line_30 = 3000")
        page.locator("table.diff.split button.expand").first.click()
        expect(page.locator("table.diff.split tr", has_text="line_1 = 1")).to_have_count(1)
        context.close()
        assert llm.script_errors == []

    assert "line_30 = 3000" in run_git(sample_repo, "show", f"errands/{task_id}-tweak-long:long.py")
