"""The claude-code executor end to end: the real Claude Code CLI, inside bubblewrap, talks to
the scripted Anthropic Messages server on loopback only through the egress proxy.

A task goes research → answer → execute (two verified commits, one after a verify failure
sent back to the same Claude Code session) → revise (stopped first by the task's cap before
the call that would pass it, then resumed) → merge. Research and planning stay native.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from errands.sandbox import bwrap_problem
from errands.testing.scripted_llm import ScriptedLLM
from tests.conftest import run_git
from tests.executors.claude_support import (
    ASKED,
    CLAUDE,
    MCP_CONFIG,
    MCP_SERVER,
    QUESTION,
    REAL_KEY,
    ClaudeScript,
    claude_problem,
    require,
    turn_of,
)
from tests.support import (
    add_project,
    add_task,
    comment_on_multiply,
    events_of,
    running_server,
    settings_for,
    wait_for_state,
)


@pytest.fixture(autouse=True)
def claude_and_bubblewrap() -> None:
    require(claude_problem())
    require(bwrap_problem())


def test_claude_code_does_a_task_inside_the_sandbox_through_the_egress_proxy(
    sample_repo: Path, home: Path
) -> None:
    (sample_repo / "tools").mkdir()
    (sample_repo / "tools" / "mcp_probe.py").write_text(MCP_SERVER)
    (sample_repo / ".errands.toml").write_text(MCP_CONFIG)
    run_git(sample_repo, "add", "-A")
    run_git(sample_repo, "commit", "-qm", "An MCP server for the agent")
    script = ClaudeScript(mcp=True, ask=True)
    with ScriptedLLM(script) as llm:
        script.port = llm.port
        settings = settings_for(
            home,
            llm.base_url,
            sandbox="bubblewrap",
            anthropic_api_key=REAL_KEY,
            anthropic_base_url=f"http://127.0.0.1:{llm.port}",
        )
        with running_server(settings) as url:
            client = httpx.Client(base_url=url, timeout=30)
            project_id = add_project(client, sample_repo)
            chosen = client.patch(
                f"/api/projects/{project_id}",
                json={"executor": "claude-code", "execute_model": "anthropic:claude-sonnet-5-5"},
            ).json()
            assert chosen["effective"]["executor"] == chosen["effective"]["revise_executor"]
            assert chosen["effective"]["executor"] == "claude-code"
            task_id = add_task(client, project_id)
            wait_for_state(client, task_id, "awaiting_answers")
            client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 1})
            # Subtask 1 stops to ask, through Errands' ask_human MCP server in the sandbox.
            asked = wait_for_state(client, task_id, "awaiting_answers", timeout=240)
            second_question = asked["questions"][1]
            assert second_question["text"] == QUESTION["question"]
            assert second_question["recommended"] == 2
            assert second_question["subtask_position"] == 1
            client.post(f"/api/tasks/{task_id}/answers", json={"question": 2, "option": 1})
            task = wait_for_state(client, task_id, "in_review", timeout=240)
            redone = [r for r in script.claude if ASKED["requirement"] in turn_of(r)[0]]
            assert redone, "subtask 1 is redone with the answer in its prompt"

            first, second = task["subtasks"]
            assert [first["state"], second["state"]] == ["committed", "committed"]
            assert first["verified"] is True and second["verified"] is True
            assert second["verify_attempts"] == 2  # failed once, fixed in the same session
            assert first["summary"] == "Added multiply(a, b)."
            assert first["decisions"] == ["Kept it a plain product."]
            branch = task["branch"]
            log = run_git(sample_repo, "log", "--format=%s", f"main..{branch}").split("\n")
            assert log[:2] == ["Test multiply", "Add multiply to calc"]
            assert "== 12" in run_git(sample_repo, "show", f"{branch}:tests/test_multiply.py")

            # One session for the task: the fix attempt and subtask 2 continue subtask 1's.
            fix = next(r for r in script.claude if "verify commands fail" in turn_of(r)[0])
            assert any("subtask 1 of 2" in str(m.get("content")) for m in fix.messages)
            assert "1 failed" in turn_of(fix)[0]

            # The project's MCP server, started by Claude Code inside the sandbox.
            where = next(
                str(m["content"])
                for r in script.claude
                for m in r.messages
                if "MCP host=" in str(m.get("content"))
            )
            assert "MCP host=sandbox uid=1000" in where

            # Inside the sandbox: a placeholder key, the proxy's endpoint, and no way out.
            probe = next(
                str(m["content"])
                for r in script.claude
                for m in r.messages
                if "KEY " in str(m.get("content"))
            )
            assert "KEY errands-placeholder BASE http://127.0.0.1:" in probe
            assert "NO-REAL-KEY" in probe and REAL_KEY not in probe
            assert "REACHED" not in probe
            assert probe.count("REFUSED") == 3
            assert "403" in probe.split("event_logging")[-1]  # the proxy's refusal

            # What reached the model endpoint from Claude Code: the real key injected by the
            # proxy in x-api-key, and nothing of the placeholder.
            from_claude = [
                r for r in llm.received if r.headers.get("user-agent", "").startswith(CLAUDE)
            ]
            assert from_claude and all(r.headers.get("x-api-key") == REAL_KEY for r in from_claude)
            assert not any("errands-placeholder" in str(r.headers) for r in from_claude)
            assert {r.path.split("?")[0] for r in from_claude} == {"/v1/messages"}

            # Usage and cost per job, metered by the proxy (two execute jobs: the one that
            # asked, and the one resumed with the answer).
            execute_jobs = [j for j in task["jobs"] if j["kind"] == "execute"]
            assert len(execute_jobs) == 2
            assert sum(j["model_requests"] for j in execute_jobs) >= len(from_claude)
            assert all(j["input_tokens"] > 0 for j in execute_jobs)
            calls = [e for e in events_of(client, task_id) if e["kind"] == "egress.call"]
            assert calls and {e["job_id"] for e in calls} == {j["id"] for j in execute_jobs}
            assert all(e["data"]["cost_micros"] > 0 for e in calls)

            # Revise, with a cap already spent: stopped before Claude Code's first call (by
            # the worker's own check, at the route step on the native loop, which runs first).
            spent = client.get(f"/api/tasks/{task_id}/cost").json()["cost_usd"]
            assert spent > 0
            capped = client.put(f"/api/tasks/{task_id}/budget", json={"usd": 0.000001})
            assert capped.status_code == 200, capped.text
            comment_on_multiply(client, task_id, "Document it.")
            before = len(llm.received)
            assert client.post(f"/api/tasks/{task_id}/request-changes").status_code == 200
            stopped = wait_for_state(client, task_id, "failed", timeout=120)
            assert stopped["failure_reason"].startswith("Budget reached"), stopped
            assert len(llm.received) == before  # the refused call never left the host
            refused = [e for e in events_of(client, task_id) if e["kind"] == "egress.refused"]
            targets = {(e["data"]["code"], e["data"]["target"]) for e in refused}
            assert ("not_allowed", "GET /anthropic/api/event_logging/batch") in targets  # probe
            assert not any(e["data"]["code"] == "budget_reached" for e in refused)
            assert not any(e["kind"] == "revise.started" for e in events_of(client, task_id))

            client.put(f"/api/tasks/{task_id}/budget", json={"usd": 100})
            assert client.post(f"/api/tasks/{task_id}/retry").status_code == 200
            task = wait_for_state(client, task_id, "in_review", timeout=180)
            revision = task["subtasks"][2]
            assert revision["origin"] == "revise" and revision["summary"] == "Documented multiply."
            # The revise job (another workspace) resumed the task's session.
            review = next(r for r in script.claude if "<review>" in turn_of(r)[0])
            assert any("subtask 2 of 2" in str(m.get("content")) for m in review.messages)

            assert client.post(f"/api/tasks/{task_id}/approve").status_code == 200
            wait_for_state(client, task_id, "merged")
            events = events_of(client, task_id)
    assert llm.script_errors == []
    assert "Return the product" in run_git(sample_repo, "show", "main:calc.py")
    kinds = {e["kind"] for e in events}
    assert {"agent.prompt", "agent.response", "agent.tool_call", "agent.tool_result"} <= kinds
    assert REAL_KEY not in json.dumps(events)
    tools = {e["data"].get("tool") for e in events if e["kind"] == "agent.tool_call"}
    assert {"Read", "Edit", "Write", "Bash", "StructuredOutput"} <= tools
