"""The providers' own SDKs, pointed at the sandbox's base URLs, through the proxy to the
scripted model (which speaks each provider's real protocol): every call works, streamed or
not; what the proxy metered is what the SDK itself read as the usage; the model endpoint saw
the real key and never the placeholder. (The SDKs speak HTTP through httpx2, their fork of
httpx; its Unix-socket transport stands in for the sandbox's forwarder.)"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from errands.egress import PLACEHOLDER_KEY, EgressConfig, EgressProxy, egress_proxy, model_routes
from errands.settings import Settings
from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.egress.conftest import ANTHROPIC_KEY, GOOGLE_KEY, OPENAI_KEY


def hello(req: ChatRequest) -> Reply:
    return Reply.say("hello from the model, " * 5)


@pytest.fixture
def proxied() -> Iterator[tuple[ScriptedLLM, EgressProxy, httpx2.Client]]:
    with ScriptedLLM(hello) as llm:
        settings = Settings(
            anthropic_api_key=ANTHROPIC_KEY,
            anthropic_base_url=llm.gemini_base_url,  # the server's root: Anthropic adds /v1
            openai_api_key=OPENAI_KEY,
            openai_base_url=llm.base_url,
            google_api_key=GOOGLE_KEY,
            google_base_url=llm.gemini_base_url,
        )
        with (
            egress_proxy(EgressConfig(routes=model_routes(settings))) as proxy,
            # What the forwarder does inside the sandbox: every connection to the socket.
            httpx2.Client(transport=httpx2.HTTPTransport(uds=str(proxy.socket))) as transport,
        ):
            yield llm, proxy, transport


def metered(proxy: EgressProxy) -> list[tuple[int, int]]:
    return [(u.input_tokens, u.output_tokens) if u else (-1, -1) for _, u in proxy.calls]


def test_the_anthropic_sdk(proxied: tuple[ScriptedLLM, EgressProxy, httpx2.Client]) -> None:
    llm, proxy, transport = proxied
    env = proxy.grant.env
    client = anthropic.Anthropic(
        api_key=env["ANTHROPIC_API_KEY"], base_url=env["ANTHROPIC_BASE_URL"], http_client=transport
    )
    message = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    answer = client.messages.create(**message)  # type: ignore[call-overload]
    with client.messages.stream(**message) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "hello from the model" in text
    seen = [(answer.usage.input_tokens, answer.usage.output_tokens)]
    seen.append((final.usage.input_tokens, final.usage.output_tokens))
    assert metered(proxy) == seen
    assert all(tokens > 0 for pair in seen for tokens in pair)
    assert len(llm.sightings(ANTHROPIC_KEY)) == 2
    assert llm.sightings(PLACEHOLDER_KEY) == []


def test_the_openai_sdk(proxied: tuple[ScriptedLLM, EgressProxy, httpx2.Client]) -> None:
    llm, proxy, transport = proxied
    env = proxy.grant.env
    client = openai.OpenAI(
        api_key=env["OPENAI_API_KEY"], base_url=env["OPENAI_BASE_URL"], http_client=transport
    )
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    chat = client.chat.completions.create(model="gpt-4.1", messages=messages)
    assert chat.usage is not None
    seen = [(chat.usage.prompt_tokens, chat.usage.completion_tokens)]
    # Streamed without asking for usage: the proxy asks for it, the SDK sees it too.
    chunks = list(client.chat.completions.create(model="gpt-4.1", messages=messages, stream=True))
    last = chunks[-1].usage
    assert last is not None
    seen.append((last.prompt_tokens, last.completion_tokens))
    response = client.responses.create(model="gpt-5", input="hi")
    assert response.usage is not None
    seen.append((response.usage.input_tokens, response.usage.output_tokens))
    events = list(client.responses.create(model="gpt-5", input="hi", stream=True))
    completed = next(e for e in events if e.type == "response.completed")
    usage = completed.response.usage
    assert usage is not None
    seen.append((usage.input_tokens, usage.output_tokens))

    assert metered(proxy) == seen
    assert all(tokens > 0 for pair in seen for tokens in pair)
    assert len(llm.sightings(OPENAI_KEY)) == 4
    assert llm.sightings(PLACEHOLDER_KEY) == []
