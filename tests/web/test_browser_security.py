"""Stored XSS, attempted everywhere hostile text reaches the web UI, in a real browser.

Everything the agent writes is hostile (file names and contents, commit messages, summaries,
its research and plan, its chat replies, its hand-off), and so is the text of an issue (a
task's title and description), a review comment, a free-text answer, a project's settings and
a reviewer's name. One task is taken through a review round with a payload in each of those;
every page that shows them is then opened, and every payload tries to call ``__pwn`` (defined
by the test before any page script runs) or to load something from another origin.

Two layers are tested apart: with the Content-Security-Policy bypassed, escaping alone must
stop every payload (a script that runs is a real injection); with the policy in force, nothing
runs, no request leaves for another origin and the page itself breaks no rule of the policy
(the only violations allowed are the hostile markdown images the policy blocks). And the
policy is shown to hold on its own: markup injected into a page past the escaping still does
not run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from errands.web.ui import diffview
from tests.conftest import commit_initial
from tests.support import final, listed_comments, phase_of, running_server, settings_for
from tests.support import wait_for_state as wait_for_task

PASSWORD = "correct horse battery"
FOREIGN = "http://foreign.invalid"  # another origin: no request may go there


def payload(tag: str) -> str:
    """Markup that runs ``__pwn(tag-…)`` wherever it is not escaped: in text, in a quoted
    attribute (either quote), in <title>, <textarea> or <script>."""
    return (
        f"<img src=x onerror=__pwn('{tag}-img')>"
        f"\"><svg onload=__pwn('{tag}-svg')>"
        f"'><img src=x onerror=__pwn('{tag}-sq')>"
        f"</title></textarea></script><script>__pwn('{tag}-script')</script>"
        f"<a href=\"javascript:__pwn('{tag}-href')\">click</a>"
        f"<iframe srcdoc=\"<script>parent.__pwn('{tag}-frame')</script>\"></iframe>"
        f'<img src="{FOREIGN}/{tag}.png">'
    )


def short(tag: str) -> str:
    """The payload cut to a short field's 200 characters (its first attacks stay whole)."""
    return payload(tag)[:200]


def markdown(tag: str) -> str:
    """The payload, plus what markdown itself could turn into active content."""
    return (
        f"{payload(tag)}\n\n"
        f"[a link](javascript:__pwn('{tag}-mdlink')) "
        f"[entity](javascript&colon;__pwn('{tag}-entity')) "
        f"<javascript:__pwn('{tag}-autolink')> "
        f"[data](data:text/html;base64,PHNjcmlwdD5wYXJlbnQuX19wd24oMSk8L3NjcmlwdD4=) "
        f"![leak]({FOREIGN}/{tag}-md.png)\n\n"
        f"<details open ontoggle=__pwn('{tag}-toggle')>x</details>\n\n"
        f"```js\" onmouseover=\"__pwn('{tag}-info')\n{payload(tag + '-code')}\n```\n"
    )


# A file name cannot hold "/" (nor, kept simple for git, a double quote).
HOSTILE_FILE = "<img src=x onerror=__pwn('path')>.md"
HOSTILE_PAGE = "page.html"  # highlighted as HTML: the lexer must not let markup through
NOTES = "".join(f"line {i}: {payload(f'context{i}')}\n" for i in range(1, 41))
BIG = "".join(f"{payload(f'big{i}')}\n" for i in range(1600))  # loaded on demand


class HostileScript:
    """Research, plan, execute, route and revise, each answering with payloads."""

    def __init__(self) -> None:
        self.phases: list[str] = []

    def __call__(self, req: ChatRequest) -> Reply:
        phase = phase_of(req)
        self.phases.append(phase)
        step = req.n_assistant
        if phase == "research":
            return final(
                overview=markdown("overview"),
                requirements=[payload("requirement")],
                relevant_files=[
                    {"path": "notes.txt", "reason": payload("reason")},
                    {"path": HOSTILE_FILE, "reason": payload("reason2")},
                ],
                risks=[payload("risk")],
                questions=[
                    {
                        "question": payload("question"),
                        "reasoning": payload("reasoning"),
                        "options": [
                            {"label": short("label"), "requirement": payload("implies")},
                            {"label": "plain", "requirement": "plain"},
                        ],
                        "recommended": 1,
                    }
                ],
            )
        if phase == "plan":
            return final(
                subtasks=[{"title": short("subtask"), "steps": [payload("step")]}],
                out_of_scope=[payload("scope")],
            )
        if phase == "execute":
            return [
                Reply.call("edit_file", path="notes.txt", old_text="line 20:", new_text="LINE 20:"),
                Reply.call("write_file", path=HOSTILE_FILE, content=markdown("filemd")),
                Reply.call("write_file", path=HOSTILE_PAGE, content=payload("html") + "\n"),
                Reply.call("write_file", path="big.txt", content=BIG),
                Reply.call("run_command", command=f"printf '%s\\n' {quote_shell(payload('out'))}"),
                final(summary=payload("summary"), decisions=[payload("decision")]),
            ][min(step, 5)]
        if phase == "route":
            return final(
                routes=[
                    {"comment": n, "into": "new" if s is None else s, "reason": short("route")}
                    for n, s in listed_comments(req)
                ]
            )
        if phase == "revise":
            return [
                Reply.call(
                    "write_file", path=HOSTILE_FILE, content=markdown("filemd") + payload("v2")
                ),
                final(summary=payload("revised"), decisions=[]),
            ][min(step, 1)]
        if phase == "chat":
            return final(reply=markdown("chat"), requirements=[payload("chatreq")])
        raise AssertionError(f"unexpected request in phase {phase}: {req!r}")


def quote_shell(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@dataclass
class Site:
    url: str
    task_id: int
    project: str
    cookies: list[Any]
    api: httpx.Client


PROJECT = "p<img src=x onerror=__pwn('project')>"  # no "/": a project name cannot hold one


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    expect.set_options(timeout=15_000)
    root = tmp_path_factory.mktemp("hostile")
    repo = root / "repo"
    repo.mkdir()
    (repo / "notes.txt").write_text(NOTES)
    commit_initial(repo)
    home = root / "home"
    home.mkdir()
    script = HostileScript()
    with ScriptedLLM(script) as llm:
        settings = settings_for(home, llm.base_url, local_origins=[root])
        with running_server(settings) as url:
            made = httpx.post(
                f"{url}/api/auth/signup",
                json={"email": "owner@example.test", "password": PASSWORD, "name": short("who")},
            )
            assert made.status_code == 201, made.text
            token = httpx.post(
                f"{url}/api/tokens",
                json={"name": short("token")},
                cookies=made.cookies,
                headers={"X-CSRF-Token": made.json()["csrf_token"]},
            ).json()["token"]
            api = httpx.Client(
                base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}
            )
            project = api.post(
                "/api/projects",
                json={
                    "origin": str(repo),
                    "name": PROJECT,
                    "verify_commands": [f"true {quote_shell(payload('verify'))}"],
                },
            )
            assert project.status_code == 201, project.text
            # A task as if imported from an issue: its title and description are the issue's.
            task = api.post(
                "/api/tasks",
                json={
                    "project": project.json()["id"],
                    "title": payload("title")[:300],
                    "body": markdown("body"),
                },
            )
            assert task.status_code == 201, task.text
            task_id = task.json()["id"]
            wait_for_task(api, task_id, "awaiting_answers")
            answered = api.post(
                f"/api/tasks/{task_id}/answers", json={"question": 1, "text": payload("answer")}
            )
            assert answered.status_code == 200, answered.text
            wait_for_task(api, task_id, "in_review")

            # Review comments: a line comment, a suggestion, a reply; then a revise round
            # (the route's reason, v2 of the subtask, the interdiff).
            made_comment = api.post(
                f"/api/tasks/{task_id}/comments",
                json={"path": HOSTILE_FILE, "line": 1, "body": markdown("comment"), "subtask": 1},
            )
            assert made_comment.status_code == 201, made_comment.text
            root_id = made_comment.json()["id"]
            reply = api.post(
                f"/api/tasks/{task_id}/comments",
                json={
                    "path": HOSTILE_FILE,
                    "line": 1,
                    "body": markdown("reply"),
                    "parent_id": root_id,
                },
            )
            assert reply.status_code == 201, reply.text
            asked = api.post(f"/api/tasks/{task_id}/request-changes")
            assert asked.status_code == 200, asked.text
            wait_for_task(api, task_id, "in_review")
            suggestion = api.post(
                f"/api/tasks/{task_id}/comments",
                json={
                    "path": "notes.txt",
                    "line": 20,
                    "kind": "suggestion",
                    "subtask": 1,
                    "body": f"{payload('sugtext')}\n\n```suggestion\n{payload('sug')}\n```",
                },
            )
            assert suggestion.status_code == 201, suggestion.text
            try:
                yield Site(url, task_id, PROJECT, list(made.cookies.jar), api)
            finally:
                api.close()
            assert llm.script_errors == []


def pages(site: Site) -> list[tuple[str, str]]:
    """(address, a text the page must show): every page a signed-in owner has, and the
    addresses that echo their input back."""
    t = site.task_id
    review = f"/tasks/{t}/review"
    project = quote(site.project, safe="")
    echo = quote(payload("echo"), safe="")
    return [
        ("/", "onerror=__pwn('title-img')"),
        (f"/?q={echo}", "Board"),
        (f"/?project={project}", "onerror=__pwn('title-img')"),
        ("/tasks/new", "New task"),
        (f"/tasks/new?project={project}", "__pwn('project')"),
        (f"/tasks/{t}", "__pwn('subtask-img')"),
        (review, "__pwn('subtask-img')"),
        (f"{review}?view=all", "__pwn('filemd-img')"),
        (f"{review}?view=all&layout=split", "__pwn('filemd-img')"),
        (f"{review}?view=subtask&subtask=1&version=1", "__pwn('subtask-img')"),
        (f"{review}?view=versions&subtask=1&old=1&new=2", "__pwn('v2-img')"),
        (f"{review}?view=since", "__pwn('route-img')"),
        (f"/tasks/{t}/file?path={quote(HOSTILE_FILE)}&rev=tip", "__pwn('filemd-img')"),
        (f"/tasks/{t}/file?path={quote(HOSTILE_PAGE)}&rev=tip", "__pwn('html-img')"),
        (f"/tasks/{t}/file?path={echo}", "echo-img"),
        (f"{review}/file?path={quote(HOSTILE_FILE)}&view=all", "__pwn('filemd-img')"),
        ("/projects", "__pwn('project')"),
        (f"/projects/{project}", "__pwn('project')"),
        ("/projects/new", "Add a project"),
        (f"/projects/{quote(short('echo')[:37], safe='')}", "echo-img"),
        ("/usage", "__pwn('title-img')"),
        ("/audit", "Audit log"),
        ("/org", "owner@example.test"),
        ("/account", "__pwn('token-img')"),
        (f"/nowhere/{echo}", "There is no page at this address"),
        (f"/login?next={echo}", "Sign in"),
    ]


# -- the browser side ------------------------------------------------------------------------

WATCH = """
window.__hits = [];
window.__pwn = function (tag) { window.__hits.push(String(tag)); };
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__violations.push([e.effectiveDirective, e.blockedURI, e.sourceFile + ":" + e.lineNumber]);
});
"""


@dataclass
class Watch:
    """What went wrong on a page: payloads that ran, requests to other origins, and the
    policy's violations (from the event and from the console)."""

    foreign: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def hits(self, page: Page) -> list[str]:
        return list(page.evaluate("window.__hits || []"))

    def violations(self, page: Page) -> list[list[str]]:
        return list(page.evaluate("window.__violations || []"))


@contextmanager
def watching(site: Site, chromium: Browser, *, bypass_csp: bool) -> Iterator[tuple[Page, Watch]]:
    """A page of a signed-in browser of its own, watched for payloads that run, policy
    violations and requests to other origins (which are stopped)."""
    context = chromium.new_context(
        base_url=site.url, viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp
    )
    context.add_cookies(
        [{"name": c.name, "value": c.value or "", "url": site.url} for c in site.cookies]
    )
    context.add_init_script(WATCH)
    watch = Watch()

    def elsewhere(route: Route) -> None:
        watch.foreign.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(site.url), elsewhere)
    try:
        yield listen(context.new_page(), watch), watch
    finally:
        context.close()


def listen(page: Page, watch: Watch) -> Page:
    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            watch.console.append(message.text)

    page.on("console", on_console)
    return page


def exercise(page: Page, address: str) -> None:
    """What a reader does on the page: every <details> opened, and on a review page the
    unchanged lines expanded, a file loaded on demand, a comment form opened."""
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    if "/review" in address and "/review/file" not in address:
        expand = page.locator("button.expand")
        for _ in range(min(3, expand.count())):
            before = expand.count()
            expand.first.click()
            expect(expand).to_have_count(before - 1)
        load = page.locator("button.load-file:not([data-auto])")
        if load.count():
            load.first.click()
            expect(page.locator('.file[data-path="big.txt"] table.diff')).to_be_attached()
        line = page.locator("button.ln").first
        if line.count():
            line.click()
            expect(page.locator("form.comment-form")).to_be_visible()
    if re.fullmatch(r"/tasks/\d+", address):
        expect(page.locator("#live-dot.on")).to_be_attached()  # the event stream is open


def visit(page: Page, address: str, shows: str) -> None:
    response = page.goto(address)
    assert response is not None, address
    page.wait_for_load_state("load")
    # The hostile text is on the page (so the attack was made), as text.
    expect(page.locator("body")).to_contain_text(shows)
    exercise(page, address)
    page.wait_for_timeout(200)  # a handler an injected element fires (onerror, onload)
    # No javascript: (or data:) link anywhere, whoever clicks it.
    schemes = page.eval_on_selector_all("a[href]", "as => as.map(a => a.protocol)")
    assert not {"javascript:", "data:"} & set(schemes), (address, schemes)


@pytest.fixture
def lazy_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    # Review pages print their rows uncoloured and colour them afterwards (innerHTML).
    monkeypatch.setattr(diffview, "HIGHLIGHT_BUDGET", 0)
    diffview.clear_cache()


def test_escaping_alone_stops_every_payload(
    site: Site, chromium: Browser, lazy_colours: None
) -> None:
    """The first layer: with the policy bypassed, no payload runs on any page."""
    with watching(site, chromium, bypass_csp=True) as (page, watch):
        for address, shows in pages(site):
            visit(page, address, shows)
            assert watch.hits(page) == [], address
        # What escaping cannot stop: a markdown image is a request to its host.
        assert any(url.startswith(f"{FOREIGN}/body-md.png") for url in watch.foreign)


def test_nothing_runs_or_leaks_under_the_policy(
    site: Site, chromium: Browser, lazy_colours: None
) -> None:
    """Both layers: nothing runs, nothing is fetched from another origin, and the only
    violations are the hostile markdown images the policy blocks."""
    blocked: list[str] = []
    with watching(site, chromium, bypass_csp=False) as (page, watch):
        for address, shows in pages(site):
            visit(page, address, shows)
            assert watch.hits(page) == [], address
            violations = watch.violations(page)
            unexpected = [v for v in violations if not v[1].startswith(FOREIGN)]
            assert unexpected == [], (address, unexpected)
            blocked += [v[1] for v in violations if v[0] == "img-src"]
        assert watch.foreign == []
        assert [m for m in watch.console if FOREIGN not in m] == []
        # The markdown images were there, and the policy is what stopped them.
        assert f"{FOREIGN}/body-md.png" in blocked


def test_chat_replies_are_text_live_and_after_a_reload(
    site: Site, chromium: Browser, screenshots: Path
) -> None:
    """The agent's chat reply, shown as it arrives (over the WebSocket) and on a reload."""
    with watching(site, chromium, bypass_csp=False) as (page, watch):
        page.goto(f"/tasks/{site.task_id}")
        page.fill("#chat-input", payload("ask"))
        page.locator("#chat-form button[type=submit]").click()
        log = page.locator("#chat-log")
        expect(log).to_contain_text("__pwn('chat-img')", timeout=60_000)
        expect(log).to_contain_text("Add requirement: " + payload("chatreq")[:20])
        assert watch.hits(page) == []
        # A review event refreshes the page's live parts in place (parsed, then innerHTML).
        page.evaluate("document.querySelector('#research').dataset.old = '1'")
        made = site.api.post(
            f"/api/tasks/{site.task_id}/comments",
            json={"path": "notes.txt", "line": 1, "body": markdown("live"), "subtask": 1},
        )
        assert made.status_code == 201, made.text
        expect(page.locator("#research[data-old]")).to_have_count(0)
        expect(page.locator("#research")).to_contain_text("__pwn('overview-img')")
        page.wait_for_timeout(200)
        assert watch.hits(page) == []
        page.reload()
        expect(log.locator(".prose").last).to_contain_text("__pwn('chat-img')")
        page.screenshot(path=str(screenshots / "task-hostile.png"))
        page.wait_for_timeout(200)
        assert watch.hits(page) == []
        assert [v for v in watch.violations(page) if not v[1].startswith(FOREIGN)] == []
        assert watch.foreign == []


def test_the_policy_stops_markup_that_got_past_the_escaping(site: Site, chromium: Browser) -> None:
    """The second layer on its own: markup put into the page as if an escape had been
    missed (innerHTML, as the page's scripts do) neither runs nor loads from elsewhere."""
    with watching(site, chromium, bypass_csp=False) as (page, watch):
        page.goto(f"/tasks/{site.task_id}")
        page.evaluate(
            "html => { const d = document.createElement('div'); d.innerHTML = html;"
            " document.body.append(d); }",
            payload("injected") + f'<img src="{FOREIGN}/x.png">',
        )
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = \"__pwn('injected-script')\"; document.body.append(s); }"
        )
        page.wait_for_timeout(300)
        assert watch.hits(page) == []
        assert watch.foreign == []
        blocked = {v[0] for v in watch.violations(page)}
        assert {"script-src-elem", "script-src-attr"} <= blocked, blocked


def test_signed_out_pages_and_the_shared_scripts_keep_the_policy(
    site: Site, chromium: Browser
) -> None:
    """The pages before signing in; the theme chosen applies before the body is painted;
    the toggle and the board's project filter (handlers moved out of the markup) work."""
    context = chromium.new_context(base_url=site.url)
    context.add_init_script(
        WATCH
        + """
new MutationObserver(function (changes, observer) {
  if (!document.body) return;
  window.__themeAtBody = document.documentElement.dataset.theme || "none";
  observer.disconnect();
}).observe(document, { childList: true, subtree: true });
"""
    )
    watch = Watch()
    try:
        page = listen(context.new_page(), watch)
        for address, shows in [
            ("/", "Sign in"),
            ("/login", "Sign in"),
            ("/signup?code=x", "Join with an invitation"),
            ("/reset", "Reset your password"),
            ("/reset?code=x", "Code from the email"),
        ]:
            page.goto(address)
            expect(page.locator("main")).to_contain_text(shows)
            assert watch.violations(page) == [], address
        assert page.evaluate("window.__themeAtBody") == "none"
        page.locator("#theme-toggle").click()
        theme = page.evaluate("document.documentElement.dataset.theme")
        page.reload()
        assert page.evaluate("window.__themeAtBody") == theme  # before first paint

        with watching(site, chromium, bypass_csp=False) as (board, watch):
            board.goto("/")
            with board.expect_navigation():
                board.select_option("#f-project", site.project)
            assert "project=" in board.url
            expect(board.locator("#f-project")).to_have_value(site.project)
            assert watch.violations(board) == [] and watch.console == []
    finally:
        context.close()


def test_every_response_carries_the_headers(site: Site) -> None:
    """Over plain HTTP: each page, error page and API answer."""
    browser = httpx.Client(base_url=site.url, timeout=60)
    for c in site.cookies:
        browser.cookies.set(c.name, c.value or "")
    html = {"Accept": "text/html,application/xhtml+xml"}
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    addresses = [a for a, _ in pages(site)] + ["/login", "/reset", "/signup?code=x"]
    for address in addresses:
        answer = browser.get(address, headers=html)
        assert answer.headers["content-type"].startswith("text/html"), address
        assert answer.headers["content-security-policy"] == policy, address
        assert answer.headers["x-content-type-options"] == "nosniff", address
        assert answer.headers["referrer-policy"] == "same-origin", address
        assert answer.headers["x-frame-options"] == "DENY", address
    t = site.task_id
    for address in [
        "/api/tasks",
        f"/api/tasks/{t}",
        f"/api/tasks/{t}/handoff",  # the agent's text, as text/plain
        f"/api/tasks/{t + 99}",
        "/openapi.json",
        "/static/app.js",
        "/favicon.ico",
    ]:
        answer = site.api.get(address)
        assert answer.headers["x-content-type-options"] == "nosniff", address
        assert answer.headers["referrer-policy"] == "same-origin", address
        assert answer.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        ), address
    assert site.api.get(f"/api/tasks/{t}/handoff").headers["content-type"].startswith("text/plain")
    # A refusal of the browser guard, and the event stream.
    refused = browser.post(f"/api/tasks/{t}/approve", headers={"Origin": "http://elsewhere"})
    assert refused.status_code == 403 and refused.headers["x-content-type-options"] == "nosniff"
    with site.api.stream("GET", f"/api/tasks/{t}/events/stream") as stream:
        assert stream.headers["x-content-type-options"] == "nosniff"


def test_the_documentation_pages_run_their_own_scripts_only(site: Site, chromium: Browser) -> None:
    """/docs and /redoc are FastAPI's, from a CDN (stood in for here): their inline script
    runs (allowed by its hash); one added to the page does not."""
    context = chromium.new_context(base_url=site.url)
    context.add_init_script(WATCH)
    stub = (
        "window.SwaggerUIBundle = function (config) { window.__swagger = config.url; };"
        "SwaggerUIBundle.presets = { apis: 1 }; SwaggerUIBundle.SwaggerUIStandalonePreset = 1;"
    )
    context.route(
        "https://cdn.jsdelivr.net/**",
        lambda route: route.fulfill(
            content_type="text/javascript" if route.request.url.endswith(".js") else "text/css",
            body=stub if "swagger-ui-bundle" in route.request.url else "",
        ),
    )
    context.route(re.compile(r"https://(fonts|fastapi)\..*"), lambda route: route.abort())
    try:
        page = context.new_page()
        page.goto("/docs")
        expect(page.locator("#swagger-ui")).to_be_attached()
        assert page.evaluate("window.__swagger") == "/openapi.json"
        page.evaluate(
            "html => { const d = document.createElement('div'); d.innerHTML = html;"
            " document.body.append(d); }",
            "<img src=x onerror=__pwn('docs')>",
        )
        page.wait_for_timeout(300)
        assert page.evaluate("window.__hits") == []
        assert [v[0] for v in page.evaluate("window.__violations")] == ["script-src-attr"]
        for address in ["/docs", "/redoc", "/docs/oauth2-redirect"]:
            answer = httpx.get(f"{site.url}{address}")
            assert answer.status_code == 200, address
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert answer.headers["x-content-type-options"] == "nosniff"
    finally:
        context.close()
