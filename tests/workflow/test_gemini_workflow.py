"""A task through research, answer, plan and two verified commits on Google Gemini
(google:<model>): the real google-genai client against the scripted model speaking
generateContent on loopback (issue 17.6)."""

from __future__ import annotations

from pathlib import Path

import httpx

from errands.testing.scripted_llm import ScriptedLLM
from tests.support import CalcScript, events_of, running_server, settings_for, to_review

KEY = "gemini-workflow-secret-0123456789"


def test_a_task_reaches_review_on_gemini(sample_repo: Path, home: Path) -> None:
    script = CalcScript()
    with ScriptedLLM(script) as llm:
        settings = settings_for(
            home,
            "",
            openai_base_url=None,
            openai_api_key=None,
            model="google:gemini-3.8-flash",
            google_api_key=KEY,
            google_base_url=llm.gemini_base_url,
        )
        with running_server(settings) as url:
            client = httpx.Client(base_url=url, timeout=30)
            task_id, task = to_review(client, sample_repo)
            events = events_of(client, task_id)
    assert llm.script_errors == []

    assert [s["title"] for s in task["subtasks"]] == ["Add multiply to calc", "Test multiply"]
    assert all(s["state"] == "committed" and s["verified"] for s in task["subtasks"])
    assert task["usage"]["input_tokens"] > 0
    assert {req.model for req in llm.requests} == {"gemini-3.8-flash"}
    assert all(req.headers.get("x-goog-api-key") == KEY for req in llm.requests)
    assert KEY not in str(events)
