"""The pages a new user meets, in a real browser against a real server: the file page the
research links to, the icon, anchored headings below the sticky bar, the system's dark
preference, an unpriced model's cost, a phone-sized screen and the task page's live parts.

One server and one task taken to review serve every test here (a workflow run is the
expensive part); a test that needs a task in another state makes its own."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Literal

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

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.conftest import commit_initial
from tests.support import (
    CalcScript,
    add_task,
    phase_of,
    running_server,
    settings_for,
    to_review,
)

# A line far wider than a phone: on the review page it is context just below the change.
LONG = " ".join(f"word{i}" for i in range(40))
HTML = {"Accept": "text/html,application/xhtml+xml"}
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1360, "height": 900}


HELD = "Add multiply again"  # the title of a task whose research waits for the test


class HeldCalc(CalcScript):
    """The calc script; research for the task titled HELD waits until the test lets it go,
    so the page is seen before the research names the task's branch."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def __call__(self, req: ChatRequest) -> Reply:
        if phase_of(req) == "research" and HELD in req.user and req.n_assistant == 0:
            self.release.wait(120)
        return super().__call__(req)


@dataclass(frozen=True)
class Site:
    url: str
    task_id: int
    repo: Path
    script: HeldCalc


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("pages")
    repo = root / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text(f"def add(a, b):\n    return a + b\n\n\nLONG = {LONG!r}\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    commit_initial(repo)
    home = root / "home"
    home.mkdir()
    script = HeldCalc()
    with (
        ScriptedLLM(script) as llm,
        running_server(settings_for(home, llm.base_url)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        task_id, _ = to_review(client, repo)
        yield Site(url, task_id, repo, script)
        script.release.set()


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


# -- 10: anchored targets below the sticky top bar ---------------------------------------


@pytest.mark.parametrize("anchor", ["questions", "plan", "jobs"])
def test_an_anchored_heading_is_not_hidden_under_the_top_bar(
    site: Site, chromium: Browser, anchor: str
) -> None:
    # Short enough that every anchor is reached by scrolling (a form redirects to these).
    context = chromium.new_context(base_url=site.url, viewport={"width": 1360, "height": 500})
    try:
        page = context.new_page()
        page.goto(f"/tasks/{site.task_id}#{anchor}")
        heading = page.locator(f"#{anchor} h2")
        expect(heading).to_be_visible()
        assert page.evaluate("window.scrollY") > 0, "the page did not scroll to the anchor"
        bar = page.locator("header.top").bounding_box()
        box = heading.bounding_box()
        assert bar is not None and box is not None
        assert box["y"] >= bar["y"] + bar["height"], (box, bar)
    finally:
        context.close()


# -- 11: the system's dark preference ----------------------------------------------------

COLOURS = """(selectors) => selectors.map((s) => {
  const style = getComputedStyle(document.querySelector(s));
  return [s, style.color, style.backgroundColor];
})"""
PAINTED = ["body", "#task-state", ".badge.sub-committed", ".panel", "header.top"]


def test_the_system_dark_preference_colours_everything(
    site: Site, chromium: Browser, screenshots: Path
) -> None:
    seen = {}
    schemes: list[tuple[Literal["dark", "light"], str | None]] = [
        ("dark", None),
        ("light", "dark"),
        ("light", None),
        ("dark", "light"),
    ]
    for scheme, theme in schemes:
        context = chromium.new_context(base_url=site.url, viewport=DESKTOP, color_scheme=scheme)
        try:
            page = context.new_page()
            if theme:  # the toggle's choice, remembered
                page.add_init_script(f"localStorage.setItem('errands-theme', '{theme}')")
            page.goto(f"/tasks/{site.task_id}")
            expect(page.locator("#task-state")).to_have_text("in review")
            seen[scheme, theme] = page.evaluate(COLOURS, PAINTED)
            if theme is None:
                page.screenshot(path=str(screenshots / f"task-system-{scheme}.png"))
        finally:
            context.close()
    system_dark, chosen_dark = seen["dark", None], seen["light", "dark"]
    system_light, chosen_light = seen["light", None], seen["dark", "light"]
    assert system_dark == chosen_dark
    assert system_light == chosen_light
    # The in-review badge differs between the two (the bug: light colours on a dark page).
    badge = PAINTED.index("#task-state")
    assert system_dark[badge] != system_light[badge]
    assert system_dark[0] != system_light[0]


# -- 13: a phone ---------------------------------------------------------------------------


def test_a_phone_gets_one_line_of_top_bar_and_unwrapped_code(
    site: Site, chromium: Browser, screenshots: Path
) -> None:
    context = chromium.new_context(base_url=site.url, viewport=PHONE, is_mobile=True)
    try:
        page = context.new_page()
        review = f"/tasks/{site.task_id}/review?view=all"
        for address in ["/", f"/tasks/{site.task_id}", review]:
            page.goto(address)
            bar = page.locator("header.top").bounding_box()
            assert bar is not None and bar["height"] < 60, (address, bar)
        # The long line is context below the change: one row as tall as a short line's.
        calc = page.locator('.file[data-path="calc.py"]')
        long_row = calc.locator("tr.context", has_text="word39")
        short_row = calc.locator("tr.added", has_text="def multiply")
        long_box, short_box = long_row.bounding_box(), short_row.bounding_box()
        assert long_box is not None and short_box is not None
        assert long_box["height"] == short_box["height"], "a code line wrapped"
        body = calc.locator(".file-body")
        assert body.evaluate("b => b.scrollWidth > b.clientWidth"), "the long line does not scroll"
        # The added test file has no old lines: its old-line column takes no width.
        added = page.locator('.file[data-path="tests/test_multiply.py"]')
        first = added.locator("tr.added td.num").first.bounding_box()
        assert first is not None and first["width"] < 2, first
        page.screenshot(path=str(screenshots / "review-phone-unwrapped.png"))
        page.goto(f"/tasks/{site.task_id}")
        page.screenshot(path=str(screenshots / "task-phone-light.png"))
    finally:
        context.close()


# -- 12: a model without a price ---------------------------------------------------------


def test_an_unpriced_model_does_not_read_as_free(site: Site) -> None:
    client = httpx.Client(base_url=site.url, timeout=30)
    task = unescape(client.get(f"/tasks/{site.task_id}", headers=HTML).text)
    cost = re.search(r'<p class="cost" id="task-cost">(.*?)</p>', task, re.DOTALL)
    assert cost is not None
    assert "price unknown" in cost.group(1) and "tokens" in cost.group(1)
    assert "$0.0000" not in task
    assert "Errands knows no price for scripted-model" in task
    usage = unescape(client.get("/usage", headers=HTML).text)
    # A row with tokens is not free; one without (indexing here) rightly costs nothing.
    rows = re.findall(r"<td>([^<]*) / ([^<]*)</td><td>([^<]*)</td></tr>", usage)
    assert rows and all(cost != "$0.0000" for i, o, cost in rows if (i, o) != ("0", "0"))
    assert re.search(r'id="usage-total">price unknown</strong> \([\d.]+k? tokens\)', usage)
    assert "Errands knows no price for scripted-model" in usage


# -- 14: the task page's live parts and its log --------------------------------------------


def test_the_log_opens_at_its_newest_line(site: Site, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(f"/tasks/{site.task_id}")
    log = page.locator("#log")
    expect(log.locator("li").last).to_be_attached()
    sizes = log.evaluate("l => [l.scrollTop, l.clientHeight, l.scrollHeight]")
    top, height, total = sizes
    assert total > height, f"the log does not overflow: nothing to test ({sizes})"
    assert top + height >= total - 1, f"the newest line is cut off ({sizes})"


def test_a_page_left_open_follows_the_task_in_words(site: Site, context: BrowserContext) -> None:
    client = httpx.Client(base_url=site.url, timeout=30)
    project = client.get(f"/api/tasks/{site.task_id}").json()["project_id"]
    task_id = add_task(client, project, title=HELD)
    page = context.new_page()
    page.goto(f"/tasks/{task_id}")
    page.evaluate("window.__marked = true")
    spec = page.locator("#live-spec")
    expect(spec).to_contain_text("base main")
    expect(spec).not_to_contain_text("branch")
    site.script.release.set()
    expect(spec).to_contain_text(f"branch errands/{task_id}-add-multiply-again", timeout=90_000)
    log = page.locator("#log")
    expect(log).to_contain_text("Task is awaiting answers")
    answered = client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 1})
    assert answered.status_code == 200, answered.text
    expect(page.locator("#task-state")).to_have_text("in review", timeout=90_000)
    assert page.evaluate("window.__marked === true"), "the page reloaded instead of updating"
    assert "_" not in " ".join(log.locator(".ev-task .msg").all_inner_texts())
    # Refused actions say the state in words too.
    retry = client.post(f"/api/tasks/{task_id}/retry")
    assert retry.status_code == 409
    assert retry.json()["error"]["message"] == (
        f"Task {task_id} is in review; only a failed task can be retried."
    )
