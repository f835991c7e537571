"""A long run with a real-sized tool output through the whole research stage: the endpoint
refuses a prompt past its context window, the loop condenses and sends it again, the job
succeeds (issue 17.7)."""

from __future__ import annotations

from pathlib import Path

import httpx

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.conftest import run_git
from tests.support import (
    RESEARCH_OUTPUT,
    events_of,
    final,
    phase_of,
    running_server,
    settings_for,
    wait_for_state,
)

LIMIT = 20_000  # characters of conversation the scripted endpoint accepts


def test_a_prompt_refused_as_too_long_is_condensed_and_sent_again(
    sample_repo: Path, home: Path
) -> None:
    lines = [f"line {n}: " + "abcdefghij" * 4 for n in range(1, 1501)]
    (sample_repo / "data.txt").write_text("\n".join(lines) + "\n")
    run_git(sample_repo, "add", "data.txt")
    run_git(sample_repo, "commit", "-q", "-m", "data")

    def script(req: ChatRequest) -> Reply:
        assert phase_of(req) == "research", req
        return [
            Reply.call("read_file", path="data.txt"),
            Reply.call("read_file", path="calc.py"),
            final(**RESEARCH_OUTPUT),
        ][min(req.n_assistant, 2)]

    # We believe the window is huge, so only the endpoint's refusal can make us condense.
    settings = settings_for(home, "", context_windows={"openai:scripted-model": 1_000_000})
    with ScriptedLLM(script, context_limit=LIMIT) as llm:
        settings = settings.model_copy(update={"openai_base_url": llm.base_url})
        with running_server(settings) as url:
            client = httpx.Client(base_url=url, timeout=30)
            project = client.post("/api/projects", json={"origin": str(sample_repo)})
            assert project.status_code == 201, project.text
            created = client.post(
                "/api/tasks",
                json={"project": project.json()["id"], "title": "Add multiply", "body": "a*b"},
            )
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]
            task = wait_for_state(client, task_id, "awaiting_answers")
            events = events_of(client, task_id)
    assert llm.script_errors == []
    assert task["research"]["relevant_files"][0]["path"] == "calc.py"

    sizes = [req.prompt_chars for req in llm.requests]
    refused = [i for i, size in enumerate(sizes) if size > LIMIT]
    assert refused, sizes  # the file's whole content went out once and was refused
    for i in refused:
        assert i + 1 < len(sizes) and sizes[i + 1] < sizes[i], sizes
    after = llm.requests[refused[0] + 1]
    # The same conversation, the file's content cut in the middle with a note on the rest.
    data = [text for name, text in after.tool_results if "line 1: " in text]
    assert len(data) == 1
    assert "line 1500: " in data[0] and "line 750: " not in data[0]
    assert "characters cut from the middle" in data[0] and "start_line" in data[0]
    condensed = [e for e in events if e["kind"] == "agent.condensed"]
    assert condensed and condensed[0]["data"]["refused_chars"] > LIMIT
