"""The live event stream (server-sent events) that `logs --follow` and the web UI use."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from errands.testing.scripted_llm import ScriptedLLM
from tests.support import CalcScript, running_server, settings_for, to_review


def parse_sse(text: str) -> list[dict[str, str]]:
    messages = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if fields:
            messages.append(fields)
    return messages


def test_stream_replays_resumes_and_ends(home: Path, sample_repo: Path) -> None:
    with ScriptedLLM(CalcScript()) as llm, running_server(settings_for(home, llm.base_url)) as url:
        client = httpx.Client(base_url=url, timeout=30)
        task_id, _ = to_review(client, sample_repo)
        client.post(f"/api/tasks/{task_id}/cancel")
        stored = client.get(f"/api/tasks/{task_id}/events").json()

        response = client.get(f"/api/tasks/{task_id}/events/stream")
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = parse_sse(response.text)
        assert messages[-1]["event"] == "end"
        assert json.loads(messages[-1]["data"]) == {"state": "cancelled"}
        events = messages[:-1]
        assert [int(m["id"]) for m in events] == [e["id"] for e in stored]
        assert [m["event"] for m in events] == [e["kind"] for e in stored]
        assert json.loads(events[0]["data"])["message"] == stored[0]["message"]

        # A client that saw up to event N resumes after it.
        middle = stored[len(stored) // 2]["id"]
        resumed = client.get(
            f"/api/tasks/{task_id}/events/stream", headers={"Last-Event-ID": str(middle)}
        )
        ids = [int(m["id"]) for m in parse_sse(resumed.text) if "id" in m]
        assert ids == [e["id"] for e in stored if e["id"] > middle]
        after = client.get(f"/api/tasks/{task_id}/events", params={"after": middle}).json()
        assert [e["id"] for e in after] == ids
