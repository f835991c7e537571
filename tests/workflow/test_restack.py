"""Review v2 over real HTTP: fixes go into the subtask they were left on. Two revise rounds on
a 3-subtask task leave 3 commits, each verified; every subtask keeps its versions; the
interdiff of subtask 2 v1 → v2 is git range-diff's; a conflict while restacking is resolved
by the agent and verified."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.conftest import git_range_diff, run_git
from tests.support import (
    add_project,
    add_task,
    events_of,
    final,
    phase_of,
    route_as_left,
    running_server,
    settings_for,
    wait_for_state,
)

PLAN = {
    "subtasks": [
        {"title": "Add multiply", "steps": ["multiply(a, b) in calc.py"]},
        {"title": "Add double", "steps": ["double(x) in ops.py"]},
        {"title": "Test double", "steps": ["tests/test_ops.py"]},
    ],
    "out_of_scope": [],
}
EXECUTE = {
    "subtask 1 of 3": Reply.call(
        "edit_file",
        path="calc.py",
        old_text="    return a + b\n",
        new_text="    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n",
    ),
    "subtask 2 of 3": Reply.call(
        "write_file", path="ops.py", content="def double(x):\n    return 2 * x\n"
    ),
    "subtask 3 of 3": Reply.call(
        "write_file",
        path="tests/test_ops.py",
        content="from ops import double\n\n\ndef test_double():\n    assert double(4) == 8\n",
    ),
}
# What each revise session does, by the subtask it revises and how many times it was revised.
FIXES = {
    (2, 1): Reply.call(
        "edit_file", path="ops.py", old_text="    return 2 * x\n", new_text="    return x + x\n"
    ),
    (1, 1): Reply.call(
        "edit_file",
        path="calc.py",
        old_text="def multiply(a, b):\n",
        new_text='def multiply(a, b):\n    """Return the product of a and b."""\n',
    ),
    (2, 2): Reply.call(
        "edit_file",
        path="ops.py",
        old_text="def double(x):\n",
        new_text='def double(x):\n    """Twice x."""\n',
    ),
}


class Script:
    def __init__(self) -> None:
        self.revised: dict[int, int] = {}

    def __call__(self, req: ChatRequest) -> Reply:
        phase = phase_of(req)
        if phase == "research":
            return final(
                overview="calc.", requirements=["ops"], relevant_files=[], risks=[], questions=[]
            )
        if phase == "plan":
            return final(**PLAN)
        if phase == "execute":
            which = next(k for k in EXECUTE if k in req.user)
            if req.n_assistant == 0:
                return EXECUTE[which]
            return final(summary=f"Did {which}.", decisions=[])
        if phase == "route":
            return route_as_left(req)
        if phase == "revise":
            position = next(p for p in (1, 2, 3) if f"revising subtask {p} of 3" in req.user)
            if req.n_assistant == 0:
                self.revised[position] = self.revised.get(position, 0) + 1
                return FIXES[(position, self.revised[position])]
            return final(summary=f"Fixed subtask {position} as asked.", decisions=["As asked."])
        raise AssertionError(f"unexpected phase {phase}")


def _comment(client: httpx.Client, task_id: int, subtask: int, path: str, body: str) -> None:
    diff = client.get(f"/api/tasks/{task_id}/diff", params={"subtask": subtask}).json()
    line = next(
        ln["new_no"]
        for f in diff["files"]
        if f["path"] == path
        for h in f["hunks"]
        for ln in h["lines"]
        if ln["kind"] == "added"
    )
    made = client.post(
        f"/api/tasks/{task_id}/comments",
        json={"path": path, "line": line, "body": body, "subtask": subtask},
    )
    assert made.status_code == 201, made.text


def _revise(client: httpx.Client, task_id: int) -> dict[str, Any]:
    assert client.post(f"/api/tasks/{task_id}/request-changes").status_code == 200
    wait_for_state(client, task_id, "revising", timeout=10)
    return wait_for_state(client, task_id, "in_review")


def test_two_rounds_of_fixes_leave_one_verified_commit_per_subtask(
    sample_repo: Path, home: Path, tmp_path: Path
) -> None:
    script = Script()
    with ScriptedLLM(script) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        task_id = add_task(client, add_project(client, sample_repo), title="Add ops")
        task = wait_for_state(client, task_id, "in_review")
        first = {s["position"]: s["commit_sha"] for s in task["subtasks"]}
        assert [len(s["versions"]) for s in task["subtasks"]] == [1, 1, 1]

        # Round 1: a comment on subtask 2 only. Subtask 1 stays as it was.
        _comment(client, task_id, 2, "ops.py", "Write it as an addition.")
        task = _revise(client, task_id)
        subs = task["subtasks"]
        assert len(subs) == 3, "the fix went inside subtask 2, not on top"
        assert subs[0]["commit_sha"] == first[1] and len(subs[0]["versions"]) == 1
        assert [len(s["versions"]) for s in subs] == [1, 2, 2]
        assert [v["round"] for v in subs[1]["versions"]] == [1, 2]
        assert all(c["resolved"] for c in task["comments"])

        # Round 2: comments on subtasks 1 and 2: the whole stack is rebuilt.
        _comment(client, task_id, 1, "calc.py", "Document multiply.")
        _comment(client, task_id, 2, "ops.py", "Document double.")
        task = _revise(client, task_id)
        subs = task["subtasks"]
        assert [len(s["versions"]) for s in subs] == [2, 3, 3]
        assert [s["versions"][-1]["round"] for s in subs] == [3, 3, 3]
        assert all(s["state"] == "committed" and s["verified"] is True for s in subs)
        assert "Fixed subtask 2 as asked." in subs[1]["summary"]
        assert script.revised == {1: 1, 2: 2}, "subtask 3 needed no agent: it applied cleanly"

        # Three commits on the branch, one per subtask, in order; each passes the tests.
        branch = task["branch"]
        shas = run_git(sample_repo, "rev-list", "--reverse", f"main..{branch}").split()
        assert shas == [s["commit_sha"] for s in subs]
        for sha in shas:
            tree = tmp_path / f"at-{sha[:8]}"
            run_git(sample_repo, "worktree", "add", "-q", "--detach", str(tree), sha)
            tested = subprocess.run(
                ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                cwd=tree,
                check=False,
                capture_output=True,
                text=True,
            )
            assert tested.returncode == 0, tested.stdout
        calc_at_1 = run_git(sample_repo, "show", f"{shas[0]}:calc.py")
        assert "Return the product" in calc_at_1, "subtask 1's fix is in subtask 1"
        assert "x + x" in run_git(sample_repo, "show", f"{shas[1]}:ops.py")

        # Subtask 2, v1 → v2: exactly what git range-diff says, and only subtask 2's change.
        v1, v2 = (v["commit_sha"] for v in subs[1]["versions"][:2])
        inter = client.get(
            f"/api/tasks/{task_id}/interdiff", params={"subtask": 2, "old": 1, "new": 2}
        ).json()
        text = "".join(f"    {ln['outer']}{ln['inner']}\n" for ln in inter["lines"])
        assert text == git_range_diff(sample_repo, v1, v2)
        moved = {(ln["outer"], ln["inner"]) for ln in inter["lines"] if ln["kind"] == "line"}
        assert ("-", "+    return 2 * x") in moved and ("+", "+    return x + x") in moved
        # v2 → v3 of subtask 3 changed nothing of its own: only subtask 1 moved under it.
        same = client.get(
            f"/api/tasks/{task_id}/interdiff", params={"subtask": 3, "old": 2, "new": 3}
        ).json()
        assert same["same"] is True

        # A subtask's diff at an old version; the whole stack since round 1.
        old = client.get(f"/api/tasks/{task_id}/diff", params={"subtask": 2, "version": 1}).json()
        assert "2 * x" in str(old)
        since = client.get(f"/api/tasks/{task_id}/interdiff", params={"since_round": 1}).json()
        assert {f["path"] for f in since["files"]} == {"calc.py", "ops.py"}
        missing = client.get(
            f"/api/tasks/{task_id}/interdiff", params={"subtask": 2, "old": 1, "new": 9}
        )
        assert missing.status_code == 404 and "versions 1 to 3" in missing.text

        kinds = [e["kind"] for e in events_of(client, task_id)]
        assert kinds.count("restack.rebuilt") == 2 + 3
        routed = [e for e in events_of(client, task_id) if e["kind"] == "revise.started"]
        assert [r["into"] for r in routed[-1]["data"]["routes"]] == [1, 2]
        assert llm.script_errors == []


class ConflictScript:
    """Subtask 1 adds multiply; subtask 2 comments its last line and adds square under it.
    The fix to subtask 1 rewrites that same line, so subtask 2 no longer applies cleanly: its
    revise session is asked to resolve the conflict, and writes calc.py with both changes."""

    RESOLVED = (
        "def add(a, b):\n    return a + b\n\n\n"
        "def multiply(a, b):\n    return b * a  # the product\n\n\n"
        "def square(a):\n    return multiply(a, a)\n"
    )

    def __init__(self) -> None:
        self.conflict_prompts: list[str] = []

    def __call__(self, req: ChatRequest) -> Reply:
        phase = phase_of(req)
        if phase == "research":
            return final(
                overview="c", requirements=["r"], relevant_files=[], risks=[], questions=[]
            )
        if phase == "plan":
            return final(
                subtasks=[
                    {"title": "Add multiply", "steps": ["multiply"]},
                    {"title": "Add square", "steps": ["square"]},
                ],
                out_of_scope=[],
            )
        if phase == "route":
            return route_as_left(req)
        if phase == "execute" and req.n_assistant == 0:
            if "subtask 1 of 2" in req.user:
                return EXECUTE["subtask 1 of 3"]
            return Reply.call(
                "edit_file",
                path="calc.py",
                old_text="    return a * b\n",
                new_text="    return a * b  # the product\n\n\ndef square(a):\n"
                "    return multiply(a, a)\n",
            )
        if phase == "revise" and req.n_assistant == 0:
            if "revising subtask 1 of 2" in req.user:
                return Reply.call(
                    "edit_file",
                    path="calc.py",
                    old_text="    return a * b\n",
                    new_text="    return b * a\n",
                )
            self.conflict_prompts.append(req.user)
            return Reply.call("write_file", path="calc.py", content=self.RESOLVED)
        return final(summary="Done.", decisions=[])


def test_a_conflict_while_restacking_is_resolved_by_the_agent_and_verified(
    sample_repo: Path, home: Path
) -> None:
    script = ConflictScript()
    with ScriptedLLM(script) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        task_id = add_task(client, add_project(client, sample_repo), title="Square")
        wait_for_state(client, task_id, "in_review")
        _comment(client, task_id, 1, "calc.py", "Write b * a.")
        task = _revise(client, task_id)
        subs = task["subtasks"]
        assert [len(s["versions"]) for s in subs] == [2, 2]
        assert all(s["verified"] is True for s in subs)
        assert len(script.conflict_prompts) == 1
        assert "calc.py" in script.conflict_prompts[0]
        assert "conflict markers" in script.conflict_prompts[0]
        tip = run_git(sample_repo, "show", f"{subs[1]['commit_sha']}:calc.py")
        assert tip == ConflictScript.RESOLVED
        assert "return b * a" in run_git(sample_repo, "show", f"{subs[0]['commit_sha']}:calc.py")
        conflicts = [e for e in events_of(client, task_id) if e["kind"] == "restack.conflict"]
        assert [e["data"]["paths"] for e in conflicts] == [["calc.py"]]
        assert llm.script_errors == []
