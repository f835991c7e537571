"""A task that changed nothing, in a real browser: the review page says there is nothing to
merge and offers no approve, the task page shows why each subtask changed nothing, and the
task can be cancelled from there."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, Dialog, expect

from errands.testing.scripted_llm import ScriptedLLM
from tests.support import add_project, add_task, running_server, settings_for, wait_for_state
from tests.workflow.test_no_change import ALREADY_DONE, ASKED_WHY, NothingToDo


def test_nothing_to_merge_in_the_browser(
    chromium: Browser, sample_repo: Path, home: Path, screenshots: Path
) -> None:
    with (
        ScriptedLLM(NothingToDo()) as llm,
        running_server(settings_for(home, llm.base_url)) as url,
    ):
        client = httpx.Client(base_url=url, timeout=30)
        task_id = add_task(client, add_project(client, sample_repo), title="Make add add")
        wait_for_state(client, task_id, "in_review")

        page = chromium.new_page()
        try:
            page.goto(f"{url}/tasks/{task_id}/review")
            notice = page.locator("#no-change")
            expect(notice).to_be_visible()
            expect(notice).to_contain_text("Nothing to merge")
            expect(notice).to_contain_text(ASKED_WHY)
            expect(page.locator("#approve")).to_be_disabled()
            page.screenshot(path=str(screenshots / "review-nothing-to-merge.png"))

            page.goto(f"{url}/tasks/{task_id}")
            expect(page.locator("#no-change")).to_be_visible()
            expect(page.locator(".no-change").first).to_contain_text(ALREADY_DONE)

            def accept(dialog: Dialog) -> None:
                dialog.accept()

            page.on("dialog", accept)
            page.get_by_role("button", name="Cancel").click()
            expect(page.locator(".badge.state-cancelled").first).to_be_visible()
        finally:
            page.close()
        assert client.get(f"/api/tasks/{task_id}").json()["state"] == "cancelled"
