"""The whole hand-off workflow over real HTTP: research → answer → execute → review → revise →
approve → merged, with a scripted model speaking the OpenAI protocol on loopback."""

from __future__ import annotations

from pathlib import Path

import httpx

from errands.testing.scripted_llm import ScriptedLLM
from tests.conftest import run_git
from tests.support import CalcScript, events_of, running_server, settings_for, wait_for_state


def test_full_workflow_over_http(sample_repo: Path, home: Path) -> None:
    # The user is on another branch with uncommitted work: the merge must not touch it.
    run_git(sample_repo, "checkout", "-q", "-b", "wip")
    (sample_repo / "README.md").write_text("# calc\n\nwork in progress\n")
    (sample_repo / "scratch.txt").write_text("notes\n")
    run_git(sample_repo, "add", "README.md")
    (sample_repo / "README.md").write_text("# calc\n\nwork in progress, more\n")
    status_before = run_git(sample_repo, "status", "--porcelain")
    index_before = (sample_repo / ".git" / "index").read_bytes()
    main_before = run_git(sample_repo, "rev-parse", "main").strip()

    script = CalcScript()
    with ScriptedLLM(script) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        project = client.post(
            "/api/projects", json={"origin": str(sample_repo), "base_branch": "main"}
        )
        assert project.status_code == 201, project.text
        project_id = project.json()["id"]

        created = client.post(
            "/api/tasks",
            json={"project": project_id, "title": "Add multiply", "body": "We need a*b."},
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]

        task = wait_for_state(client, task_id, "awaiting_answers")
        assert [q["text"] for q in task["questions"]] == ["Should multiply accept floats?"]
        assert task["questions"][0]["recommended"] == 1
        assert task["research"]["relevant_files"][0]["path"] == "calc.py"
        project_now = client.get(f"/api/projects/{project_id}").json()
        assert project_now["detected_commands"] == ["python3 -m pytest -q"]

        answered = client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 1})
        assert answered.status_code == 200, answered.text

        task = wait_for_state(client, task_id, "in_review")
        subtasks = task["subtasks"]
        assert [s["title"] for s in subtasks] == ["Add multiply to calc", "Test multiply"]
        assert all(s["state"] == "committed" and s["commit_sha"] for s in subtasks)
        assert all(s["verified"] is True for s in subtasks)
        assert subtasks[0]["verification"][0]["command"] == "python3 -m pytest -q"
        assert "2 passed" in subtasks[1]["verification"][0]["output"]
        # A written progress note after each subtask: done, verified, next.
        first_note, second_note = (s["progress"] for s in subtasks)
        assert first_note.startswith("Subtask 1 of 2, Add multiply to calc, is done (")
        assert "Verified: `python3 -m pytest -q` passed." in first_note
        assert first_note.endswith("Next: subtask 2, Test multiply.")
        assert second_note.endswith("Next: the hand-off, then the branch goes to review.")
        events = events_of(client, task_id)
        noted = [e["message"] for e in events if e["kind"] == "subtask.progress"]
        assert noted == [first_note, second_note]
        page = client.get(f"/tasks/{task_id}").text
        assert 'data-progress="1"' in page and "Next: subtask 2, Test multiply." in page
        assert "multiply works for ints and floats" in task["requirements"]
        assert "Add multiply to calc" in task["handoff"]
        assert "Should multiply accept floats?" in task["handoff"]
        assert "division" in task["handoff"]  # out of scope
        assert task["usage"]["model_requests"] > 0
        assert task["usage"]["input_tokens"] > 0
        # Each finished job says when it was queued, taken up and finished, in that order.
        for job in (j for j in task["jobs"] if j["finished_at"]):
            assert job["created_at"] <= job["started_at"] <= job["finished_at"]

        # Two commits on the branch, one per subtask, with meaningful messages.
        branch = task["branch"]
        assert branch.startswith(f"errands/{task_id}-add-multiply")
        log = run_git(sample_repo, "log", "--format=%s", f"main..{branch}").split("\n")
        assert log[:2] == ["Test multiply", "Add multiply to calc"]

        first = client.get(f"/api/tasks/{task_id}/diff", params={"subtask": 1}).json()
        assert [f["path"] for f in first["files"]] == ["calc.py"]
        whole = client.get(f"/api/tasks/{task_id}/diff").json()
        assert {f["path"] for f in whole["files"]} == {"calc.py", "tests/test_multiply.py"}

        # Review: a blocking line comment, then request changes.
        added = [
            line
            for hunk in first["files"][0]["hunks"]
            for line in hunk["lines"]
            if line["kind"] == "added" and "def multiply" in line["text"]
        ]
        comment = client.post(
            f"/api/tasks/{task_id}/comments",
            json={
                "path": "calc.py",
                "line": added[0]["new_no"],
                "body": "Please document multiply.",
                "kind": "blocking",
                "subtask": 1,
            },
        )
        assert comment.status_code == 201, comment.text
        blocked = client.post(f"/api/tasks/{task_id}/approve")
        assert blocked.status_code == 409
        assert "blocking" in blocked.json()["error"]["message"]

        assert client.post(f"/api/tasks/{task_id}/request-changes").status_code == 200
        task = wait_for_state(client, task_id, "in_review")
        # The fix went into subtask 1, where the comment was left: still two subtasks.
        assert len(task["subtasks"]) == 2
        revision = task["subtasks"][0]
        assert [v["round"] for v in revision["versions"]] == [1, 2]
        assert revision["commit_sha"] == revision["versions"][1]["commit_sha"]
        assert all(c["resolved"] for c in task["comments"])
        revised = client.get(f"/api/tasks/{task_id}/diff", params={"subtask": 1}).json()
        assert any(
            "Return the product" in line["text"]
            for hunk in revised["files"][0]["hunks"]
            for line in hunk["lines"]
        )

        assert client.post(f"/api/tasks/{task_id}/approve").status_code == 200
        task = wait_for_state(client, task_id, "merged")
        merge_commit = task["merge_commit"]

        events = events_of(client, task_id)
        assert llm.script_errors == []

    # The base branch holds the squashed change: one commit on top of where main was.
    assert run_git(sample_repo, "rev-parse", "main").strip() == merge_commit
    assert run_git(sample_repo, "rev-parse", "main^").strip() == main_before
    calc = run_git(sample_repo, "show", "main:calc.py")
    assert "def multiply(a, b):" in calc and "Return the product" in calc
    assert "test_multiply" in run_git(sample_repo, "show", "--stat", "main")
    # The user's checkout is untouched: same branch, same index, same working tree.
    assert run_git(sample_repo, "branch", "--show-current").strip() == "wip"
    assert run_git(sample_repo, "status", "--porcelain") == status_before
    assert (sample_repo / ".git" / "index").read_bytes() == index_before
    assert (sample_repo / "README.md").read_text() == "# calc\n\nwork in progress, more\n"
    assert (sample_repo / "scratch.txt").read_text() == "notes\n"
    assert "multiply" not in (sample_repo / "calc.py").read_text()
    # The published branch is removed from the user's repository after the merge.
    assert run_git(sample_repo, "branch", "--list", "errands/*") == ""

    # The events tell the whole story, in order.
    kinds = [e["kind"] for e in events]
    story = [
        "task.created",
        "research.finished",
        "question.answered",
        "plan.created",
        "subtask.committed",
        "subtask.committed",
        "review.comment",
        "revise.started",
        "restack.rebuilt",
        "restack.rebuilt",
        "review.approved",
        "task.merged",
    ]
    positions = [kinds.index(story[0])]
    for kind in story[1:]:
        positions.append(kinds.index(kind, positions[-1] + 1))
    assert positions == sorted(positions)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids)
    assert {"agent.tool_call", "agent.tool_result", "agent.response", "verify.finished"} <= set(
        kinds
    )
    states = [e["data"]["state"] for e in events if e["kind"] == "task.state"]
    assert states == [
        "researching",
        "awaiting_answers",
        "ready",
        "executing",
        "in_review",
        "revising",
        "in_review",
    ]
    # The API key never reaches an event.
    assert "sk-test-secret-value-123" not in str(events)
    assert script.phases.count("plan") == 1
