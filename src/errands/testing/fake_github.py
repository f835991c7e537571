"""A fake GitHub REST API on loopback, for tests and local trials: a real HTTP server that
speaks the shapes Errands uses (per GitHub's OpenAPI description), backed by in-memory issues
and pull requests and by *real* local bare git repositories standing in for GitHub's git
remotes, so pushes, pull request heads and squash-merges are real git.

What it checks like GitHub does: App JWTs (RS256, signed by the App's key, ``iss`` = app id,
at most ten minutes), installation tokens (expiry, narrowed to repositories), personal
tokens. What it lets a test arrange: token lifetime, page size, permissions, faults
(rate limits with or without ``retry-after``, secondary limits, server errors) for the next
requests that match a path, and holds (requests that wait until released, so two clients
overlap on purpose).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

Json = dict[str, Any]


def _now_iso(at: float | None = None) -> str:
    return datetime.fromtimestamp(at or time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "GIT_AUTHOR_NAME": "GitHub",
            "GIT_AUTHOR_EMAIL": "noreply@github.com",
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.com",
        },
    )


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: Json
    remaining: int


@dataclass
class Hold:
    """Requests matching ``method`` and ``path`` wait here until :meth:`release` (or until
    ``until`` of them wait at once): how a test makes two clients overlap on purpose."""

    method: str
    path: re.Pattern[str]
    until: int | None = None
    waiting: int = 0
    arrived: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self) -> None:
        with self._lock:
            self.waiting += 1
            self.arrived += 1
            if self.until is not None and self.waiting >= self.until:
                self.released.set()
        self.released.wait()
        with self._lock:
            self.waiting -= 1

    def release(self) -> None:
        self.released.set()


@dataclass
class FakeRepo:
    full_name: str
    git_dir: Path  # a bare repository: the "GitHub" remote
    default_branch: str = "main"
    id: int = 0
    issues: dict[int, Json] = field(default_factory=dict)
    issue_comments: dict[int, list[Json]] = field(default_factory=dict)
    pulls: dict[int, Json] = field(default_factory=dict)
    review_comments: dict[int, list[Json]] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)
    stacks: dict[int, Json] = field(default_factory=dict)  # stacked pull requests, by number
    merge_requests: dict[str, Json] = field(default_factory=dict)  # merge-async, by uuid
    reviews: dict[int, list[Json]] = field(default_factory=dict)  # pull number -> reviews
    resolved_threads: set[int] = field(default_factory=set)  # ids of threads' first comments


class FakeGitHub:
    def __init__(self, *, app_id: str = "4242", public_key: str | None = None) -> None:
        self.app_id = app_id
        self.public_key = public_key
        self.repos: dict[str, FakeRepo] = {}
        self.installations: dict[int, Json] = {}
        self.personal_tokens: set[str] = set()
        self.tokens: dict[str, tuple[int, set[str] | None, float]] = {}
        self.token_lifetime = 3600.0
        self.max_per_page = 100
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.requests: list[tuple[str, str]] = []
        self.token_requests: list[Json] = []
        self.comment_edits: Counter[int] = Counter()  # issue comment id -> times edited
        self.review_comment_edits: Counter[int] = Counter()  # review comment id -> times
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()
        # OAuth (sign in with GitHub): registered OAuth Apps, the person who "signs in" at
        # the authorize page, codes handed out and user access tokens issued.
        self.oauth_apps: dict[str, str] = {}
        self.oauth_user: Json | None = None
        self.oauth_codes: dict[str, tuple[str, Json]] = {}
        self.oauth_tokens: dict[str, Json] = {}
        self.base_url = ""
        self.app = self._build()

    # -- arranging ------------------------------------------------------------------------

    def add_repo(self, full_name: str, git_dir: Path, default_branch: str = "main") -> FakeRepo:
        repo = FakeRepo(full_name, git_dir, default_branch, id=next(self._ids))
        self.repos[full_name] = repo
        return repo

    def add_installation(self, installation_id: int, account: str, repos: list[str]) -> None:
        self.installations[installation_id] = {"account": account, "repositories": repos}

    def set_permission(self, full_name: str, login: str, permission: str) -> None:
        self.repos[full_name].permissions[login] = permission

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        message: str = "API rate limit exceeded",
        times: int = 1,
    ) -> None:
        """The next ``times`` requests matching ``method`` and ``path_pattern`` (a regex
        searched in the path) get ``status`` with ``headers`` instead of their answer."""
        self.faults.append(
            Fault(
                method.upper(),
                re.compile(path_pattern),
                status,
                headers or {},
                {
                    "message": message,
                    "documentation_url": "https://docs.github.com/rest/rate-limit",
                },
                times,
            )
        )

    def hold(self, method: str, path_pattern: str, *, until: int | None = None) -> Hold:
        """Hold the requests matching ``method`` and ``path_pattern`` (a regex searched in the
        path) until the returned hold is released, or until ``until`` of them wait at once."""
        hold = Hold(method.upper(), re.compile(path_pattern), until)
        with self._lock:
            self.holds.append(hold)
        return hold

    def add_oauth_app(self, client_id: str, client_secret: str) -> None:
        self.oauth_apps[client_id] = client_secret

    def sign_in_as(
        self,
        login: str,
        *,
        user_id: int,
        email: str | None = None,
        verified: bool = True,
        name: str = "",
    ) -> None:
        """The person who approves the next authorization requests at /login/oauth/authorize,
        with ``email`` as their primary address."""
        emails = [
            {
                "email": f"{login}@users.noreply.github.com",
                "primary": False,
                "verified": True,
                "visibility": None,
            }
        ]
        if email is not None:
            emails.insert(
                0, {"email": email, "primary": True, "verified": verified, "visibility": "public"}
            )
        self.oauth_user = {
            "login": login,
            "id": user_id,
            "name": name or None,
            "type": "User",
            "html_url": f"https://github.com/{login}",
            "emails": emails,
        }

    @staticmethod
    def user(login: str, *, bot: bool = False) -> Json:
        return {
            "login": login,
            "id": abs(hash(login)) % 10**7,
            "type": "Bot" if bot else "User",
            "html_url": f"https://github.com/{login}",
        }

    def repository_json(self, full_name: str) -> Json:
        repo = self.repos[full_name]
        owner, _, name = full_name.partition("/")
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": name,
            "full_name": full_name,
            "private": True,
            "owner": self.user(owner),
            "html_url": f"https://github.com/{full_name}",
            "clone_url": str(repo.git_dir),
            "default_branch": repo.default_branch,
        }

    def add_issue(
        self,
        full_name: str,
        title: str,
        body: str,
        *,
        author: str = "octocat",
        labels: tuple[str, ...] = (),
    ) -> Json:
        with self._lock:
            repo = self.repos[full_name]
            number = self._next_number(repo)
            issue = {
                "id": next(self._ids),
                "node_id": f"I_{number}",
                "number": number,
                "title": title,
                "body": body,
                "state": "open",
                "locked": False,
                "labels": [self._label(name) for name in labels],
                "user": self.user(author),
                "author_association": "NONE",
                "comments": 0,
                "html_url": f"https://github.com/{full_name}/issues/{number}",
                "url": f"{self.base_url}/repos/{full_name}/issues/{number}",
                "created_at": _now_iso(),
                "updated_at": _now_iso(),
                "closed_at": None,
            }
            repo.issues[number] = issue
            repo.issue_comments[number] = []
            return issue

    def add_issue_comment(self, full_name: str, number: int, body: str, author: str) -> Json:
        with self._lock:
            return self._issue_comment(self.repos[full_name], number, body, self.user(author))

    def add_review_comment(
        self, full_name: str, number: int, *, body: str, path: str, line: int, author: str
    ) -> Json:
        with self._lock:
            repo = self.repos[full_name]
            pull = repo.pulls[number]
            return self._review_comment(
                repo,
                number,
                {"body": body, "path": path, "line": line, "side": "RIGHT"},
                self.user(author),
                pull["head"]["sha"],
            )

    def edit_review_comment(
        self, full_name: str, comment_id: int, body: str, *, updated_at: float | None = None
    ) -> Json:
        """A person edits a review comment on GitHub (at ``updated_at``, epoch seconds)."""
        with self._lock:
            found = self._find_review_comment(self.repos[full_name], comment_id)
            assert found is not None, f"no review comment {comment_id}"
            found[1]["body"], found[1]["updated_at"] = body, _now_iso(updated_at)
            return dict(found[1])

    def thread_resolved(self, full_name: str, comment_id: int) -> bool:
        """Whether the review thread that ``comment_id`` opened is resolved."""
        with self._lock:
            return comment_id in self.repos[full_name].resolved_threads

    def _find_review_comment(self, repo: FakeRepo, comment_id: int) -> tuple[int, Json] | None:
        for number, listed in repo.review_comments.items():
            for comment in listed:
                if comment["id"] == comment_id:
                    return number, comment
        return None

    @staticmethod
    def _label(name: str) -> Json:
        return {"id": abs(hash(name)) % 10**7, "name": name, "color": "ededed"}

    def _next_number(self, repo: FakeRepo) -> int:
        # Issues and pull requests share one sequence of numbers, as on GitHub.
        return max([0, *repo.issues, *repo.pulls]) + 1

    # -- the server -----------------------------------------------------------------------

    @contextmanager
    def serve(self) -> Iterator[str]:
        with socket_port() as port:
            self.base_url = f"http://127.0.0.1:{port}"
            config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            deadline = time.monotonic() + 10
            while not server.started:
                if time.monotonic() > deadline:
                    raise RuntimeError("the fake GitHub server did not start")
                time.sleep(0.02)
            try:
                yield self.base_url
            finally:
                server.should_exit = True
                thread.join(timeout=10)

    def _build(self) -> FastAPI:
        app = FastAPI(title="fake GitHub")
        fake = self

        @app.middleware("http")
        async def gate(request: Request, call_next: Any) -> Response:
            path = request.url.path
            with fake._lock:
                fake.requests.append((request.method, path))
                fault = next(
                    (
                        f
                        for f in fake.faults
                        if f.remaining > 0 and f.method == request.method and f.path.search(path)
                    ),
                    None,
                )
                if fault is not None:
                    fault.remaining -= 1
                hold = next(
                    (
                        h
                        for h in fake.holds
                        if not h.released.is_set()
                        and h.method == request.method
                        and h.path.search(path)
                    ),
                    None,
                )
            if hold is not None:
                await asyncio.to_thread(hold.wait)
            if fault is not None:
                return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
            problem = fake._authorize(request)
            if problem is not None:
                return JSONResponse(
                    {"message": problem, "documentation_url": "https://docs.github.com/rest"},
                    status_code=401,
                )
            response: Response = await call_next(request)
            reset = int(time.time()) + 3600
            response.headers.update(
                {
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": "4999",
                    "x-ratelimit-reset": str(reset),
                    "x-ratelimit-used": "1",
                    "x-ratelimit-resource": "core",
                    "x-github-api-version-selected": "2022-11-28",
                }
            )
            return response

        self._app_routes(app)
        self._oauth_routes(app)
        self._issue_routes(app)
        self._pull_routes(app)
        # GitHub's stacked pull requests (the Stacks API and the asynchronous merge).
        from errands.testing.fake_github_stacks import stack_routes

        stack_routes(self, app)
        self._review_sync_routes(app)
        return app

    def _authorize(self, request: Request) -> str | None:
        path = request.url.path
        if path.startswith("/login/oauth/"):  # the web flow: no API credentials
            return None
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() not in ("bearer", "token") or not credential:
            return "Requires authentication"
        if path in ("/user", "/user/emails"):
            with self._lock:
                return None if credential in self.oauth_tokens else "Bad credentials"
        app_level = path.startswith("/app") or path.endswith("/installation")
        if app_level:
            if self.public_key is None:
                return "A JSON web token could not be decoded"
            try:
                claims = jwt.decode(
                    credential,
                    self.public_key,
                    algorithms=["RS256"],
                    options={"require": ["iat", "exp", "iss"]},
                )
            except jwt.PyJWTError as exc:
                return f"A JSON web token could not be decoded ({type(exc).__name__})"
            if str(claims["iss"]) != self.app_id:
                return "Integration not found"
            if claims["exp"] - claims["iat"] > 660:
                return "'Expiration time' claim ('exp') is too far in the future"
            return None
        with self._lock:
            if credential in self.personal_tokens:
                return None
            found = self.tokens.get(credential)
        if found is None:
            return "Bad credentials"
        _, repos, expires = found
        if expires <= time.time():
            return "Bad credentials"
        match = re.match(r"^/repos/([^/]+/[^/]+)", path)
        if match and repos is not None and match.group(1).split("/")[1] not in repos:
            return "Resource not accessible by integration"
        return None

    # -- routes: App and repositories -----------------------------------------------------

    def _app_routes(self, app: FastAPI) -> None:
        fake = self

        @app.post("/app/installations/{installation_id}/access_tokens", status_code=201)
        async def access_token(installation_id: int, request: Request) -> Response:
            body = await request.json() if await request.body() else {}
            with fake._lock:
                installation = fake.installations.get(installation_id)
                if installation is None:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                names = body.get("repositories")
                fake.token_requests.append({"installation": installation_id, **body})
                token = f"ghs_{secrets.token_hex(18)}"
                expires = time.time() + fake.token_lifetime
                fake.tokens[token] = (installation_id, set(names) if names else None, expires)
            repositories = [
                {"name": n, "full_name": f"{installation['account']}/{n}"}
                for n in (names or [r.partition("/")[2] for r in installation["repositories"]])
            ]
            return JSONResponse(
                {
                    "token": token,
                    "expires_at": _now_iso(expires),
                    "permissions": {"contents": "write", "issues": "write"},
                    "repository_selection": "selected",
                    "repositories": repositories,
                },
                status_code=201,
            )

        @app.get("/repos/{owner}/{name}/installation")
        def installation(owner: str, name: str) -> Response:
            full = f"{owner}/{name}"
            for installation_id, inst in fake.installations.items():
                if full in inst["repositories"]:
                    return JSONResponse(
                        {"id": installation_id, "account": fake.user(inst["account"])}
                    )
            return JSONResponse({"message": "Not Found"}, status_code=404)

        @app.get("/repos/{owner}/{name}")
        def repository(owner: str, name: str) -> Response:
            full = f"{owner}/{name}"
            if full not in fake.repos:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            return JSONResponse(fake.repository_json(full))

        @app.get("/repos/{owner}/{name}/collaborators/{login}/permission")
        def permission(owner: str, name: str, login: str) -> Response:
            repo = fake.repos[f"{owner}/{name}"]
            role = repo.permissions.get(login)
            if role is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            folded = {"maintain": "write", "triage": "read"}.get(role, role)
            return JSONResponse({"permission": folded, "role_name": role, "user": fake.user(login)})

    # -- routes: OAuth web flow (sign in with GitHub) ------------------------------------

    def _oauth_routes(self, app: FastAPI) -> None:
        fake = self

        @app.get("/login/oauth/authorize")
        def authorize(request: Request) -> Response:
            query = request.query_params
            client_id, redirect_uri = query.get("client_id", ""), query.get("redirect_uri", "")
            if client_id not in fake.oauth_apps or not redirect_uri:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            if fake.oauth_user is None:
                return JSONResponse({"message": "nobody signs in"}, status_code=403)
            code = secrets.token_hex(10)
            with fake._lock:
                fake.oauth_codes[code] = (client_id, fake.oauth_user)
            back = urlencode({"code": code, "state": query.get("state", "")})
            return Response(status_code=302, headers={"location": f"{redirect_uri}?{back}"})

        @app.post("/login/oauth/access_token")
        async def access_token(request: Request) -> Response:
            form = await request.form()
            client_id = str(form.get("client_id", ""))
            client_secret = str(form.get("client_secret", ""))
            # GitHub answers these errors with 200 and an "error" field.
            if fake.oauth_apps.get(client_id) != client_secret or not client_secret:
                return JSONResponse(
                    {
                        "error": "incorrect_client_credentials",
                        "error_description": "The client_id and/or client_secret passed are "
                        "incorrect.",
                    }
                )
            with fake._lock:
                found = fake.oauth_codes.pop(str(form.get("code", "")), None)
            if found is None or found[0] != client_id:
                return JSONResponse(
                    {
                        "error": "bad_verification_code",
                        "error_description": "The code passed is incorrect or expired.",
                    }
                )
            token = "gho_" + secrets.token_hex(18)
            with fake._lock:
                fake.oauth_tokens[token] = found[1]
            return JSONResponse(
                {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}
            )

        def who(request: Request) -> Json:
            credential = request.headers.get("authorization", "").partition(" ")[2]
            with fake._lock:
                return fake.oauth_tokens[credential]

        @app.get("/user")
        def user(request: Request) -> Response:
            found = who(request)
            return JSONResponse({k: v for k, v in found.items() if k != "emails"})

        @app.get("/user/emails")
        def emails(request: Request) -> Response:
            return JSONResponse(who(request)["emails"])

    # -- routes: issues -------------------------------------------------------------------

    def _page(self, request: Request, items: list[Json]) -> Response:
        """One page of ``items`` with a ``Link`` header, as GitHub paginates."""
        params = dict(request.query_params)
        per_page = min(int(params.get("per_page", 30)), self.max_per_page)
        page = int(params.get("page", 1))
        start = (page - 1) * per_page
        headers = {}
        links = []
        last = max(1, -(-len(items) // per_page))
        base = f"{self.base_url}{request.url.path}"
        if page < last:
            links.append(f'<{base}?{urlencode({**params, "page": page + 1})}>; rel="next"')
            links.append(f'<{base}?{urlencode({**params, "page": last})}>; rel="last"')
        if links:
            headers["link"] = ", ".join(links)
        return JSONResponse(items[start : start + per_page], headers=headers)

    def _issue_comment(self, repo: FakeRepo, number: int, body: str, user: Json) -> Json:
        comment = {
            "id": next(self._ids),
            "node_id": "IC_x",
            "body": body,
            "user": user,
            "author_association": "NONE",
            "html_url": f"https://github.com/{repo.full_name}/issues/{number}#issuecomment",
            "issue_url": f"{self.base_url}/repos/{repo.full_name}/issues/{number}",
            "created_at": _now_iso(),
            "updated_at": _now_iso(),
        }
        repo.issue_comments.setdefault(number, []).append(comment)
        if number in repo.issues:
            repo.issues[number]["comments"] += 1
        return comment

    def _issue_routes(self, app: FastAPI) -> None:
        fake = self

        @app.get("/repos/{owner}/{name}/issues")
        def issues(owner: str, name: str, request: Request) -> Response:
            repo = fake.repos[f"{owner}/{name}"]
            state = request.query_params.get("state", "open")
            with fake._lock:
                found = [
                    i
                    for _, i in sorted(repo.issues.items())
                    if state == "all" or i["state"] == state
                ]
            return fake._page(request, found)

        @app.get("/repos/{owner}/{name}/issues/{number}")
        def issue(owner: str, name: str, number: int) -> Response:
            found = fake.repos[f"{owner}/{name}"].issues.get(number)
            if found is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            return JSONResponse(found)

        @app.get("/repos/{owner}/{name}/issues/{number}/comments")
        def comments(owner: str, name: str, number: int, request: Request) -> Response:
            repo = fake.repos[f"{owner}/{name}"]
            with fake._lock:
                found = list(repo.issue_comments.get(number, []))
            return fake._page(request, found)

        @app.post("/repos/{owner}/{name}/issues/{number}/comments", status_code=201)
        async def comment(owner: str, name: str, number: int, request: Request) -> Response:
            body = await request.json()
            repo = fake.repos[f"{owner}/{name}"]
            if not isinstance(body.get("body"), str) or not body["body"]:
                return _invalid("body", "missing_field")
            with fake._lock:
                if number not in repo.issues and number not in repo.pulls:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                created = fake._issue_comment(
                    repo, number, body["body"], fake.user("errands[bot]", bot=True)
                )
            return JSONResponse(created, status_code=201)

        @app.patch("/repos/{owner}/{name}/issues/comments/{comment_id}")
        async def edit_comment(
            owner: str, name: str, comment_id: int, request: Request
        ) -> Response:
            body = await request.json()
            repo = fake.repos[f"{owner}/{name}"]
            if not isinstance(body.get("body"), str) or not body["body"]:
                return _invalid("body", "missing_field")
            with fake._lock:
                for listed in repo.issue_comments.values():
                    for found in listed:
                        if found["id"] == comment_id:
                            found["body"], found["updated_at"] = body["body"], _now_iso()
                            fake.comment_edits[comment_id] += 1
                            return JSONResponse(found)
            return JSONResponse({"message": "Not Found"}, status_code=404)

    # -- routes: pull requests ------------------------------------------------------------

    def _head_sha(self, repo: FakeRepo, ref: str) -> str | None:
        result = _git(repo.git_dir, "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}")
        return result.stdout.strip() or None

    def _pull_json(self, repo: FakeRepo, pull: Json) -> Json:
        head_ref = pull["head"]["ref"]
        if pull["state"] == "open":
            pull["head"]["sha"] = self._head_sha(repo, head_ref) or pull["head"]["sha"]
        from errands.testing.fake_github_stacks import stack_summary

        summary = stack_summary(repo, pull["number"])
        if summary is not None:
            pull["stack"] = summary
        else:
            pull.pop("stack", None)
        return pull

    def _review_comment(
        self, repo: FakeRepo, number: int, body: Json, user: Json, commit_id: str
    ) -> Json:
        comment = {
            "id": next(self._ids),
            "node_id": "PRRC_x",
            "pull_request_review_id": next(self._ids),
            "body": body["body"],
            "path": body["path"],
            "line": body["line"],
            "original_line": body["line"],
            "side": body.get("side", "RIGHT"),
            "start_line": body.get("start_line"),
            "start_side": body.get("start_side"),
            "commit_id": commit_id,
            "original_commit_id": commit_id,
            "in_reply_to_id": body.get("in_reply_to_id"),
            "user": user,
            "author_association": "NONE",
            "html_url": f"https://github.com/{repo.full_name}/pull/{number}#discussion",
            "pull_request_url": f"{self.base_url}/repos/{repo.full_name}/pulls/{number}",
            "created_at": _now_iso(),
            "updated_at": _now_iso(),
        }
        repo.review_comments.setdefault(number, []).append(comment)
        return comment

    def _pull_routes(self, app: FastAPI) -> None:
        fake = self

        @app.get("/repos/{owner}/{name}/pulls")
        def pulls(owner: str, name: str, request: Request) -> Response:
            repo = fake.repos[f"{owner}/{name}"]
            head = request.query_params.get("head")
            state = request.query_params.get("state", "open")
            with fake._lock:
                found = [
                    fake._pull_json(repo, p)
                    for _, p in sorted(repo.pulls.items())
                    if (state == "all" or p["state"] == state)
                    and (head is None or p["head"]["label"] == head)
                ]
            return fake._page(request, found)

        @app.post("/repos/{owner}/{name}/pulls", status_code=201)
        async def create_pull(owner: str, name: str, request: Request) -> Response:
            body = await request.json()
            full = f"{owner}/{name}"
            repo = fake.repos[full]
            for key in ("title", "head", "base"):
                if not isinstance(body.get(key), str):
                    return _invalid(key, "missing_field")
            with fake._lock:
                head_sha = fake._head_sha(repo, body["head"])
                if head_sha is None:
                    return _invalid("head", "invalid")
                label = f"{owner}:{body['head']}"
                if any(
                    p["head"]["label"] == label and p["state"] == "open"
                    for p in repo.pulls.values()
                ):
                    return JSONResponse(
                        {
                            "message": "Validation Failed",
                            "errors": [
                                {
                                    "resource": "PullRequest",
                                    "code": "custom",
                                    "message": f"A pull request already exists for {label}.",
                                }
                            ],
                        },
                        status_code=422,
                    )
                number = fake._next_number(repo)
                pull = {
                    "id": next(fake._ids),
                    "node_id": f"PR_{number}",
                    "number": number,
                    "state": "open",
                    "locked": False,
                    "title": body["title"],
                    "body": body.get("body"),
                    "user": fake.user("errands[bot]", bot=True),
                    "html_url": f"https://github.com/{full}/pull/{number}",
                    "url": f"{fake.base_url}/repos/{full}/pulls/{number}",
                    "head": {
                        "label": label,
                        "ref": body["head"],
                        "sha": head_sha,
                        "repo": fake.repository_json(full),
                    },
                    "base": {
                        "label": f"{owner}:{body['base']}",
                        "ref": body["base"],
                        "sha": fake._head_sha(repo, body["base"]),
                        "repo": fake.repository_json(full),
                    },
                    "draft": False,
                    "merged": False,
                    "merged_at": None,
                    "merge_commit_sha": None,
                    "created_at": _now_iso(),
                    "updated_at": _now_iso(),
                }
                repo.pulls[number] = pull
            return JSONResponse(pull, status_code=201)

        @app.get("/repos/{owner}/{name}/pulls/{number}")
        def get_pull(owner: str, name: str, number: int) -> Response:
            repo = fake.repos[f"{owner}/{name}"]
            with fake._lock:
                pull = repo.pulls.get(number)
                if pull is None:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                return JSONResponse(fake._pull_json(repo, pull))

        @app.patch("/repos/{owner}/{name}/pulls/{number}")
        async def update_pull(owner: str, name: str, number: int, request: Request) -> Response:
            body = await request.json()
            repo = fake.repos[f"{owner}/{name}"]
            with fake._lock:
                pull = repo.pulls[number]
                if "base" in body and "stack" in fake._pull_json(repo, pull):
                    # GitHub refuses any base in a PATCH of a stacked pull request.
                    return _invalid("base", "invalid")
                for key in ("title", "body", "state"):
                    if key in body:
                        pull[key] = body[key]
                return JSONResponse(fake._pull_json(repo, pull))

        @app.get("/repos/{owner}/{name}/pulls/{number}/comments")
        def review_comments(owner: str, name: str, number: int, request: Request) -> Response:
            repo = fake.repos[f"{owner}/{name}"]
            with fake._lock:
                found = list(repo.review_comments.get(number, []))
            return fake._page(request, found)

        @app.post("/repos/{owner}/{name}/pulls/{number}/comments", status_code=201)
        async def create_review_comment(
            owner: str, name: str, number: int, request: Request
        ) -> Response:
            body = await request.json()
            repo = fake.repos[f"{owner}/{name}"]
            for key in ("body", "commit_id", "path"):
                if not isinstance(body.get(key), str):
                    return _invalid(key, "missing_field")
            if not isinstance(body.get("line"), int) or body.get("side") not in ("LEFT", "RIGHT"):
                return _invalid("line", "invalid")
            with fake._lock:
                if number not in repo.pulls:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                created = fake._review_comment(
                    repo, number, body, fake.user("errands[bot]", bot=True), body["commit_id"]
                )
            return JSONResponse(created, status_code=201)

        @app.post(
            "/repos/{owner}/{name}/pulls/{number}/comments/{comment_id}/replies", status_code=201
        )
        async def reply(
            owner: str, name: str, number: int, comment_id: int, request: Request
        ) -> Response:
            body = await request.json()
            repo = fake.repos[f"{owner}/{name}"]
            with fake._lock:
                parent = next(
                    (c for c in repo.review_comments.get(number, []) if c["id"] == comment_id),
                    None,
                )
                if parent is None:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                created = fake._review_comment(
                    repo,
                    number,
                    {
                        "body": body["body"],
                        "path": parent["path"],
                        "line": parent["line"],
                        "side": parent["side"],
                        "in_reply_to_id": comment_id,
                    },
                    fake.user("errands[bot]", bot=True),
                    parent["commit_id"],
                )
            return JSONResponse(created, status_code=201)

        @app.put("/repos/{owner}/{name}/pulls/{number}/merge")
        async def merge(owner: str, name: str, number: int, request: Request) -> Response:
            body = await request.json()
            repo = fake.repos[f"{owner}/{name}"]
            with fake._lock:
                pull = repo.pulls.get(number)
                if pull is None:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                if pull["merged"] or pull["state"] != "open":
                    return JSONResponse(
                        {"message": "Pull Request is not mergeable"}, status_code=405
                    )
                if "stack" in fake._pull_json(repo, pull):
                    # GitHub: a stack merges only through the asynchronous merge API.
                    return JSONResponse(
                        {"message": "Stacked pull requests must be merged with merge-async."},
                        status_code=405,
                    )
                return fake._squash(repo, pull, body)

    # -- routes: review sync (edit, delete, threads over GraphQL, reviews) ------------------

    def _review_sync_routes(self, app: FastAPI) -> None:
        fake = self

        @app.get("/repos/{owner}/{name}/pulls/comments/{comment_id}")
        def get_review_comment(owner: str, name: str, comment_id: int) -> Response:
            with fake._lock:
                found = fake._find_review_comment(fake.repos[f"{owner}/{name}"], comment_id)
                if found is None:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                return JSONResponse(found[1])

        @app.patch("/repos/{owner}/{name}/pulls/comments/{comment_id}")
        async def edit_review_comment(
            owner: str, name: str, comment_id: int, request: Request
        ) -> Response:
            body = await request.json()
            if not isinstance(body.get("body"), str) or not body["body"]:
                return _invalid("body", "missing_field")
            with fake._lock:
                found = fake._find_review_comment(fake.repos[f"{owner}/{name}"], comment_id)
                if found is None:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                found[1]["body"], found[1]["updated_at"] = body["body"], _now_iso()
                fake.review_comment_edits[comment_id] += 1
                return JSONResponse(found[1])

        @app.delete("/repos/{owner}/{name}/pulls/comments/{comment_id}")
        def delete_review_comment(owner: str, name: str, comment_id: int) -> Response:
            repo = fake.repos[f"{owner}/{name}"]
            with fake._lock:
                found = fake._find_review_comment(repo, comment_id)
                if found is None:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                repo.review_comments[found[0]].remove(found[1])
                repo.resolved_threads.discard(comment_id)
            return Response(status_code=204)

        @app.get("/repos/{owner}/{name}/pulls/{number}/reviews")
        def reviews(owner: str, name: str, number: int, request: Request) -> Response:
            repo = fake.repos[f"{owner}/{name}"]
            with fake._lock:
                found = list(repo.reviews.get(number, []))
            return fake._page(request, found)

        @app.post("/repos/{owner}/{name}/pulls/{number}/reviews")
        async def create_review(owner: str, name: str, number: int, request: Request) -> Response:
            body = await request.json()
            repo = fake.repos[f"{owner}/{name}"]
            event = body.get("event")
            if event not in ("APPROVE", "REQUEST_CHANGES", "COMMENT"):
                return _invalid("event", "invalid")
            with fake._lock:
                pull = repo.pulls.get(number)
                if pull is None:
                    return JSONResponse({"message": "Not Found"}, status_code=404)
                if event != "COMMENT" and pull["user"]["login"] == "errands[bot]":
                    # As on GitHub: the author of a pull request cannot approve it (nor
                    # request changes of it).
                    return JSONResponse(
                        {
                            "message": "Unprocessable Entity",
                            "errors": ["Can not approve your own pull request"],
                        },
                        status_code=422,
                    )
                commit = body.get("commit_id") or fake._pull_json(repo, pull)["head"]["sha"]
                known = _git(repo.git_dir, "cat-file", "-e", f"{commit}^{{commit}}")
                if known.returncode != 0:
                    return _invalid("commit_id", "invalid")
                review = {
                    "id": next(fake._ids),
                    "node_id": "PRR_x",
                    "user": fake.user("errands[bot]", bot=True),
                    "body": body.get("body") or "",
                    "state": {"COMMENT": "COMMENTED", "APPROVE": "APPROVED"}.get(
                        event, "CHANGES_REQUESTED"
                    ),
                    "commit_id": commit,
                    "submitted_at": _now_iso(),
                }
                repo.reviews.setdefault(number, []).append(review)
            return JSONResponse(review)

        @app.post("/graphql")
        async def graphql(request: Request) -> Response:
            return JSONResponse(fake._graphql(await request.json()))

    def _graphql(self, body: Json) -> Json:
        """The two GraphQL operations Errands makes: a pull request's review threads, and
        (un)resolving one. Anything else is an error, as an unknown field is on GitHub."""
        query, variables = str(body.get("query", "")), body.get("variables") or {}
        with self._lock:
            if "reviewThreads" in query:
                repo = self.repos.get(f"{variables.get('owner')}/{variables.get('name')}")
                if repo is None:
                    return {"data": {"repository": None}, "errors": [{"message": "Not found"}]}
                roots = [
                    c
                    for c in repo.review_comments.get(int(variables.get("number", 0)), [])
                    if not c.get("in_reply_to_id")
                ]
                nodes = [
                    {
                        "id": f"PRRT_{c['id']}",
                        "isResolved": c["id"] in repo.resolved_threads,
                        "comments": {"nodes": [{"databaseId": c["id"]}]},
                    }
                    for c in roots
                ]
                page = {"hasNextPage": False, "endCursor": None}
                return {
                    "data": {
                        "repository": {
                            "pullRequest": {"reviewThreads": {"nodes": nodes, "pageInfo": page}}
                        }
                    }
                }
            for operation, resolved in (
                ("unresolveReviewThread", False),
                ("resolveReviewThread", True),
            ):
                if operation in query:
                    thread = str(variables.get("threadId", ""))
                    root = int(thread.removeprefix("PRRT_")) if thread[5:].isdigit() else 0
                    repo = next(
                        (r for r in self.repos.values() if self._find_review_comment(r, root)),
                        None,
                    )
                    if repo is None:
                        return {
                            "data": None,
                            "errors": [{"message": f"Could not resolve to a node: {thread}"}],
                        }
                    if resolved:
                        repo.resolved_threads.add(root)
                    else:
                        repo.resolved_threads.discard(root)
                    return {"data": {operation: {"thread": {"id": thread, "isResolved": resolved}}}}
        return {"data": None, "errors": [{"message": "This fake knows no such query."}]}

    def _squash(self, repo: FakeRepo, pull: Json, body: Json) -> Response:
        head = self._head_sha(repo, pull["head"]["ref"])
        if body.get("sha") and body["sha"] != head:
            return JSONResponse(
                {"message": "Head branch was modified. Review and try the merge again."},
                status_code=409,
            )
        base_ref = pull["base"]["ref"]
        base = self._head_sha(repo, base_ref)
        if head is None or base is None:
            return JSONResponse({"message": "Pull Request is not mergeable"}, status_code=405)
        tree = _git(repo.git_dir, "merge-tree", "--write-tree", base, head)
        if tree.returncode != 0:
            return JSONResponse({"message": "Pull Request is not mergeable"}, status_code=405)
        title = body.get("commit_title") or f"{pull['title']} (#{pull['number']})"
        message = f"{title}\n\n{body.get('commit_message') or ''}".rstrip() + "\n"
        commit = _git(
            repo.git_dir,
            "commit-tree",
            tree.stdout.split()[0],
            "-p",
            base,
            "-m",
            message,
        ).stdout.strip()
        moved = _git(repo.git_dir, "update-ref", f"refs/heads/{base_ref}", commit, base)
        if moved.returncode != 0:
            return JSONResponse({"message": "Base branch was modified."}, status_code=409)
        pull.update(
            state="closed",
            merged=True,
            merged_at=_now_iso(),
            merge_commit_sha=commit,
            closed_at=_now_iso(),
        )
        return JSONResponse(
            {"sha": commit, "merged": True, "message": "Pull Request successfully merged"}
        )


def _invalid(field_name: str, code: str) -> Response:
    return JSONResponse(
        {
            "message": "Validation Failed",
            "errors": [{"resource": "Issue", "field": field_name, "code": code}],
        },
        status_code=422,
    )


@contextmanager
def socket_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    yield port
