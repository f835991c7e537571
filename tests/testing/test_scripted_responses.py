"""ScriptedLLM speaks the OpenAI Responses API: the openai SDK's Responses client and
pydantic-ai's OpenAIResponsesModel talk to it (streamed and not), with the same scripts as
chat completions; and it keeps every request it receives."""

from __future__ import annotations

import asyncio
import json

import httpx
from openai import OpenAI
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from errands.testing import ChatRequest, Reply, ScriptedLLM, ToolCall, output_tool_name


class Answer(BaseModel):
    value: int
    note: str


def responses_model(llm: ScriptedLLM) -> OpenAIResponsesModel:
    provider = OpenAIProvider(base_url=llm.base_url, api_key="test-key")
    return OpenAIResponsesModel("scripted", provider=provider)


def test_pydantic_ai_tool_call_then_output_streamed_and_not() -> None:
    def script(req: ChatRequest) -> Reply:
        assert req.api == "responses"
        if req.n_assistant == 0:
            return Reply.calls(ToolCall("add", {"a": 2, "b": 3}), text="adding")
        return Reply.call(output_tool_name(req), value=int(req.last_tool_result or 0), note="ok")

    with ScriptedLLM(script) as llm:
        agent = Agent(responses_model(llm), output_type=Answer, system_prompt="Be exact.")

        @agent.tool_plain
        def add(a: int, b: int) -> int:
            return a + b

        async def go() -> tuple[Answer, Answer]:
            plain = (await agent.run("2+3?")).output
            async with agent.run_stream("2+3 again?") as run:
                streamed = await run.get_output()
            return plain, streamed

        plain, streamed = asyncio.run(go())

    assert plain == Answer(value=5, note="ok")
    assert streamed == Answer(value=5, note="ok")
    assert llm.script_errors == []
    first, second = llm.requests[:2]
    assert first.system == "Be exact."
    assert first.user == "2+3?"
    assert set(first.tools) == {"add", "final_result"}
    # The tool result went back as a function_call_output, read as the tool's result.
    assert second.n_assistant == 1
    assert second.tool_results == [("add", "5")]
    assert [req.stream for req in llm.requests] == [False, False, True, True]


def test_sdk_text_usage_and_events() -> None:
    with ScriptedLLM(lambda req: Reply.say("a reply long enough to come in several deltas")) as llm:
        client = OpenAI(base_url=llm.base_url, api_key="test-key", max_retries=0)
        response = client.responses.create(model="m1", input="hello", instructions="terse")
        events = list(client.responses.create(model="m1", input="hello", stream=True))

    assert response.output_text == "a reply long enough to come in several deltas"
    assert response.model == "m1"
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + (
        response.usage.output_tokens
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") > 1
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "a reply long enough to come in several deltas"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens > 0
    req = llm.requests[0]
    assert (req.system, req.user, req.model) == ("terse", "hello", "m1")


def message(role: str, kind: str, text: str) -> dict[str, object]:
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def test_codex_shaped_input_is_read_as_a_conversation() -> None:
    """The items the Codex CLI sends: developer and user messages, the model's earlier
    message and calls (function and free-form), their outputs, reasoning."""
    body = {
        "model": "scripted",
        "instructions": "",
        "stream": True,
        "tools": [
            {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
            {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
            {"type": "web_search", "external_web_access": False},
            {
                "type": "namespace",
                "name": "mcp__probe",
                "tools": [{"type": "function", "name": "where", "parameters": {}}],
            },
        ],
        "input": [
            message("developer", "input_text", "dev"),
            message("user", "input_text", "task"),
            {"type": "reasoning", "summary": [], "encrypted_content": None},
            message("assistant", "output_text", "ok"),
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "exec_command",
                "arguments": '{"cmd": "ls"}',
            },
            {
                "type": "custom_tool_call",
                "call_id": "c2",
                "name": "apply_patch",
                "input": "*** Begin Patch",
            },
            {
                "type": "function_call",
                "call_id": "c3",
                "name": "where",
                "namespace": "mcp__probe",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "c1", "output": "README.md"},
            {
                "type": "custom_tool_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "Done"}],
            },
        ],
    }
    reply = Reply.calls(
        ToolCall("apply_patch", {"input": "*** Begin Patch\n*** End Patch"}),
        ToolCall("mcp__probe.where"),
    )
    with ScriptedLLM(lambda req: reply) as llm:
        streamed = httpx.post(llm.responses_url, json=body)
        plain = httpx.post(llm.responses_url, json={**body, "stream": False})

    req = llm.requests[0]
    assert req.system == "dev"
    assert req.user == "task"
    assert req.n_assistant == 1
    assert req.tools == ["exec_command", "apply_patch", "mcp__probe.where"]
    calls = req.messages[-3]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == [
        "exec_command",
        "apply_patch",
        "mcp__probe.where",
    ]
    assert req.tool_results == [("exec_command", "README.md"), ("apply_patch", "Done")]
    assert req.original["input"][1]["content"][0]["text"] == "task"

    # A call to a tool offered as "custom" comes back as a custom_tool_call with its text.
    assert streamed.headers["content-type"].startswith("text/event-stream")
    names = [line[7:] for line in streamed.text.splitlines() if line.startswith("event: ")]
    assert "response.custom_tool_call_input.delta" in names
    item, namespaced = plain.json()["output"]
    # A tool inside a namespace is called by its own name, with the namespace beside it.
    assert (namespaced["name"], namespaced["namespace"]) == ("where", "mcp__probe")
    assert item["type"] == "custom_tool_call"
    assert item["name"] == "apply_patch"
    assert item["input"] == "*** Begin Patch\n*** End Patch"
    assert item["call_id"].startswith("call_")


def test_errors_and_context_limit_in_openai_shape() -> None:
    with ScriptedLLM(lambda req: Reply.error(429, "slow down"), context_limit=400) as llm:
        limited = httpx.post(llm.responses_url, json={"model": "m", "input": "x"})
        too_long = httpx.post(llm.responses_url, json={"model": "m", "input": "x" * 500})
        garbage = httpx.post(llm.responses_url, content=b"{no")

    assert limited.status_code == 429
    assert limited.json()["error"]["message"] == "slow down"
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    assert too_long.json()["error"]["param"] == "input"
    assert garbage.status_code == 400


def test_every_request_is_kept_as_received() -> None:
    with ScriptedLLM(lambda req: Reply.say("hi")) as llm:
        client = OpenAI(base_url=llm.base_url, api_key="sk-visible-key", max_retries=0)
        client.responses.create(model="m", input="the secret word is swordfish")
        httpx.get(f"{llm.base_url}/models", headers={"x-tell": "swordfish-too"})
        httpx.post(f"http://127.0.0.1:{llm.port}/elsewhere", content=b"payload")

    assert [(r.method, r.path) for r in llm.received] == [
        ("POST", "/v1/responses"),
        ("GET", "/v1/models"),
        ("POST", "/elsewhere"),
    ]
    assert llm.received[0].headers["authorization"] == "Bearer sk-visible-key"
    assert json.loads(llm.received[0].body)["input"] == "the secret word is swordfish"
    assert llm.sightings("sk-visible-key") == [llm.received[0]]
    assert [r.path for r in llm.sightings("swordfish")] == ["/v1/responses", "/v1/models"]
    assert llm.sightings("payload") == [llm.received[2]]
    assert llm.sightings("never-sent") == []
