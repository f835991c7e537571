"""The pages a new user meets, in a real browser against a real server: the file page the
research links to, the icon, anchored headings below the sticky bar, the system's dark
preference, an unpriced model's cost, a phone-sized screen and the task page's live parts.

One server and one task taken to review serve every test here (a workflow run is the
expensive part); a test that needs a task in another state makes its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Response,
    ViewportSize,
    expect,
)

from errands.testing.scripted_llm import ScriptedLLM
from tests.conftest import run_git
from tests.support import CalcScript, running_server, settings_for, to_review

HTML = {"Accept": "text/html,application/xhtml+xml"}
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1360, "height": 900}


@dataclass(frozen=True)
class Site:
    url: str
    task_id: int
    repo: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("pages")
    repo = root / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "config", "user.name", "Dev")
    run_git(repo, "config", "user.email", "dev@example.com")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "initial")
    home = root / "home"
    home.mkdir()
    with (
        ScriptedLLM(CalcScript()) as llm,
        running_server(settings_for(home, llm.base_url)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        task_id, _ = to_review(client, repo)
        yield Site(url, task_id, repo)


@pytest.fixture
def context(site: Site, chromium: Browser) -> Iterator[BrowserContext]:
    context = chromium.new_context(base_url=site.url, viewport=DESKTOP)
    expect.set_options(timeout=15_000)
    try:
        yield context
    finally:
        context.close()


# -- 5: the file page --------------------------------------------------------------------


def test_the_research_links_open_the_file(
    site: Site, context: BrowserContext, screenshots: Path
) -> None:
    page = context.new_page()
    page.goto(f"/tasks/{site.task_id}")
    with page.expect_navigation() as opened:
        page.locator("#research").get_by_role("link", name="calc.py").click()
    response = opened.value
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", level=1)).to_contain_text("calc.py")
    expect(page.locator("table.file-view")).to_contain_text("def add(a, b):")
    # The branch tip is one click away, and has the agent's change.
    page.get_by_role("link", name="Show the branch tip").click()
    expect(page.locator("table.file-view")).to_contain_text("def multiply(a, b):")
    page.screenshot(path=str(screenshots / "file-light.png"), full_page=True)


def test_a_bad_file_address_gets_a_clear_page(site: Site) -> None:
    client = httpx.Client(base_url=site.url, timeout=30)
    address = f"/tasks/{site.task_id}/file"
    for path, status, message in [
        ("nope.py", 404, "nope.py does not exist"),
        ("../calc.py", 404, "'../calc.py' is not a file of task"),
        ("tests/../calc.py", 404, "is not a file of task"),
        ("/etc/passwd", 404, "is not a file of task"),
        ("", 404, "is not a file of task"),
    ]:
        page = client.get(address, params={"path": path}, headers=HTML)
        assert page.status_code == status, (path, page.text[-400:])
        assert message in unescape(page.text), path
        assert page.headers["content-type"].startswith("text/html")
    binary = client.get(address, params={"path": "logo.png"}, headers=HTML)
    assert binary.status_code == 200
    assert "logo.png is a binary file" in unescape(binary.text)
    bad_rev = client.get(address, params={"path": "calc.py", "rev": "HEAD~1"}, headers=HTML)
    assert bad_rev.status_code == 422 and "is not a commit of this task" in unescape(bad_rev.text)


# -- 9: the icon -------------------------------------------------------------------------


def test_the_first_page_loads_without_console_errors(site: Site, context: BrowserContext) -> None:
    icon = httpx.get(f"{site.url}/favicon.ico", timeout=30)
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/")
    problems: list[str] = []
    page = context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    def on_response(response: Response) -> None:
        if response.status >= 400:
            problems.append(f"{response.url} {response.status}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.goto("/", wait_until="networkidle")
    icon_link = page.locator("link[rel=icon]")
    expect(icon_link).to_have_count(1)
    href = icon_link.get_attribute("href")
    assert href is not None and httpx.get(f"{site.url}{href}", timeout=30).status_code == 200
    page.goto(f"/tasks/{site.task_id}/review", wait_until="networkidle")
    assert problems == []
