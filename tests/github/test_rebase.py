"""A base branch that moved is rebased, not only flagged (issue 19.5), over real HTTP: the
webhook endpoint of a running Errands server, the fake GitHub API with a real bare repository
as its git remote, the scripted model. A clean move restacks and verifies every subtask and
updates the pull request; a conflicting one is resolved by the agent in the sandbox and
verified; a hostile base's files run only in the sandbox."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from errands.testing.fake_github import FakeGitHub
from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.github.conftest import INSTALLATION, REPO, KeyPair, app_settings, deliver, envelope
from tests.support import (
    events_of,
    final,
    phase_of,
    running_server,
    wait_for,
    wait_for_event,
    wait_for_state,
)

PLAN = {
    "subtasks": [
        {"title": "Add multiply", "steps": ["multiply(a, b) in calc.py"]},
        {"title": "Test multiply", "steps": ["tests/test_multiply.py"]},
    ],
    "out_of_scope": [],
}
MULTIPLY = "\n\ndef multiply(a, b):\n    return a * b\n"
# What the agent writes when restacking subtask 1 onto the conflicting base.
RESOLVED = "def add(a, b):\n    return int(a) + int(b)\n" + MULTIPLY


class Script:
    """No questions; two subtasks; a conflict prompt is answered with the resolved file."""

    def __init__(self) -> None:
        self.conflict_prompts: list[str] = []

    def __call__(self, req: ChatRequest) -> Reply:
        phase = phase_of(req)
        if phase == "research":
            return final(
                overview="calc.",
                requirements=["multiply"],
                relevant_files=[],
                risks=[],
                questions=[],
            )
        if phase == "plan":
            return final(**PLAN)
        if phase == "execute" and "subtask 1 of 2" in req.user:
            if req.n_assistant == 0:
                return Reply.call(
                    "edit_file",
                    path="calc.py",
                    old_text="    return a + b\n",
                    new_text="    return a + b\n" + MULTIPLY,
                )
            return final(summary="Added multiply.", decisions=[])
        if phase == "execute":
            if req.n_assistant == 0:
                return Reply.call(
                    "write_file",
                    path="tests/test_multiply.py",
                    content="from calc import multiply\n\n\ndef test_multiply():\n"
                    "    assert multiply(3, 4) == 12\n",
                )
            return final(summary="Tested multiply.", decisions=[])
        if phase == "revise" and "conflicted" in req.user:
            if req.n_assistant == 0:
                self.conflict_prompts.append(req.user)
                return Reply.call("write_file", path="calc.py", content=RESOLVED)
            return final(summary="Kept both: int() from main, multiply from us.", decisions=[])
        raise AssertionError(f"unexpected request in phase {phase}: {req.user[:200]}")


@contextmanager
def errands(home: Path, fake: FakeGitHub, key: KeyPair) -> Iterator[tuple[httpx.Client, Script]]:
    script = Script()
    with ScriptedLLM(script) as llm:
        settings = app_settings(home, llm.base_url, fake, key)
        with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield client, script
        assert llm.script_errors == []


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def move_main(remote: Path, scratch: Path, files: dict[str, str], message: str) -> str:
    """Someone pushes a commit to main on GitHub; returns the new tip."""
    if not scratch.exists():
        subprocess.run(["git", "clone", "-q", str(remote), str(scratch)], check=True)
        _git(scratch, "config", "user.name", "Colleague")
        _git(scratch, "config", "user.email", "colleague@example.com")
    _git(scratch, "pull", "-q", "origin", "main")
    for path, content in files.items():
        (scratch / path).parent.mkdir(parents=True, exist_ok=True)
        (scratch / path).write_text(content)
    _git(scratch, "add", "-A")
    _git(scratch, "commit", "-q", "-m", message)
    _git(scratch, "push", "-q", "origin", "HEAD:main")
    return _git(scratch, "rev-parse", "HEAD")


def push_delivery(
    client: httpx.Client, fake: FakeGitHub, before: str, after: str, ref: str = "refs/heads/main"
) -> None:
    answer = deliver(
        client,
        "push",
        envelope(
            fake,
            "admin-alice",
            ref=ref,
            before=before,
            after=after,
            deleted=False,
            commits=[],
        ),
    )
    assert answer.status_code in (200, 202), answer.text


def task_in_review(
    client: httpx.Client, fake: FakeGitHub, **project: Any
) -> tuple[dict[str, Any], int]:
    """A GitHub project (with the ``project`` settings) and a task of it in review with its
    pull request."""
    deliver(
        client,
        "installation",
        {
            "action": "created",
            "installation": {"id": INSTALLATION, "account": fake.user("acme")},
            "repositories": [{"id": 1, "name": "calc", "full_name": REPO, "private": True}],
            "sender": fake.user("admin-alice"),
        },
    )
    created = client.post("/api/github/projects", json={"repository": REPO})
    assert created.status_code == 201, created.text
    if project:
        changed = client.patch(f"/api/projects/{created.json()['id']}", json=project)
        assert changed.status_code == 200, changed.text
    made = client.post(
        "/api/tasks", json={"project": created.json()["id"], "title": "Multiply", "body": "a*b"}
    )
    assert made.status_code == 201, made.text
    task = wait_for_state(client, made.json()["id"], "in_review")
    pr = wait_for(
        lambda: client.get(f"/api/github/tasks/{task['id']}").json()["pull_request"],
        timeout=30,
        what="the pull request",
    )
    return task, int(pr)


def _rebased(client: httpx.Client, task_id: int, count: int) -> dict[str, Any]:
    wait_for(
        lambda: (
            len([e for e in events_of(client, task_id) if e["kind"] == "task.rebased"]) >= count
        ),
        timeout=120,
        what=f"rebase {count}",
    )
    return wait_for_state(client, task_id, "in_review")


def test_a_moved_base_is_restacked_verified_and_the_pull_request_updated(
    home: Path, fake_github: FakeGitHub, app_key: KeyPair, github_remote: Path, tmp_path: Path
) -> None:
    fake, scratch = fake_github, tmp_path / "colleague"
    host_mark = tmp_path / "pwned-by-the-base"
    with errands(home, fake, app_key) as (client, script):
        task, pr = task_in_review(client, fake)
        task_id, branch = task["id"], task["branch"]
        first = [s["commit_sha"] for s in task["subtasks"]]
        old_base = task["base_commit"]

        # 1. main moves cleanly (another file): the stack is restacked onto it, each subtask
        # verified again, the branch force-pushed (with lease), the PR shows the new head.
        clean = move_main(github_remote, scratch, {"NOTES.md": "notes\n"}, "Notes")
        push_delivery(client, fake, old_base, clean)
        task = _rebased(client, task_id, 1)
        assert task["base_commit"] == clean and task["base_moved_to"] is None
        tip = _git(github_remote, "rev-parse", branch)
        assert _git(github_remote, "merge-base", branch, "main") == clean
        assert _git(github_remote, "rev-list", "--count", f"main..{branch}") == "2"
        subs = task["subtasks"]
        assert [s["commit_sha"] for s in subs][-1] == tip
        assert all(s["commit_sha"] not in first for s in subs)
        assert [len(s["versions"]) for s in subs] == [2, 2]
        assert all(s["verified"] is True for s in subs)
        assert fake.repos[REPO].pulls[pr]["state"] == "open"
        pulled = client.get(f"/api/github/tasks/{task_id}").json()
        assert pulled["pull_request"] == pr
        assert fake._pull_json(fake.repos[REPO], fake.repos[REPO].pulls[pr])["head"]["sha"] == tip
        rebased = next(e for e in events_of(client, task_id) if e["kind"] == "task.rebased")
        assert rebased["data"]["old_base"] == old_base and rebased["data"]["new_base"] == clean
        assert rebased["data"]["conflicts"] == []
        page = client.get(f"/tasks/{task_id}").text
        assert 'id="rebase-note"' in page and clean[:10] in page
        assert script.conflict_prompts == []

        # 2. main moves again, conflicting with subtask 1, and carrying a conftest.py that
        # would run on whatever machine runs the tests: the agent resolves the conflict in
        # the sandbox, verification runs there (the file runs, in the sandbox only).
        hostile = (
            "import pathlib\n\n\n"
            "def pytest_terminal_summary(terminalreporter):\n"
            "    terminalreporter.write_line('HOSTILE-CONFTEST-RAN')\n"
            "    try:\n"
            f"        pathlib.Path({str(host_mark)!r}).write_text('pwned')\n"
            "    except OSError:\n"
            "        pass\n"
        )
        conflicting = move_main(
            github_remote,
            scratch,
            {"calc.py": "def add(a, b):\n    return int(a) + int(b)\n", "conftest.py": hostile},
            "Coerce",
        )
        push_delivery(client, fake, clean, conflicting)
        task = _rebased(client, task_id, 2)
        assert task["base_commit"] == conflicting
        assert len(script.conflict_prompts) == 1 and "calc.py" in script.conflict_prompts[0]
        subs = task["subtasks"]
        assert _git(github_remote, "show", f"{subs[0]['commit_sha']}:calc.py") == RESOLVED.strip()
        assert _git(github_remote, "merge-base", branch, "main") == conflicting
        assert all(s["verified"] is True for s in subs)
        assert "HOSTILE-CONFTEST-RAN" in str(subs[0]["verification"])  # it ran: sandboxed
        assert not host_mark.exists()
        events = events_of(client, task_id)
        [conflict] = [e for e in events if e["kind"] == "restack.conflict"]
        assert conflict["data"]["paths"] == ["calc.py"] and "moved base" in conflict["message"]
        last = [e for e in events if e["kind"] == "task.rebased"][-1]
        assert last["data"]["conflicts"] == [{"position": 1, "paths": ["calc.py"]}]
        assert "resolved conflicts in subtask(s) 1" in client.get(f"/tasks/{task_id}").text

        # 3. A late (or forged but signed) delivery naming a commit origin does not have:
        # nothing to rebase, the stack stays.
        push_delivery(client, fake, conflicting, "e" * 40)
        wait_for_event(client, task_id, "task.rebase_skipped")
        task = wait_for_state(client, task_id, "in_review")
        assert task["base_commit"] == conflicting and task["base_moved_to"] is None
        assert [s["commit_sha"] for s in task["subtasks"]] == [s["commit_sha"] for s in subs]
