"""A whole task with the codex executor: the real Codex CLI inside bubblewrap, its model calls
through the egress proxy to the scripted Responses server on loopback. Research and planning
stay on the native loop (chat completions, same scripted server).

research → answer → execute (two verified commits, typed by Codex) → review → revise (Codex
again, resuming its session) → approve → merged; then a second task whose cap is lowered
while Codex works is stopped by the proxy before the call the cap no longer covers."""

from __future__ import annotations

from pathlib import Path

from errands.testing.scripted_llm import ScriptedLLM
from tests.conftest import run_git
from tests.executors.codex_support import CodexCalcScript, codex_or_skip, codex_phase
from tests.sandbox.conftest import requires_bwrap
from tests.support import (
    events_of,
    owner_client,
    price_every_call,
    running_server,
    settings_for,
    wait_for_state,
)

REAL_KEY = "sk-test-secret-value-123"  # settings_for's OpenAI key: the proxy's to inject


@requires_bwrap
def test_a_task_with_the_codex_executor_through_the_proxy(sample_repo: Path, home: Path) -> None:
    codex_or_skip()
    script = CodexCalcScript()
    with ScriptedLLM(script) as llm:
        script.upstream_port = llm.port
        settings = settings_for(
            home, llm.base_url, executor="codex", local_origins=[sample_repo.parent]
        )
        with running_server(settings) as url:
            client = owner_client(url)
            script.client = client
            price_every_call(client)
            project = client.post("/api/projects", json={"origin": str(sample_repo)}).json()
            task_id = client.post(
                "/api/tasks",
                json={"project": project["id"], "title": "Add multiply", "body": "We need a*b."},
            ).json()["id"]
            wait_for_state(client, task_id, "awaiting_answers")
            client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 1})
            task = wait_for_state(client, task_id, "in_review", timeout=240)

            subtasks = task["subtasks"]
            assert [s["state"] for s in subtasks] == ["committed", "committed"]
            assert all(s["verified"] is True for s in subtasks)
            # Subtask 2 failed its verification once; the fix went back to Codex's session.
            assert [s["verify_attempts"] for s in subtasks] == [1, 2]
            assert subtasks[1]["summary"].startswith("Fixed the expected product.")
            assert subtasks[0]["summary"].startswith("Added multiply(a, b).")
            assert subtasks[0]["decisions"] == ["Kept it a plain product."]
            log = run_git(sample_repo, "log", "--format=%s", f"main..{task['branch']}")
            assert log.split("\n")[:2] == ["Test multiply", "Add multiply to calc"]

            # On the whole branch (no subtask): the revise round adds a subtask, in the
            # session the task's subtasks were done in. (A comment on a subtask's diff is
            # fixed inside that subtask: tests/workflow/test_restack.py.)
            comment = client.post(
                f"/api/tasks/{task_id}/comments",
                json={"path": "calc.py", "line": 5, "body": "Please document multiply.",
                      "kind": "blocking"},
            )  # fmt: skip
            assert comment.status_code == 201, comment.text
            assert client.post(f"/api/tasks/{task_id}/request-changes").status_code == 200
            task = wait_for_state(client, task_id, "in_review", timeout=240)
            assert task["subtasks"][2]["origin"] == "revise"
            assert client.post(f"/api/tasks/{task_id}/approve").status_code == 200
            task = wait_for_state(client, task_id, "merged")

            events = events_of(client, task_id)
            jobs = task["jobs"]
            cost = client.get(f"/api/tasks/{task_id}/cost").json()

            # A second task: its cap is lowered while Codex works on it.
            capped = client.post(
                "/api/tasks",
                json={"project": project["id"], "title": "Add multiply again", "body": "a*b"},
            ).json()["id"]
            script.cap_task = capped
            wait_for_state(client, capped, "awaiting_answers")
            codex_calls_before = len([r for r in llm.requests if r.api == "responses"])
            client.post(f"/api/tasks/{capped}/answers", json={"question": 1, "option": 1})
            stopped = wait_for_state(client, capped, "failed", timeout=240)
            capped_events = events_of(client, capped)

    assert llm.script_errors == []
    calc = run_git(sample_repo, "show", "main:calc.py")
    assert "def multiply(a, b):" in calc and "Return the product" in calc

    # Codex typed the code: its calls came in over the Responses API, through the proxy.
    codex_calls = [r for r in llm.requests if r.api == "responses"]
    assert {"codex-execute", "codex-revise"} <= set(script.phases)
    # One Codex session for the task: the revise round resumed it (its history came along).
    revise = next(r for r in codex_calls if codex_phase(r) == "revise")
    assert "subtask 1 of 2" in revise.user and "subtask 2 of 2" in revise.user
    fix = next(r for r in codex_calls if "verify commands fail" in (r.last_user or ""))
    assert "subtask 2 of 2" in fix.user
    assert revise.n_assistant > 4

    # The real key: injected by the proxy into what reached the model's endpoint, never in
    # the sandbox (its environment holds the placeholder), a request body or an event.
    assert {r.headers.get("authorization") for r in codex_calls} == {f"Bearer {REAL_KEY}"}
    assert all(REAL_KEY not in r.body for r in llm.received)
    environment = next(result for call in codex_calls for _, result in call.tool_results
                       if "PATH=" in result)  # fmt: skip
    assert REAL_KEY not in environment
    assert "OPENAI_API_KEY=" in environment
    assert REAL_KEY not in str(events)

    # Nothing but the model route answers from inside.
    looked = next(result for call in codex_calls for _, result in call.tool_results
                  if "curl-exit=" in result)  # fmt: skip
    assert "curl-exit=0" not in looked
    assert "loopback-exit=0" not in looked
    assert "egress_refused" in looked
    assert not [r for r in llm.received if r.path not in ("/v1/responses", "/v1/chat/completions")]

    # Usage and cost per job: the execute and revise jobs carry Codex's metered calls.
    by_kind = {job["kind"]: job for job in jobs}
    for kind in ("execute", "revise"):
        assert by_kind[kind]["model_requests"] > 0
        assert by_kind[kind]["input_tokens"] > 0
    assert cost["cost_usd"] > 0

    # The cap stopped Codex before its next call: the server saw exactly one more call.
    assert stopped["failure_reason"].startswith("Budget reached"), stopped["failure_reason"]
    capped_calls = len([r for r in llm.requests if r.api == "responses"]) - codex_calls_before
    assert capped_calls == 1
    assert "task.budget_reached" in [e["kind"] for e in capped_events]
