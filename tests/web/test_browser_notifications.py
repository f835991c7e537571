"""The open app shows a notification when a task needs the user (Chromium, the real server
with its embedded worker delivering), and the account page sets what to hear about."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from errands import runtime
from errands.domain import TaskState
from errands.store import Project, Task
from tests.notifications.conftest import Team
from tests.support import running_server, settings_for

PASSWORD = "correct horse battery"


def test_the_open_app_shows_a_notification_linking_to_the_questions(
    home: Path, sample_repo: Path, chromium: Browser, screenshots: Path
) -> None:
    settings = settings_for(home, "http://127.0.0.1:9/v1", notify_coalesce_seconds=0)
    with running_server(settings) as url:
        context = chromium.new_context(base_url=url)
        context.grant_permissions(["notifications"], origin=url)
        page = context.new_page()
        page.goto("/signup")
        page.fill("#s-email", "owner@example.test")
        page.fill("#s-org", "Example")
        page.fill("#s-password", PASSWORD)
        with page.expect_navigation():
            page.locator("#signup-form button[type=submit]").click()

        page.goto("/account")
        form = page.locator("#notify-form")
        expect(form.locator("input[name=browser][value=needs_answers]")).to_be_checked()
        form.locator("input[name=email][value=merged]").uncheck()
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        expect(page.locator(".flash").first).to_contain_text("Notifications saved.")
        expect(page.locator("input[name=email][value=merged]")).not_to_be_checked()
        expect(page.locator("input[name=email][value=failed]")).to_be_checked()
        page.screenshot(path=str(screenshots / "account-notifications.png"), full_page=True)

        page.goto("/")
        page.wait_for_timeout(500)  # the first poll sets where the tab starts
        store = runtime.open_database(settings)
        with store.session() as session:
            project = Project(name="calc", origin=str(sample_repo), base_branch="main")
            session.add(project)
            session.flush()
            task = Task(
                project_id=project.id, title="Add multiply", state="researching", base_branch="main"
            )
            session.add(task)
            session.flush()
            task_id = task.id
        Team(settings, store, 0, 0, 0, task_id).say(TaskState.AWAITING_ANSWERS)
        notice = page.locator("#notices .notice")
        expect(notice).to_contain_text(f"Task #{task_id} needs your answers", timeout=20_000)
        page.screenshot(path=str(screenshots / "notification.png"))
        with page.expect_navigation():
            notice.click()
        assert page.url.endswith(f"/tasks/{task_id}#questions")
        store.dispose()
