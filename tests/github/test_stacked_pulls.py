"""Stacked pull requests (issue 19.5), over real HTTP against the fake GitHub speaking the
documented Stacks API and asynchronous merge: a project that asks for them publishes one pull
request per subtask, each based on the one below, linked as a GitHub stack and naming each
other; a moved base restacks them all; approval lands the stack bottom-up through GitHub's
stack merge (the synchronous merge endpoint refuses a stacked pull request)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from errands.testing.fake_github import FakeGitHub
from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.github.conftest import REPO, KeyPair, app_settings
from tests.github.test_rebase import _git, _rebased, move_main, push_delivery, task_in_review
from tests.support import events_of, final, phase_of, running_server, wait_for, wait_for_state

FILES = {
    1: ("ops_a.py", "def a():\n    return 1\n"),
    2: ("ops_b.py", "from ops_a import a\n\n\ndef b():\n    return a() + 1\n"),
    3: ("tests/test_ops.py", "from ops_b import b\n\n\ndef test_b():\n    assert b() == 2\n"),
}


def script(req: ChatRequest) -> Reply:
    phase = phase_of(req)
    if phase == "research":
        return final(overview="c", requirements=["ops"], relevant_files=[], risks=[], questions=[])
    if phase == "plan":
        return final(
            subtasks=[{"title": f"Part {k}", "steps": [FILES[k][0]]} for k in (1, 2, 3)],
            out_of_scope=[],
        )
    assert phase == "execute", phase
    k = next(k for k in (1, 2, 3) if f"subtask {k} of 3" in req.user)
    if req.n_assistant == 0:
        return Reply.call("write_file", path=FILES[k][0], content=FILES[k][1])
    return final(summary=f"Wrote part {k}.", decisions=[])


def test_a_stacked_project_publishes_one_pull_request_per_subtask_and_lands_the_stack(
    home: Path, fake_github: FakeGitHub, app_key: KeyPair, github_remote: Path, tmp_path: Path
) -> None:
    fake = fake_github
    repo = fake.repos[REPO]
    with ScriptedLLM(script) as llm:
        settings = app_settings(home, llm.base_url, fake, app_key)
        with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
            task, top = task_in_review(client, fake, stacked_pulls=True)
            task_id, branch = task["id"], task["branch"]
            commits = [s["commit_sha"] for s in task["subtasks"]]
            stack = wait_for(lambda: repo.stacks.get(1), timeout=60, what="the stack")
            # The descriptions name each other once every number is known.
            wait_for(
                lambda: all("(opening)" not in repo.pulls[n]["body"] for n in stack["numbers"]),
                timeout=60,
                what="the descriptions linking the stack",
            )

            # One pull request per subtask, each based on the one below; the task's is the top.
            pulls = [repo.pulls[n] for n in stack["numbers"]]
            assert len(pulls) == 3 and pulls[-1]["number"] == top
            heads = [p["head"]["ref"] for p in pulls]
            assert heads == [f"{branch}-1", f"{branch}-2", branch]
            assert [p["base"]["ref"] for p in pulls] == ["main", heads[0], heads[1]]
            assert [_git(github_remote, "rev-parse", h) for h in heads] == commits
            for k, pull in enumerate(pulls, start=1):
                assert pull["title"] == f"[{k}/3] Part {k}"
                for other in pulls:
                    assert f"#{other['number']}" in pull["body"]
                assert f"{k}. #{pull['number']} Part {k} ← this one" in pull["body"]
                summary = fake._pull_json(repo, pull)["stack"]
                assert (summary["position"], summary["size"]) == (k, 3)
            assert len(repo.pulls) == 3

            # A comment made in Errands on subtask 1 goes to subtask 1's own pull request.
            made = client.post(
                f"/api/tasks/{task_id}/comments",
                json={
                    "path": "ops_a.py",
                    "line": 2,
                    "body": "Why 1?",
                    "kind": "suggestion",
                    "subtask": 1,
                },
            )
            assert made.status_code == 201, made.text
            posted = wait_for(
                lambda: repo.review_comments.get(pulls[0]["number"]),
                timeout=60,
                what="the comment on pull request 1",
            )
            assert posted[0]["body"].startswith("Why 1?") and posted[0]["path"] == "ops_a.py"
            assert not repo.review_comments.get(top)

            # main moves: the task is rebased and every layer's branch follows.
            old_base = task["base_commit"]
            moved = move_main(github_remote, tmp_path / "c", {"NOTES.md": "n\n"}, "Notes")
            push_delivery(client, fake, old_base, moved)
            task = _rebased(client, task_id, 1)
            commits = [s["commit_sha"] for s in task["subtasks"]]
            wait_for(
                lambda: [_git(github_remote, "rev-parse", h) for h in heads] == commits,
                timeout=60,
                what="the layers' branches restacked",
            )
            assert len(repo.pulls) == 3 and len(repo.stacks) == 1

            # The synchronous merge endpoint refuses a stacked pull request (as GitHub does).
            refused = httpx.put(
                f"{fake.base_url}/repos/{REPO}/pulls/{top}/merge",
                json={"merge_method": "squash"},
                headers={"Authorization": f"Bearer {next(iter(fake.tokens))}"},
            )
            assert refused.status_code == 405

            # Someone pushes to a lower layer's branch on GitHub after review: approving does
            # not land it (only the top's head is named to the merge), the task stays in review.
            evil = tmp_path / "evil"
            subprocess.run(["git", "clone", "-q", str(github_remote), str(evil)], check=True)
            _git(evil, "checkout", "-q", heads[0])
            (evil / "evil.py").write_text("import os\n")
            _git(evil, "add", "-A")
            _git(evil, "-c", "user.name=M", "-c", "user.email=m@x", "commit", "-q", "-m", "x")
            _git(evil, "push", "-q", "origin", f"HEAD:{heads[0]}")
            main_before = _git(github_remote, "rev-parse", "main")
            assert client.post(f"/api/tasks/{task_id}/approve").status_code == 200
            failed = wait_for(
                lambda: client.get(f"/api/tasks/{task_id}").json()["merge_error"],
                timeout=60,
                what="the merge refused",
            )
            assert f"#{pulls[0]['number']}" in failed and "moved on GitHub" in failed
            assert _git(github_remote, "rev-parse", "main") == main_before
            assert client.get(f"/api/tasks/{task_id}").json()["state"] == "in_review"
            # The next sync (any delivery) puts the reviewed commit back on the layer.
            push_delivery(client, fake, main_before, main_before, ref="refs/heads/elsewhere")
            wait_for(
                lambda: _git(github_remote, "rev-parse", heads[0]) == commits[0],
                timeout=60,
                what="the reviewed commit back on the layer",
            )

            # Approved: GitHub's stack merge lands the three, bottom-up, one commit each.
            approved = client.post(f"/api/tasks/{task_id}/approve")
            assert approved.status_code == 200, approved.text
            task = wait_for_state(client, task_id, "merged")
            merged = [e for e in events_of(client, task_id) if e["kind"] == "task.merged"]
            assert merged and merged[-1]["data"]["stack"] == [p["number"] for p in pulls]
        assert llm.script_errors == []

    assert repo.merge_requests, "merged through the asynchronous merge API"
    assert all(repo.pulls[p["number"]]["merged"] for p in pulls)
    main = _git(github_remote, "rev-parse", "main")
    assert task["merge_commit"] == main
    assert _git(github_remote, "rev-parse", "main~3") == moved
    subjects = _git(github_remote, "log", "--format=%s", "main~3..main").splitlines()
    assert subjects[1:] == [
        f"[2/3] Part 2 (#{pulls[1]['number']})",
        f"[1/3] Part 1 (#{pulls[0]['number']})",
    ]
    assert "evil.py" not in _git(github_remote, "ls-tree", "-r", "--name-only", "main")
    assert _git(github_remote, "rev-parse", "main^{tree}") == _git(
        github_remote, "rev-parse", f"{commits[-1]}^{{tree}}"
    )
