"""ScriptedLLM speaks real OpenAI-compatible HTTP: pydantic-ai and the openai SDK talk to it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.exceptions import (
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelServerError,
    UnexpectedModelBehavior,
)
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from errands.testing import (
    DEFAULT_OUTPUT_TOOL_NAME,
    FAST_RETRY_HEADERS,
    ChatRequest,
    Reply,
    ScriptedLLM,
    ToolCall,
    output_tool_name,
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def model_for(llm: ScriptedLLM, *, max_retries: int = 0) -> OpenAIChatModel:
    client = AsyncOpenAI(max_retries=max_retries, base_url=llm.base_url, api_key="test")
    return OpenAIChatModel("scripted", provider=OpenAIProvider(openai_client=client))


class Answer(BaseModel):
    value: int
    note: str


# -- pydantic-ai end to end -----------------------------------------------------------------


def test_plain_text_reply() -> None:
    with ScriptedLLM(lambda req: Reply.say(f"echo: {req.user}")) as llm:
        model = OpenAIChatModel(
            "scripted", provider=OpenAIProvider(base_url=llm.base_url, api_key="test")
        )
        agent = Agent(model, system_prompt="You are terse.")
        result = run(agent.run("hello there"))

    assert result.output == "echo: hello there"
    assert result.usage.input_tokens > 0
    assert result.usage.output_tokens > 0
    [req] = llm.requests
    assert req.model == "scripted"
    assert req.system == "You are terse."
    assert req.user == "hello there"
    assert req.n_assistant == 0
    assert req.tools == []
    assert llm.script_errors == []


def test_tool_call_then_structured_output() -> None:
    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.calls(ToolCall("add", {"a": 2, "b": 3}), ToolCall("add", {"a": 1, "b": 1}))
        assert req.tool_results == [("add", "5"), ("add", "2")]
        total = sum(int(content) for _, content in req.tool_results)
        return Reply.call(output_tool_name(req), value=total, note="summed")

    with ScriptedLLM(script) as llm:
        agent = Agent(model_for(llm), output_type=Answer)
        calls: list[tuple[int, int]] = []

        @agent.tool_plain
        def add(a: int, b: int) -> int:
            """Add two numbers."""
            calls.append((a, b))
            return a + b

        result = run(agent.run("add things"))

    assert result.output == Answer(value=7, note="summed")
    # pydantic-ai may run the two calls at once, in threads: the results come back in the
    # order asked (the script checks that), the calls themselves in any order.
    assert sorted(calls) == [(1, 1), (2, 3)]
    assert llm.script_errors == []
    first, second = llm.requests
    assert set(first.tools) == {"add", DEFAULT_OUTPUT_TOOL_NAME}
    assert output_tool_name(first) == "final_result"
    assert second.n_assistant == 1
    assert second.last_tool_result == "2"
    # tool-call ids are unique and round-trip through the history
    ids = [c["id"] for m in second.messages for c in m.get("tool_calls") or ()]
    assert len(ids) == 2
    assert len(set(ids)) == 2


def test_output_tool_name_with_several_output_types() -> None:
    class Other(BaseModel):
        reason: str

    def script(req: ChatRequest) -> Reply:
        return Reply.call(output_tool_name(req, "Other"), reason="because")

    with ScriptedLLM(script) as llm:
        agent: Agent[None, Answer | Other] = Agent(model_for(llm), output_type=[Answer, Other])
        result = run(agent.run("pick"))

    assert result.output == Other(reason="because")
    assert set(llm.requests[0].tools) == {"final_result_Answer", "final_result_Other"}
    with pytest.raises(LookupError):
        output_tool_name(ChatRequest({"tools": []}))


def test_invalid_output_is_retried_with_validation_error() -> None:
    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.call(output_tool_name(req), value="not a number", note="x")
        # pydantic-ai answers the bad output-tool call with a `tool` message holding the errors
        name, error = req.tool_results[-1]
        assert name == "final_result"
        assert "value" in error
        assert "valid integer" in error
        return Reply.call(output_tool_name(req), value=42, note="fixed")

    with ScriptedLLM(script) as llm:
        result = run(Agent(model_for(llm), output_type=Answer).run("go"))

    assert result.output == Answer(value=42, note="fixed")
    assert len(llm.requests) == 2
    assert llm.script_errors == []


# -- error responses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, ModelServerError), (429, ModelRateLimitError)],
)
def test_http_errors_are_retried_by_sdk_then_raised(
    status: int, expected: type[ModelHTTPError]
) -> None:
    with ScriptedLLM(lambda req: Reply.error(status, "nope", headers=FAST_RETRY_HEADERS)) as llm:
        started = time.perf_counter()
        with pytest.raises(ModelHTTPError) as info:
            run(Agent(model_for(llm, max_retries=2)).run("x"))
        elapsed = time.perf_counter() - started

    assert isinstance(info.value, expected)
    assert info.value.status_code == status
    assert info.value.body == {
        "message": "nope",
        "type": "rate_limit_error" if status == 429 else "server_error",
        "param": None,
        "code": "rate_limit_exceeded" if status == 429 else "server_error",
    }
    assert len(llm.requests) == 3  # 1 + max_retries
    assert elapsed < 1.0  # retry-after-ms: 1 makes the SDK's retries instant


def test_retry_after_zero_falls_back_to_sdk_backoff() -> None:
    # The openai SDK only honours a *positive* retry-after; "0" means its default backoff
    # (0.5 s x 0.75..1 jitter for the first retry).
    with ScriptedLLM(lambda req: Reply.error(429, "slow", headers={"retry-after": "0"})) as llm:
        started = time.perf_counter()
        with pytest.raises(ModelRateLimitError) as info:
            run(Agent(model_for(llm, max_retries=1)).run("x"))
        elapsed = time.perf_counter() - started

    assert info.value.retry_after == 0.0
    assert len(llm.requests) == 2
    assert elapsed >= 0.37


def test_garbage_body_is_unexpected_model_behavior() -> None:
    with (
        ScriptedLLM(lambda req: Reply.garbage()) as llm,
        pytest.raises(UnexpectedModelBehavior, match="expected JSON"),
    ):
        run(Agent(model_for(llm, max_retries=2)).run("x"))
    assert len(llm.requests) == 1  # a 200 with a bad body is not retried


def test_garbage_body_with_error_status_is_http_error() -> None:
    with (
        ScriptedLLM(lambda req: Reply.garbage("<html>502</html>", status=502)) as llm,
        pytest.raises(ModelHTTPError) as info,
    ):
        run(Agent(model_for(llm)).run("x"))
    assert isinstance(info.value, ModelServerError)
    assert info.value.status_code == 502
    assert info.value.body == "<html>502</html>"


def test_script_exception_becomes_500_and_is_recorded() -> None:
    def script(req: ChatRequest) -> Reply:
        raise ValueError("script bug")

    with ScriptedLLM(script) as llm, pytest.raises(ModelServerError, match="script bug"):
        run(Agent(model_for(llm)).run("x"))

    assert len(llm.script_errors) == 1
    assert isinstance(llm.script_errors[0], ValueError)


def test_connection_refused_after_stop() -> None:
    llm = ScriptedLLM(lambda req: Reply.say("never"))
    llm.start()
    model = model_for(llm)
    llm.stop()
    llm.stop()  # idempotent
    with pytest.raises(ModelConnectionError):
        run(Agent(model).run("x"))
    assert llm.requests == []


def test_stop_drops_kept_alive_connections() -> None:
    llm = ScriptedLLM(lambda req: Reply.say("ok"))
    llm.start()
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    with httpx.Client(base_url=llm.base_url, timeout=2) as client:
        assert client.post("/chat/completions", json=body).status_code == 200
        llm.stop()
        with pytest.raises(httpx.TransportError):
            client.post("/chat/completions", json=body)
    assert len(llm.requests) == 1


# -- timing and concurrency -----------------------------------------------------------------


def test_seconds_inside_accumulates_delay_across_concurrent_requests() -> None:
    with ScriptedLLM(lambda req: Reply(text="slow", delay=0.3)) as llm:
        agent = Agent(model_for(llm))

        async def many() -> list[str]:
            results = await asyncio.gather(*(agent.run(f"q{i}") for i in range(4)))
            return [r.output for r in results]

        started = time.perf_counter()
        outputs = run(many())
        elapsed = time.perf_counter() - started

    assert outputs == ["slow"] * 4
    assert len(llm.requests) == 4
    assert llm.seconds_inside >= 4 * 0.3
    assert llm.seconds_inside < 4 * 0.3 + 0.5
    assert elapsed < 4 * 0.3  # the server handled them concurrently


# -- streaming ------------------------------------------------------------------------------


def test_streaming_text_and_structured_output() -> None:
    def script(req: ChatRequest) -> Reply:
        if req.tools:
            return Reply.call(output_tool_name(req), value=3, note="streamed " * 10)
        return Reply.say("a fairly long streamed reply, cut into several chunks")

    async def go() -> tuple[str, Answer]:
        async with Agent(model_for(llm)).run_stream("x") as text_run:
            text = await text_run.get_output()
        async with Agent(model_for(llm), output_type=Answer).run_stream("y") as out_run:
            answer = await out_run.get_output()
        return text, answer

    with ScriptedLLM(script) as llm:
        text, answer = run(go())

    assert text == "a fairly long streamed reply, cut into several chunks"
    assert answer == Answer(value=3, note="streamed " * 10)
    assert all(req.stream for req in llm.requests)
    assert llm.script_errors == []


# -- raw protocol -------------------------------------------------------------------------


def test_raw_chat_completion_shape_and_models_endpoint() -> None:
    script_reply = Reply.calls(ToolCall("a", {"x": 1}), ToolCall("b", {}))
    with ScriptedLLM(lambda req: script_reply) as llm:
        body = {
            "model": "m1",
            "messages": [
                {"role": "developer", "content": "dev"},
                {"role": "system", "content": [{"type": "text", "text": "sys"}]},
                {"role": "user", "content": "u"},
            ],
            "tools": [{"type": "function", "function": {"name": "a", "parameters": {}}}],
        }
        with httpx.Client(base_url=llm.base_url) as client:
            resp = client.post("/chat/completions", json=body)
            again = client.post("/chat/completions", json=body)
            models = client.get("/models")
            missing = client.post("/nowhere", json=body)
            bad_json = client.post("/chat/completions", content=b"{not json")

    assert resp.status_code == 200
    data = resp.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "m1"
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant"
    calls = message["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["a", "b"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"x": 1}
    again_calls = again.json()["choices"][0]["message"]["tool_calls"]
    all_ids = {c["id"] for c in calls} | {c["id"] for c in again_calls}
    assert len(all_ids) == 4
    usage = data["usage"]
    compact = json.dumps(body, separators=(",", ":"))
    assert abs(usage["prompt_tokens"] - len(compact) // 4) <= 2
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    req = llm.requests[0]
    assert req.system == "dev\n\nsys"
    assert req.user == "u"
    assert req.tools == ["a"]

    assert models.json()["data"][0]["id"] == "scripted"
    assert missing.status_code == 404
    assert bad_json.status_code == 400
    assert "error" in bad_json.json()


def test_openai_sdk_models_list_and_custom_headers() -> None:
    with ScriptedLLM(lambda req: Reply(text="hi", headers={"x-scripted": "yes"})) as llm:

        async def go() -> tuple[list[str], str | None, str]:
            client = AsyncOpenAI(base_url=llm.base_url, api_key="test", max_retries=0)
            models = [m.id async for m in client.models.list()]
            raw = await client.chat.completions.with_raw_response.create(
                model="m", messages=[{"role": "user", "content": "hey"}]
            )
            completion = raw.parse()
            return models, raw.headers.get("x-scripted"), completion.choices[0].finish_reason

        models, header, finish = run(go())

    assert models == ["scripted"]
    assert header == "yes"
    assert finish == "stop"


def test_start_stop_from_many_threads_is_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    with ScriptedLLM(lambda req: Reply.say("ok")) as llm:
        errors: list[BaseException] = []

        def hit() -> None:
            try:
                r = httpx.post(
                    f"{llm.base_url}/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                )
                assert r.status_code == 200
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=hit) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    assert errors == []
    assert len(llm.requests) == 8
    assert capfd.readouterr().err == ""


def test_gemini_stream_generate_content_answers_one_server_sent_event() -> None:
    """What Gemini CLI calls (``:streamGenerateContent?alt=sse``), through google-genai."""
    from google import genai
    from google.genai import types

    def script(req: ChatRequest) -> Reply:
        if req.n_assistant == 0:
            return Reply.call("write_file", file_path="a.txt", content="hi")
        return Reply.say("done")

    with ScriptedLLM(script) as llm:
        client = genai.Client(
            api_key="placeholder", http_options=types.HttpOptions(base_url=llm.gemini_base_url)
        )
        chunks = list(
            client.models.generate_content_stream(model="gemini-2.5-flash", contents="write a.txt")
        )

    assert len(chunks) == 1
    call = chunks[0].function_calls[0]  # type: ignore[index]
    assert (call.name, call.args) == ("write_file", {"file_path": "a.txt", "content": "hi"})
    assert chunks[0].usage_metadata is not None
    assert chunks[0].usage_metadata.prompt_token_count
    assert llm.requests[0].model == "gemini-2.5-flash"
    assert llm.requests[0].user == "write a.txt"
