"""Budgets, with the scripted model reporting token usage over real HTTP: a task stops
before the model call its cap no longer covers, keeps its committed subtask, and resumes
after the cap is raised; an organization over its monthly cap executes nothing by itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.support import (
    CalcScript,
    events_of,
    owner_client,
    price_every_call,
    running_server,
    settings_for,
    wait_for_state,
)


class CappedMidway(CalcScript):
    """The calc script; when subtask 2 starts, the task's cap is lowered below what it has
    already spent (as a user might), so the check before the next model call must stop it."""

    def __init__(self) -> None:
        super().__init__()
        self.client: httpx.Client | None = None
        self.task_id = 0
        self.capped = False

    def __call__(self, req: ChatRequest) -> Reply:
        if not self.capped and self.client and "subtask 2 of 2" in req.user:
            self.capped = True
            lowered = self.client.put(f"/api/tasks/{self.task_id}/budget", json={"usd": 0.000001})
            assert lowered.status_code == 200, lowered.text
        return super().__call__(req)


def test_a_task_stops_at_its_cap_keeps_its_commits_and_resumes(
    sample_repo: Path, home: Path
) -> None:
    script = CappedMidway()
    # With accounts, the server attaches local repositories only where the administrator allows.
    with (
        ScriptedLLM(script) as llm,
        running_server(settings_for(home, llm.base_url, local_origins=[sample_repo.parent])) as url,
    ):
        client = owner_client(url)
        script.client = client
        price_every_call(client)

        project = client.post("/api/projects", json={"origin": str(sample_repo)}).json()
        task_id = client.post(
            "/api/tasks", json={"project": project["id"], "title": "Add multiply", "body": "a*b"}
        ).json()["id"]
        script.task_id = task_id
        wait_for_state(client, task_id, "awaiting_answers")
        researched = client.get(f"/api/tasks/{task_id}/cost").json()
        assert researched["cost_usd"] > 0 and researched["budget_reached"] is False

        client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 1})
        stopped = wait_for_state(client, task_id, "failed")
        assert stopped["failure_reason"].startswith("Budget reached")
        first, second = stopped["subtasks"]
        assert first["state"] == "committed" and first["commit_sha"]
        assert second["commit_sha"] is None
        kinds = [e["kind"] for e in events_of(client, task_id)]
        assert "task.budget_reached" in kinds
        # Stopped before the call: subtask 2 got exactly one model answer (its first).
        responses = [
            e
            for e in events_of(client, task_id)
            if e["kind"] == "agent.response" and e["id"] > _started_subtask_2(client, task_id)
        ]
        assert len(responses) == 1
        cost = client.get(f"/api/tasks/{task_id}/cost").json()
        assert cost["budget_reached"] is True and cost["budget_usd"] == 0.000001

        raised = client.put(f"/api/tasks/{task_id}/budget", json={"usd": 100})
        assert raised.json()["budget_reached"] is False
        assert client.post(f"/api/tasks/{task_id}/retry").status_code == 200
        done = wait_for_state(client, task_id, "in_review")
        assert [s["state"] for s in done["subtasks"]] == ["committed", "committed"]
        assert done["subtasks"][0]["commit_sha"] == first["commit_sha"]  # kept, not redone

        usage = client.get("/api/usage").json()
        assert usage["cost_usd"] == sum(r["cost_usd"] for r in usage["rows"]) > 0
        assert any(r["task_id"] == task_id for r in usage["rows"])

        # Over the organization's monthly cap, an answered task waits instead of executing.
        second_task = client.post(
            "/api/tasks", json={"project": project["id"], "title": "Add multiply again"}
        ).json()["id"]
        wait_for_state(client, second_task, "awaiting_answers")
        capped = client.put("/api/budget", json={"usd": 0.000001})
        assert capped.json()["over_budget"] is True
        answered = client.post(
            f"/api/tasks/{second_task}/answers", json={"question": 1, "option": 1}
        )
        assert answered.json()["state"] == "ready"
        skipped = [
            e for e in events_of(client, second_task) if e["kind"] == "task.auto_execute_skipped"
        ]
        assert skipped and "Budget reached" in skipped[0]["message"]
        # And a model call is refused before it is made.
        client.post(f"/api/tasks/{second_task}/execute")
        refused = wait_for_state(client, second_task, "failed")
        assert "organization" in refused["failure_reason"]


def _started_subtask_2(client: httpx.Client, task_id: int) -> int:
    events: list[dict[str, Any]] = events_of(client, task_id)
    prompts = [
        e
        for e in events
        if e["kind"] == "agent.prompt" and "subtask 2 of 2" in e["data"].get("content", "")
    ]
    return int(prompts[0]["id"]) if prompts else 0
