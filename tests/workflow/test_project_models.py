"""A project may choose its own model per phase; the server's settings apply otherwise."""

from __future__ import annotations

from pathlib import Path

import httpx

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.support import (
    CalcScript,
    add_project,
    add_task,
    phase_of,
    running_server,
    settings_for,
    wait_for_state,
)


class RecordingModels(CalcScript):
    def __init__(self) -> None:
        super().__init__()
        self.models: list[tuple[str, str]] = []

    def __call__(self, req: ChatRequest) -> Reply:
        self.models.append((phase_of(req), str(req.body.get("model"))))
        return super().__call__(req)


def test_a_projects_research_model_is_used_for_its_research(home: Path, sample_repo: Path) -> None:
    script = RecordingModels()
    with ScriptedLLM(script) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        project_id = add_project(client, sample_repo)

        bad = client.patch(f"/api/projects/{project_id}", json={"research_model": "gpt-4"})
        assert bad.status_code == 422
        assert "provider:name" in bad.json()["error"]["message"]

        changed = client.patch(
            f"/api/projects/{project_id}", json={"research_model": "openai:project-model"}
        ).json()
        assert changed["research_model"] == "openai:project-model"
        assert changed["effective"]["research_model"] == "openai:project-model"
        assert changed["effective"]["execute_model"] == "openai:scripted-model"

        task_id = add_task(client, project_id)
        wait_for_state(client, task_id, "awaiting_answers")
        assert {model for phase, model in script.models if phase == "research"} == {"project-model"}

        cleared = client.patch(f"/api/projects/{project_id}", json={"research_model": ""})
        assert cleared.json()["effective"]["research_model"] == "openai:scripted-model"
        assert cleared.json()["research_model"] is None
