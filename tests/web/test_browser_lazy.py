"""A long stack's review page renders its first screens and loads the other files as the
reader scrolls to them or jumps to them with the keyboard; comments work on a file loaded so."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from errands.web.ui import diffview
from tests.support import (
    add_project,
    add_task,
    final,
    phase_of,
    running_server,
    settings_for,
    wait_for_state,
)

FILES = 5
LINES = diffview.MAX_ROWS_PER_PAGE // 2  # two files fill the first screens


def script(req: ChatRequest) -> Reply:
    phase = phase_of(req)
    if phase == "research":
        return final(overview="o", requirements=["r"], relevant_files=[], risks=[], questions=[])
    if phase == "plan":
        return final(subtasks=[{"title": "Five modules", "steps": ["write"]}], out_of_scope=[])
    if req.n_assistant < FILES:
        n = req.n_assistant + 1
        content = "".join(f"value_{n}_{i} = {i}\n" for i in range(LINES))
        return Reply.call("write_file", path=f"mod_{n}.py", content=content)
    return final(summary="Five modules.", decisions=[])


def test_files_past_the_first_screens_load_as_the_reader_reaches_them(
    sample_repo: Path, home: Path, chromium: Browser
) -> None:
    with ScriptedLLM(script) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        task_id = add_task(client, add_project(client, sample_repo), title="Modules")
        wait_for_state(client, task_id, "in_review")
        page = chromium.new_page(base_url=url, viewport={"width": 1280, "height": 800})
        page.goto(f"/tasks/{task_id}/review?view=all")
        files = page.locator(".file")
        expect(files).to_have_count(FILES)
        first, last = files.nth(0), files.nth(FILES - 1)
        expect(first.locator("tr.added")).to_have_count(LINES)
        # The last file waits: its rows are not in the page yet.
        expect(last).to_contain_text("loaded as you scroll")
        assert last.locator("tr.added").count() == 0

        # Scrolling to the third file loads it.
        files.nth(2).scroll_into_view_if_needed()
        expect(files.nth(2).locator("tr.added")).to_have_count(LINES)

        # The keyboard jumps to the last file and comments on its first line.
        for _ in range(FILES):
            page.keyboard.press("j")
        expect(page.locator(".file.focused")).to_have_attribute("data-path", f"mod_{FILES}.py")
        page.keyboard.press("c")
        form = last.locator("form.comment-form")
        expect(form).to_be_visible()
        form.get_by_placeholder("Leave a comment").fill("Why five?")
        form.get_by_role("button", name="Comment").click()
        expect(page.locator("article.thread", has_text="Why five?")).to_be_visible()
        comments = client.get(f"/api/tasks/{task_id}/comments").json()
        assert [(c["path"], c["line"]) for c in comments] == [(f"mod_{FILES}.py", 1)]
        assert llm.script_errors == []


CUT = diffview.MAX_ROWS_PER_PAGE + 30  # one file longer than the page's first screens


def cut_script(req: ChatRequest) -> Reply:
    phase = phase_of(req)
    if phase == "research":
        return final(overview="o", requirements=["r"], relevant_files=[], risks=[], questions=[])
    if phase == "plan":
        return final(subtasks=[{"title": "One long module", "steps": ["write"]}], out_of_scope=[])
    if req.n_assistant == 0:
        content = "".join(f"value_{i} = '<b>{i}</b>'\n" for i in range(1, CUT + 1))
        return Reply.call("write_file", path="long.py", content=content)
    return final(summary="One long module.", decisions=[])


def test_a_file_cut_at_the_first_screens_gets_its_rest_under_it(
    sample_repo: Path, home: Path, chromium: Browser
) -> None:
    with ScriptedLLM(cut_script) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        task_id = add_task(client, add_project(client, sample_repo), title="Long")
        wait_for_state(client, task_id, "in_review")
        page = chromium.new_page(base_url=url, viewport={"width": 1280, "height": 800})
        for layout, row in (("unified", "tr.added"), ("split", "tr.r-added")):
            page.goto(f"/tasks/{task_id}/review?view=subtask&subtask=1&layout={layout}")
            long = page.locator('.file[data-path="long.py"]')
            rows = long.locator(f"table.diff {row}")
            expect(rows).to_have_count(diffview.MAX_ROWS_PER_PAGE)
            expect(long.locator(".note.lazy")).to_contain_text("30 more lines")
            # Scrolled to, the rest comes under the rows shown, in order, in the same table.
            long.locator(".note.lazy").scroll_into_view_if_needed()
            expect(rows).to_have_count(CUT)
            expect(long.locator("table.diff")).to_have_count(1)
            expect(long.locator(".note.lazy")).to_have_count(0)
            numbers = long.locator('.ln[data-side="new"]').evaluate_all(
                "bs => bs.map(b => Number(b.dataset.line))"
            )
            assert numbers == list(range(1, CUT + 1)), layout
            # The code is text, coloured like the rows above it.
            last = rows.nth(CUT - 1)
            expect(last).to_contain_text(f"value_{CUT} = '<b>{CUT}</b>'")
            expect(last.locator("span.s1")).to_have_count(1)
        # A comment on a line that came later.
        long.locator(f'.ln[data-side="new"][data-line="{CUT}"]').click()
        form = long.locator("form.comment-form")
        form.get_by_placeholder("Leave a comment").fill("Last one?")
        form.get_by_role("button", name="Comment").click()
        thread = page.locator("article.thread", has_text="Last one?")
        expect(thread).to_be_visible()
        comments = client.get(f"/api/tasks/{task_id}/comments").json()
        assert [(c["path"], c["line"]) for c in comments] == [("long.py", CUT)]
        # Back on the page, its line may not be printed yet (then it is listed under the diff);
        # once the rest of the file comes, it is at its line and nowhere else.
        long.locator("table.diff tr").nth(
            diffview.MAX_ROWS_PER_PAGE - 1
        ).scroll_into_view_if_needed()
        expect(long.locator("table.diff article.thread", has_text="Last one?")).to_have_count(1)
        expect(thread).to_have_count(1)
        assert llm.script_errors == []
