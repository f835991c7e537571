"""The acp executor with a real ACP agent: Gemini CLI (`gemini --acp`), inside bubblewrap,
reaching the scripted Gemini endpoint only through the egress proxy. A task goes research →
answer → execute (two verified commits, the second after a failed verification fixed in the
same ACP session) → revise (stopped first by a spent cap, then done) → merge (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from errands.sandbox import bwrap_problem
from errands.testing.scripted_llm import ScriptedLLM
from tests.conftest import run_git
from tests.executors.claude_support import turn_of
from tests.executors.gemini_support import (
    COMMAND,
    GEMINI,
    REAL_KEY,
    GeminiScript,
    require_gemini,
)
from tests.support import (
    add_project,
    add_task,
    events_of,
    running_server,
    settings_for,
    wait_for_state,
)


@pytest.fixture
def gemini_and_bubblewrap() -> None:
    require_gemini()
    if (problem := bwrap_problem()) is not None:
        pytest.skip(f"bubblewrap cannot run here: {problem}")


@pytest.mark.usefixtures("gemini_and_bubblewrap")
def test_gemini_cli_over_acp_does_a_task_inside_the_sandbox_through_the_egress_proxy(
    sample_repo: Path, home: Path
) -> None:
    script = GeminiScript()
    with ScriptedLLM(script) as llm:
        script.port = llm.port
        settings = settings_for(
            home,
            llm.base_url,
            sandbox="bubblewrap",
            google_api_key=REAL_KEY,
            google_base_url=llm.gemini_base_url.rstrip("/"),
            acp_command=COMMAND,
            acp_provider="google",
        )
        with running_server(settings) as url:
            client = httpx.Client(base_url=url, timeout=30)
            project_id = add_project(client, sample_repo)
            chosen = client.patch(f"/api/projects/{project_id}", json={"executor": "acp"}).json()
            assert chosen["effective"]["executor"] == "acp"
            task_id = add_task(client, project_id)
            wait_for_state(client, task_id, "awaiting_answers")
            client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 1})
            task = wait_for_state(client, task_id, "in_review", timeout=300)

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

            # The fix attempt is a prompt in the same ACP session: it sees subtask 2's turn.
            fix = next(r for r in script.gemini if "verify commands fail" in turn_of(r)[0])
            assert any("subtask 2 of 2" in str(m.get("content")) for m in fix.messages)
            assert "1 failed" in turn_of(fix)[0]

            # Inside the sandbox: a placeholder key, the proxy's endpoint, and no way out.
            probe = next(
                text
                for r in script.gemini
                for _, text in r.tool_results
                if "KEY " in text and "BASE" in text
            )
            assert "KEY errands-placeholder BASE http://127.0.0.1:" in probe
            assert "NO-REAL-KEY" in probe and REAL_KEY not in probe
            assert "REACHED" not in probe
            assert probe.count("REFUSED") == 3
            assert "403" in probe.split("v1beta/files")[-1]  # the proxy's refusal

            # What reached the model endpoint from Gemini CLI: the real key, put there by the
            # proxy, and nothing of the placeholder.
            from_gemini = [
                r for r in llm.received if r.headers.get("user-agent", "").startswith(GEMINI)
            ]
            assert from_gemini
            assert all(r.headers.get("x-goog-api-key") == REAL_KEY for r in from_gemini)
            assert not any("errands-placeholder" in str(r.headers) for r in from_gemini)
            assert not any("key=" in r.path for r in from_gemini)

            # Usage and cost per job, metered by the proxy.
            execute_job = next(j for j in task["jobs"] if j["kind"] == "execute")
            assert execute_job["input_tokens"] > 0
            calls = [e for e in events_of(client, task_id) if e["kind"] == "egress.call"]
            assert calls and {e["job_id"] for e in calls} == {execute_job["id"]}
            assert all(e["data"]["cost_micros"] > 0 for e in calls)

            # Revise, with a cap already spent: stopped before Gemini CLI's first call.
            assert client.get(f"/api/tasks/{task_id}/cost").json()["cost_usd"] > 0
            capped = client.put(f"/api/tasks/{task_id}/budget", json={"usd": 0.000001})
            assert capped.status_code == 200, capped.text
            client.post(
                f"/api/tasks/{task_id}/comments",
                json={"path": "calc.py", "line": 5, "body": "Document it.", "kind": "blocking"},
            )
            before = len(llm.received)
            assert client.post(f"/api/tasks/{task_id}/request-changes").status_code == 200
            stopped = wait_for_state(client, task_id, "failed", timeout=180)
            assert stopped["failure_reason"].startswith("Budget reached"), stopped
            assert len(llm.received) == before  # the refused call never left the host

            client.put(f"/api/tasks/{task_id}/budget", json={"usd": 100})
            assert client.post(f"/api/tasks/{task_id}/retry").status_code == 200
            task = wait_for_state(client, task_id, "in_review", timeout=240)
            revision = task["subtasks"][2]
            assert revision["origin"] == "revise" and revision["summary"] == "Documented multiply."

            assert client.post(f"/api/tasks/{task_id}/approve").status_code == 200
            wait_for_state(client, task_id, "merged")
            events = events_of(client, task_id)
    assert llm.script_errors == []
    assert "Return the product" in run_git(sample_repo, "show", "main:calc.py")
    kinds = {e["kind"] for e in events}
    assert {"agent.prompt", "agent.tool_call", "agent.tool_result", "agent.text"} <= kinds
    assert "executor.agent" in kinds
    assert REAL_KEY not in json.dumps(events)
    # Gemini CLI's edits went through Errands' ACP file service (confined to the workspace).
    written = [e for e in events if e["kind"] == "agent.file_written"]
    assert {Path(e["data"]["path"]).name for e in written} >= {"calc.py", "test_multiply.py"}
