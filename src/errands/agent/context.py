"""Keep what the native loop sends within the model's context window.

A long run with a real model fills the window with tool output: a whole log, a generated file,
forty earlier turns. Two layers keep it in:

1. Every request is fitted to a character budget taken from the model's context window (a
   setting per model, with defaults): a tool result longer than the tool-output limit keeps
   its head and tail with a note saying how much was cut and how to see the rest; when the
   conversation is still too long, older turns are condensed (their tool outputs and long
   arguments replaced by a note), oldest first, then the oldest condensed turns are dropped.
   The run's own history keeps the originals; only what is sent is fitted.
2. Our budget counts characters, not the provider's tokens, so the endpoint may still answer
   that the prompt is too long (OpenAI's ``context_length_exceeded``, Anthropic's "prompt is
   too long"). Then the budget is lowered below what was sent and the request sent again, a
   bounded number of times, instead of failing the job.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pydantic_ai.exceptions import ModelContextWindowExceededError, ModelHTTPError
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext

# Code and JSON run at about 3-4 characters a token; the lower figure errs on the safe side.
CHARS_PER_TOKEN = 3
# The rest of the window stays for the instructions, the tools' schemas and the answer.
PROMPT_SHARE = 0.75
# Times one request is condensed further and sent again after the endpoint refused its size.
OVERFLOW_RETRIES = 3
# After a refusal, the next budget is this share of what was refused.
SHRINK = 0.6
# The newest messages (the current request and the turns just before it) are condensed last.
KEEP_RECENT = 4
# Below this a budget cannot hold a task's prompt; refusals do not shrink it further.
MIN_BUDGET = 4_000
# Parts of condensed turns longer than this are replaced by a note.
CONDENSED_PART = 300
# The user prompt of an older turn keeps this much (head and tail).
CONDENSED_PROMPT = 4_000

# Context windows in tokens, by the longest matching prefix of ``provider:name``. Models not
# listed (local servers above all, often run with a small window) get the fallback; a
# setting (ERRANDS_CONTEXT_WINDOWS) overrides any of them.
DEFAULT_CONTEXT_WINDOWS: Mapping[str, int] = {
    "openai:gpt-4.1": 1_047_576,
    "openai:gpt-4o": 128_000,
    "openai:gpt-5": 400_000,
    "openai:o1": 200_000,
    "openai:o3": 200_000,
    "openai:o4": 200_000,
    "anthropic:": 200_000,
    "anthropic:claude-sonnet-5-5": 1_000_000,
    "anthropic:claude-opus-5-5": 1_000_000,
    "google:gemini": 1_048_576,
}
FALLBACK_CONTEXT_WINDOW = 32_768

_HINTS: Mapping[str, str] = {
    "read_file": "Read a narrower range with read_file's start_line and end_line.",
    "run_command": "Run the command again with its output sent to a file (> out.txt) and "
    "read_file or grep parts of it, or filter it (| tail -n 50, | grep error).",
    "grep": "Narrow the pattern, the directory or the glob.",
    "list_files": "List a subdirectory instead.",
    "search_code": "Ask for fewer hits or a more specific query.",
}
_DEFAULT_HINT = "Ask for less at a time."


def context_window(spec: str, overrides: Mapping[str, int]) -> int:
    """The context window in tokens of ``provider:name``: the longest matching prefix among
    the overrides, else among the defaults, else the fallback."""
    for table in (overrides, DEFAULT_CONTEXT_WINDOWS):
        matches = [key for key in table if spec.startswith(key)]
        if matches:
            return table[max(matches, key=len)]
    return FALLBACK_CONTEXT_WINDOW


def clip(text: str, limit: int, hint: str) -> str:
    """``text`` if it fits ``limit``, else its head and tail around a note saying how much was
    cut and how to see it."""
    if len(text) <= limit:
        return text
    keep = max(limit - 400, 200)  # room for the note
    head, tail = text[: keep // 2], text[len(text) - keep // 2 :]
    cut = len(text) - len(head) - len(tail)
    note = (
        f"\n\n[… {cut:,} of {len(text):,} characters cut from the middle of this output to fit "
        f"the model's context window. {hint} …]\n\n"
    )
    return head + note + tail


def _part_chars(part: ModelRequestPart | ModelResponsePart) -> int:
    if isinstance(part, ToolReturnPart):
        return len(part.model_response_str())
    if isinstance(part, ToolCallPart):
        return len(part.tool_name) + len(part.args_as_json_str())
    content: object = getattr(part, "content", None)
    if content is None:
        return 0
    return len(content) if isinstance(content, str) else len(str(content))


def message_chars(message: ModelMessage) -> int:
    return sum(_part_chars(part) for part in message.parts)


def history_chars(messages: Sequence[ModelMessage]) -> int:
    return sum(message_chars(message) for message in messages)


def _replace_result(part: ToolReturnPart[Any], text: str) -> ToolReturnPart[Any]:
    return dataclasses.replace(part, content=text)


def _plain_result(part: ModelRequestPart) -> ToolReturnPart[Any] | None:
    """A function tool's result (not a tool-search result, whose content is structured)."""
    return part if type(part) is ToolReturnPart else None


def _clip_result(part: ModelRequestPart, limit: int) -> ModelRequestPart:
    result = _plain_result(part)
    if result is None:
        return part
    text = result.model_response_str()
    if len(text) <= limit:
        return part
    return _replace_result(result, clip(text, limit, _HINTS.get(result.tool_name, _DEFAULT_HINT)))


def _clip_results(message: ModelMessage, limit: int) -> ModelMessage:
    if not isinstance(message, ModelRequest):
        return message
    return dataclasses.replace(message, parts=[_clip_result(p, limit) for p in message.parts])


def _condense_args(part: ToolCallPart) -> ToolCallPart:
    try:
        args = part.args_as_dict()
    except ValueError:  # not JSON: keep its start
        return dataclasses.replace(part, args=str(part.args)[:CONDENSED_PART])
    shorter: dict[str, Any] = {
        key: (
            f"[{len(value):,} characters condensed]"
            if isinstance(value, str) and len(value) > CONDENSED_PART
            else value
        )
        for key, value in args.items()
    }
    if len(json.dumps(shorter, default=str)) > 4 * CONDENSED_PART:
        shorter = {"condensed": f"[{len(part.args_as_json_str()):,} characters of arguments]"}
    return dataclasses.replace(part, args=shorter)


def _condense_request_part(part: ModelRequestPart) -> ModelRequestPart:
    result = _plain_result(part)
    if result is not None:
        size = len(result.model_response_str())
        if size <= CONDENSED_PART:
            return part
        return _replace_result(
            result,
            f"[condensed: this {result.tool_name} output ({size:,} characters) was removed to "
            "fit the model's context window; call the tool again if you still need it]",
        )
    if isinstance(part, UserPromptPart) and isinstance(part.content, str):
        return dataclasses.replace(
            part, content=clip(part.content, CONDENSED_PROMPT, "It was condensed.")
        )
    return part


def _condense_response_part(part: ModelResponsePart) -> ModelResponsePart:
    if isinstance(part, ToolCallPart) and len(part.args_as_json_str()) > CONDENSED_PART:
        return _condense_args(part)
    if isinstance(part, TextPart) and len(part.content) > 4 * CONDENSED_PART:
        return dataclasses.replace(
            part, content=clip(part.content, 4 * CONDENSED_PART, "It was condensed.")
        )
    return part


def _condense(message: ModelMessage) -> ModelMessage:
    """An older turn as a summary: what was called, not what came back."""
    if isinstance(message, ModelRequest):
        return dataclasses.replace(
            message, parts=[_condense_request_part(p) for p in message.parts]
        )
    return dataclasses.replace(
        message,
        parts=[
            _condense_response_part(p)
            for p in message.parts
            # Earlier turns' reasoning is not needed to continue.
            if not isinstance(p, ThinkingPart)
        ],
    )


def _has_prompt(message: ModelMessage) -> bool:
    return isinstance(message, ModelRequest) and any(
        isinstance(part, UserPromptPart) for part in message.parts
    )


def fit(messages: Sequence[ModelMessage], budget: int, tool_limit: int) -> list[ModelMessage]:
    """``messages`` fitted to ``budget`` characters, without changing the originals.

    Keeps the shape providers insist on: every tool call still has its result (a turn is
    dropped as a model response together with the request answering its calls), the first
    message and any request carrying a user prompt stay, and the last message (the request
    being answered) is only ever clipped.
    """
    out = [_clip_results(message, tool_limit) for message in messages]
    sizes = [message_chars(message) for message in out]

    def condense(index: int) -> None:
        out[index] = _condense(out[index])
        sizes[index] = message_chars(out[index])

    # Older turns first, oldest first; then the recent ones but the last.
    older = range(1, max(1, len(out) - KEEP_RECENT))
    recent = range(max(1, len(out) - KEEP_RECENT), len(out) - 1)
    for index in [*older, *recent]:
        if sum(sizes) <= budget:
            return out
        condense(index)
    dropped = 0
    index = 1
    while sum(sizes) > budget and index + 1 < len(out) - 1:
        first, second = out[index], out[index + 1]
        if isinstance(first, ModelResponse) and not _has_prompt(second):
            del out[index : index + 2], sizes[index : index + 2]
            dropped += 1
        else:
            index += 1
    if dropped and isinstance(out[0], ModelRequest):
        note = UserPromptPart(
            f"[{dropped} earlier step(s) of this conversation were removed to fit the model's "
            "context window.]"
        )
        out[0] = dataclasses.replace(out[0], parts=[*out[0].parts, note])
        sizes[0] = message_chars(out[0])
    if sum(sizes) > budget:
        # Last resort: every long part clipped to an equal share (the task's prompt included).
        share = max(budget // max(1, sum(len(m.parts) for m in out)), 1_000)
        out = [_clip_all(message, share) for message in out]
    return out


def _clip_prompt(part: ModelRequestPart, limit: int) -> ModelRequestPart:
    if isinstance(part, UserPromptPart) and isinstance(part.content, str):
        return dataclasses.replace(
            part, content=clip(part.content, limit, "Ask for details you need.")
        )
    return part


def _clip_all(message: ModelMessage, limit: int) -> ModelMessage:
    if isinstance(message, ModelResponse):
        return message
    clipped = dataclasses.replace(message, parts=[_clip_prompt(p, limit) for p in message.parts])
    return _clip_results(clipped, limit)


def is_context_overflow(error: ModelHTTPError) -> bool:
    """Whether the endpoint refused the request for its size. pydantic-ai classifies the big
    providers' answers; local servers word it their own way."""
    if isinstance(error, ModelContextWindowExceededError):
        return True
    if error.status_code not in (400, 413):
        return False
    body = json.dumps(error.body, default=str).lower() if error.body is not None else ""
    return any(
        phrase in body
        for phrase in (
            "context_length_exceeded",
            "prompt is too long",
            "context length",
            "context window",
            "context size",
            "too many tokens",
            "input token count",
        )
    )


Overflowed = Callable[[int, int], None]  # (characters refused, the new budget)


class ContextKeeper(WrapperModel):
    """A model whose every request is fitted to its context window (see the module's
    docstring), sent again smaller when the endpoint refuses its size."""

    def __init__(
        self,
        wrapped: Model,
        *,
        window_tokens: int,
        tool_output_limit: int,
        on_overflow: Overflowed | None = None,
    ) -> None:
        super().__init__(wrapped)
        self.budget = max(MIN_BUDGET, int(window_tokens * CHARS_PER_TOKEN * PROMPT_SHARE))
        self.tool_output_limit = max(1_000, min(tool_output_limit, self.budget // 4))
        self.on_overflow = on_overflow

    def _fit(self, messages: Sequence[ModelMessage]) -> list[ModelMessage]:
        return fit(messages, self.budget, self.tool_output_limit)

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        attempt = 0
        while True:
            sent = self._fit(messages)
            try:
                return await self.wrapped.request(sent, model_settings, model_request_parameters)
            except ModelHTTPError as exc:
                if attempt >= OVERFLOW_RETRIES or not is_context_overflow(exc):
                    raise
                attempt += 1
                refused = history_chars(sent)
                # Lowered for the rest of the run too: the next requests would be refused alike.
                self.budget = max(MIN_BUDGET, int(min(self.budget, refused) * SHRINK))
                self.tool_output_limit = max(1_000, min(self.tool_output_limit, self.budget // 4))
                if self.on_overflow is not None:
                    self.on_overflow(refused, self.budget)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        # Fitted, but not retried: a stream cannot be sent again once it is being read.
        async with self.wrapped.request_stream(
            self._fit(messages), model_settings, model_request_parameters, run_context
        ) as stream:
            yield stream
