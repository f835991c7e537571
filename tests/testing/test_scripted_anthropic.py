"""ScriptedLLM speaks Anthropic's Messages API: the anthropic SDK and pydantic-ai's
AnthropicModel talk to it (streamed and not, with tool calls), with the same scripts as chat
completions; count_tokens and the model list answer; every request is kept."""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.providers.anthropic import AnthropicProvider

from errands.testing import ChatRequest, Reply, ScriptedLLM, ToolCall, output_tool_name


class Answer(BaseModel):
    value: int
    note: str


def test_pydantic_ai_tool_call_then_output_streamed_and_not() -> None:
    def script(req: ChatRequest) -> Reply:
        assert req.api == "anthropic"
        if req.n_assistant == 0:
            return Reply.calls(ToolCall("add", {"a": 2, "b": 3}), text="adding")
        return Reply.call(output_tool_name(req), value=int(req.last_tool_result or 0), note="ok")

    with ScriptedLLM(script) as llm:
        provider = AnthropicProvider(api_key="sk-ant-test-key", base_url=llm.gemini_base_url)
        model = AnthropicModel("claude-scripted", provider=provider)
        agent = Agent(model, output_type=Answer, system_prompt="Be exact.")

        @agent.tool_plain
        def add(a: int, b: int) -> int:
            return a + b

        async def go() -> tuple[Answer, Answer, int]:
            plain = await agent.run("2+3?")
            async with agent.run_stream("2+3 again?") as run:
                streamed = await run.get_output()
            return plain.output, streamed, plain.usage.output_tokens

        plain, streamed, output_tokens = asyncio.run(go())

    assert plain == streamed == Answer(value=5, note="ok")
    assert output_tokens > 0  # the usage fields were read
    assert llm.script_errors == []
    first, second = llm.requests[:2]
    assert first.system == "Be exact."
    assert first.user == "2+3?"
    assert set(first.tools) == {"add", "final_result"}
    assert first.tool_schema("add") is not None
    # The tool result went back as a tool_result block, read as the tool's result.
    assert second.n_assistant == 1
    assert second.last_tool_result == "5"
    assert {r.original.get("stream") is True for r in llm.requests} == {True, False}
    # What the client sent, as it arrived: every request carried the key (in a header).
    assert llm.received and llm.sightings("sk-ant-test-key") == llm.received
    assert all(r.headers["anthropic-version"] for r in llm.received)


def test_sdk_errors_count_tokens_and_models() -> None:
    def script(req: ChatRequest) -> Reply:
        return Reply.error(429, "slow down") if "fail" in req.user else Reply.say("hello there")

    with ScriptedLLM(script) as llm:
        client = anthropic.Anthropic(api_key="k", base_url=llm.gemini_base_url, max_retries=0)
        said = client.messages.create(
            model="m", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )
        assert [b.text for b in said.content if b.type == "text"] == ["hello there"]
        assert said.stop_reason == "end_turn"
        assert said.usage.input_tokens > 0 and said.usage.output_tokens > 0
        with client.messages.stream(
            model="m", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            assert "".join(stream.text_stream) == "hello there"
            assert stream.get_final_message().usage.output_tokens == said.usage.output_tokens
        with pytest.raises(anthropic.RateLimitError, match="slow down"):
            client.messages.create(
                model="m", max_tokens=10, messages=[{"role": "user", "content": "fail"}]
            )
        counted = client.messages.count_tokens(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        assert counted.input_tokens > 0
        assert [m.id for m in client.models.list()] == ["scripted"]
    paths = [(r.method, r.path.split("?")[0]) for r in llm.received]
    assert ("POST", "/v1/messages/count_tokens") in paths and ("GET", "/v1/models") in paths


def test_a_prompt_past_the_context_limit_gets_anthropics_error() -> None:
    with ScriptedLLM(lambda req: Reply.say("never"), context_limit=200) as llm:
        client = anthropic.Anthropic(api_key="k", base_url=llm.gemini_base_url, max_retries=0)
        with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
            client.messages.create(
                model="m", max_tokens=10, messages=[{"role": "user", "content": "x" * 1000}]
            )
