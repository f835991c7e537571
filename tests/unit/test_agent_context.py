"""Fitting a conversation to a model's context window (errands.agent.context)."""

from __future__ import annotations

import copy

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from errands.agent.context import (
    FALLBACK_CONTEXT_WINDOW,
    context_window,
    fit,
    history_chars,
)


def conversation(turns: int, output: int) -> list[ModelMessage]:
    """A prompt, then ``turns`` tool calls each answered with ``output`` characters."""
    messages: list[ModelMessage] = [ModelRequest(parts=[UserPromptPart("Do the task.")])]
    for n in range(turns):
        messages.append(
            ModelResponse(
                parts=[
                    TextPart(f"step {n}"),
                    ToolCallPart(
                        "write_file", {"path": f"f{n}.py", "content": "y" * output}, f"c{n}"
                    ),
                ]
            )
        )
        messages.append(
            ModelRequest(parts=[ToolReturnPart("write_file", f"{n}:" + "z" * output, f"c{n}")])
        )
    return messages


def calls_are_answered(messages: list[ModelMessage]) -> bool:
    """Every tool call is answered in the next message, as providers insist."""
    for index, message in enumerate(messages):
        if isinstance(message, ModelResponse):
            ids = {p.tool_call_id for p in message.parts if isinstance(p, ToolCallPart)}
            following = messages[index + 1] if index + 1 < len(messages) else None
            answered = (
                {p.tool_call_id for p in following.parts if isinstance(p, ToolReturnPart)}
                if isinstance(following, ModelRequest)
                else set()
            )
            if not ids <= answered:
                return False
    return True


def test_a_conversation_that_fits_is_sent_as_it_is() -> None:
    messages = conversation(3, 100)
    assert fit(messages, 100_000, 10_000) == messages


def test_older_turns_are_condensed_first_and_the_originals_kept() -> None:
    messages = conversation(10, 5_000)
    before = copy.deepcopy(messages)

    sent = fit(messages, 40_000, 10_000)

    assert messages == before  # the run's own history is untouched
    assert history_chars(sent) <= 40_000
    assert len(sent) == len(messages)  # condensing sufficed: no turn dropped
    assert calls_are_answered(sent)
    # The newest result is whole; the oldest says it was removed and how to get it back.
    last = sent[-1].parts[0]
    [original] = messages[-1].parts
    assert isinstance(last, ToolReturnPart) and isinstance(original, ToolReturnPart)
    assert last.content == original.content
    oldest = sent[2].parts[0]
    assert isinstance(oldest, ToolReturnPart)
    assert "condensed" in str(oldest.content) and "call the tool again" in str(oldest.content)
    oldest_call = sent[1].parts[1]
    assert isinstance(oldest_call, ToolCallPart)
    assert oldest_call.args_as_dict()["path"] == "f0.py"  # what was done stays readable


def test_when_condensing_is_not_enough_oldest_turns_go_in_pairs_the_prompt_stays() -> None:
    messages = conversation(200, 400)

    sent = fit(messages, 20_000, 10_000)

    assert history_chars(sent) <= 20_000
    assert len(sent) < len(messages)
    assert calls_are_answered(sent)
    first = sent[0]
    assert isinstance(first, ModelRequest)
    prompts = [p.content for p in first.parts if isinstance(p, UserPromptPart)]
    assert prompts[0] == "Do the task."
    assert "earlier step(s) of this conversation were removed" in str(prompts[-1])
    assert sent[-1] == messages[-1]


def test_context_windows_by_longest_prefix_settings_first() -> None:
    assert context_window("anthropic:claude-sonnet-4-5", {}) == 200_000
    assert context_window("anthropic:claude-sonnet-5-5", {}) == 1_000_000
    assert context_window("openai:gpt-4o-mini", {}) == 128_000
    assert context_window("openai:qwen2.5-coder", {}) == FALLBACK_CONTEXT_WINDOW
    overrides = {"openai:": 8_192, "openai:gpt-4o": 64_000}
    assert context_window("openai:gpt-4o-mini", overrides) == 64_000
    assert context_window("openai:qwen2.5-coder", overrides) == 8_192
