"""Helpers for tests: a running Errands server, polling, the scripted workflow model."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from errands.sandbox import bwrap_problem
from errands.settings import Settings
from errands.testing.scripted_llm import ChatRequest, Reply
from errands.web.app import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(settings: Settings, *, embedded_worker: bool = True) -> Iterator[str]:
    """``errands serve`` in-process: uvicorn on loopback with the embedded worker (or
    without, for tests where no job may run)."""
    port = free_port()
    app = create_app(settings, embedded_worker=embedded_worker)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def wait_for(
    check: Callable[[], Any], *, timeout: float = 60, interval: float = 0.1, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or check}: last value {last!r}")


def wait_for_state(
    client: httpx.Client, task_id: int, *states: str, timeout: float = 90
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        task: dict[str, Any] = client.get(f"/api/tasks/{task_id}").json()
        if task["state"] in states:
            return task
        if task["state"] == "failed" and "failed" not in states:
            raise AssertionError(f"task failed: {task['failure_reason']}")
        return None

    return wait_for(check, timeout=timeout, what=f"task {task_id} in {states}")  # type: ignore[no-any-return]


def settings_for(home: Any, llm_base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "model": "openai:scripted-model",
        "openai_base_url": llm_base_url,
        "openai_api_key": "sk-test-secret-value-123",
        "llm_max_retries": 2,
        "worker_poll_interval": 0.05,
        "worker_concurrency": 2,
        "command_timeout": 120,
        # Where bubblewrap is missing (a developer's machine; CI installs it) the workflow
        # tests still run, unisolated; the sandbox's own tests are skipped there.
        "sandbox": "auto" if bwrap_problem() is None else "none",
    }
    values.update(overrides)
    return Settings(**values)


# -- the scripted model for the calc sample repository -------------------------------------


def phase_of(req: ChatRequest) -> str:
    for line in req.system.splitlines():
        if line.startswith("Errands phase: "):
            return line.removeprefix("Errands phase: ").rstrip(".")
    return "unknown"


def final(**output: Any) -> Reply:
    return Reply.call("final_result", **output)


LISTED_COMMENT = re.compile(
    r"^Comment (\d+), left on (?:subtask (\d+)'s diff|the whole branch):$", re.MULTILINE
)


def listed_comments(req: ChatRequest) -> list[tuple[int, int | None]]:
    """The comments a route request lists, as Errands wrote them (outside the framed blocks,
    whose people's text cannot close them): (comment number, subtask it was left on)."""
    outside = re.sub(r"<review>\n.*?\n</review>", "", req.user, flags=re.DOTALL)
    return [(int(n), int(s) if s else None) for n, s in LISTED_COMMENT.findall(outside)]


def route_as_left(req: ChatRequest) -> Reply:
    """A route answer that sends every comment where it was left (the old default)."""
    return final(
        routes=[
            {
                "comment": n,
                "into": "new" if s is None else s,
                "reason": "left there" if s is None else f"left on subtask {s}",
            }
            for n, s in listed_comments(req)
        ]
    )


RESEARCH_OUTPUT = {
    "overview": "calc is a one-module library with a pytest suite.",
    "requirements": ["Add multiply(a, b) to calc.py", "Cover it with a test"],
    "relevant_files": [{"path": "calc.py", "reason": "holds the arithmetic functions"}],
    "risks": ["none worth naming"],
    "questions": [
        {
            "question": "Should multiply accept floats?",
            "reasoning": "Decides whether to coerce the inputs.",
            "options": [
                {"label": "Numbers", "requirement": "multiply works for ints and floats"},
                {"label": "Ints only", "requirement": "multiply rejects non-integers"},
            ],
            "recommended": 1,
        }
    ],
}

PLAN_OUTPUT = {
    "subtasks": [
        {"title": "Add multiply to calc", "steps": ["Define multiply(a, b) in calc.py"]},
        {"title": "Test multiply", "steps": ["Add tests/test_multiply.py"]},
    ],
    "out_of_scope": ["division"],
}


# Subtask 1 of the calc plan: the one edit that adds multiply.
ADD_MULTIPLY = Reply.call(
    "edit_file",
    path="calc.py",
    old_text="    return a + b\n",
    new_text="    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n",
)


class CalcScript:
    """Research asks one question; the plan has two subtasks; revise adds a docstring."""

    def __init__(self) -> None:
        self.phases: list[str] = []

    def __call__(self, req: ChatRequest) -> Reply:
        phase = phase_of(req)
        self.phases.append(phase)
        step = req.n_assistant
        if phase == "research":
            return [
                Reply.call("list_files", directory="."),
                Reply.call("read_file", path="calc.py"),
                final(**RESEARCH_OUTPUT),
            ][min(step, 2)]
        if phase == "plan":
            return final(**PLAN_OUTPUT)
        if phase == "route":
            return route_as_left(req)
        if phase == "execute" and "subtask 1 of 2" in req.user:
            return [
                ADD_MULTIPLY,
                final(summary="Added multiply(a, b).", decisions=["Kept it a plain product."]),
            ][min(step, 1)]
        if phase == "execute" and "subtask 2 of 2" in req.user:
            return [
                Reply.call(
                    "write_file",
                    path="tests/test_multiply.py",
                    content="from calc import multiply\n\n\ndef test_multiply():\n"
                    "    assert multiply(3, 4) == 12\n    assert multiply(0.5, 4) == 2.0\n",
                ),
                Reply.call("run_command", command="python3 -m pytest -q"),
                final(summary="Tested multiply with ints and floats.", decisions=[]),
            ][min(step, 2)]
        if phase == "revise":
            return [
                Reply.call(
                    "edit_file",
                    path="calc.py",
                    old_text="def multiply(a, b):\n",
                    new_text='def multiply(a, b):\n    """Return the product of a and b."""\n',
                ),
                final(summary="Documented multiply.", decisions=["Docstring as asked."]),
            ][min(step, 1)]
        raise AssertionError(f"unexpected request in phase {phase}: {req!r}")


class Override(CalcScript):
    """CalcScript, except where ``hook`` returns a reply (None: fall through)."""

    def __init__(self, hook: Callable[[ChatRequest, str], Reply | None]) -> None:
        super().__init__()
        self.hook = hook

    def __call__(self, req: ChatRequest) -> Reply:
        reply = self.hook(req, phase_of(req))
        return reply if reply is not None else super().__call__(req)


def events_of(client: httpx.Client, task_id: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = client.get(f"/api/tasks/{task_id}/events").json()
    return events


def add_project(client: httpx.Client, repo: Any, **extra: Any) -> int:
    response = client.post("/api/projects", json={"origin": str(repo), **extra})
    assert response.status_code == 201, response.text
    project_id: int = response.json()["id"]
    return project_id


def add_task(client: httpx.Client, project_id: int, title: str = "Add multiply") -> int:
    response = client.post(
        "/api/tasks", json={"project": project_id, "title": title, "body": "We need a*b."}
    )
    assert response.status_code == 201, response.text
    task_id: int = response.json()["id"]
    return task_id


def to_review(client: httpx.Client, repo: Any, **project: Any) -> tuple[int, dict[str, Any]]:
    """Run the calc task up to in_review (answering its one question)."""
    task_id = add_task(client, add_project(client, repo, **project))
    wait_for_state(client, task_id, "awaiting_answers")
    answered = client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 1})
    assert answered.status_code == 200, answered.text
    return task_id, wait_for_state(client, task_id, "in_review")


def comment_on_multiply(client: httpx.Client, task_id: int, body: str) -> None:
    """A blocking review comment on the line of subtask 1 that defines multiply."""
    diff = client.get(f"/api/tasks/{task_id}/diff", params={"subtask": 1}).json()
    line = next(
        ln["new_no"]
        for hunk in diff["files"][0]["hunks"]
        for ln in hunk["lines"]
        if ln["kind"] == "added" and "def multiply" in ln["text"]
    )
    added = client.post(
        f"/api/tasks/{task_id}/comments",
        json={"path": "calc.py", "line": line, "body": body, "kind": "blocking"},
    )
    assert added.status_code == 201, added.text


def wait_for_event(client: httpx.Client, task_id: int, kind: str, timeout: float = 60) -> Any:
    return wait_for(
        lambda: next((e for e in events_of(client, task_id) if e["kind"] == kind), None),
        timeout=timeout,
        what=f"event {kind}",
    )


def live_workspaces(home: Any) -> list[Any]:
    """Workspaces in use (parked ones, ``.idle-*``, are clean and waiting for the next job)."""
    from pathlib import Path

    root = Path(home) / "workspaces"
    return [p for p in root.glob("project-*/*") if not p.name.startswith(".idle-")]


def parked_are_clean(home: Any) -> bool:
    import subprocess
    from pathlib import Path

    for tree in (Path(home) / "workspaces").glob("project-*/.idle-*"):
        status = subprocess.run(
            ["git", "status", "--porcelain", "--ignored"],
            cwd=tree,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if status:
            return False
    return True


def owner_client(url: str) -> httpx.Client:
    """A client of the running server ``url`` signed up as its first user (the owner of the
    first organization), authenticated with an API token."""
    signup = httpx.post(
        f"{url}/api/auth/signup",
        json={"email": "owner@example.test", "password": "correct horse battery"},
    )
    assert signup.status_code == 201, signup.text
    token = httpx.post(
        f"{url}/api/tokens",
        json={"name": "test"},
        cookies=signup.cookies,
        headers={"X-CSRF-Token": signup.json()["csrf_token"]},
    ).json()["token"]
    return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})


def price_every_call(client: httpx.Client, model: str = "scripted-model") -> None:
    """A dollar per thousand tokens of ``model``: every call of the scripted model costs."""
    price = client.put(
        "/api/prices", json={"model": model, "input_per_mtok": 1000, "output_per_mtok": 1000}
    )
    assert price.status_code == 200, price.text
