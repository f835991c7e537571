"""Reading a model call's usage from the provider's own answer, as the bytes pass through.

The answer is relayed to the sandbox as it arrives; a ``UsageReader`` sees the same bytes and
keeps only what it needs: for a JSON body, the body (up to a cap) to parse at the end; for a
server-sent event stream, one line at a time. The usage fields:

- Anthropic Messages: ``usage`` of the body; streaming, ``message_start.message.usage`` then
  ``message_delta.usage`` (cumulative counts). Cache writes and reads are input tokens.
- OpenAI Chat Completions: ``usage.prompt_tokens``/``completion_tokens``; streaming, the last
  chunk's ``usage`` (the proxy asks for it with ``stream_options.include_usage``).
- OpenAI Responses: ``usage.input_tokens``/``output_tokens``; streaming, the ``response`` of
  ``response.completed`` (or ``.incomplete``/``.failed``).
- Gemini: ``usageMetadata.promptTokenCount`` (+ ``toolUsePromptTokenCount``) in,
  ``candidatesTokenCount`` + ``thoughtsTokenCount`` out; streamed (server-sent events, or one
  JSON array without ``alt=sse``), every chunk carries the totals so far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from errands.egress.routes import Protocol

_BODY_CAP = 16 * 1024 * 1024  # a JSON answer larger than this is relayed but not parsed
_LINE_CAP = 4 * 1024 * 1024


@dataclass(frozen=True)
class _Fields:
    envelope: str | None  # the field of a stream's event holding the message or response
    model: str
    usage: str
    inputs: tuple[str, ...]  # counts that add up to the input tokens
    outputs: tuple[str, ...]


_FIELDS: dict[Protocol, _Fields] = {
    "anthropic-messages": _Fields(
        "message",
        "model",
        "usage",
        ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"),
        ("output_tokens",),
    ),
    "openai-chat": _Fields(None, "model", "usage", ("prompt_tokens",), ("completion_tokens",)),
    "openai-responses": _Fields(
        "response", "model", "usage", ("input_tokens",), ("output_tokens",)
    ),
    "gemini": _Fields(
        None,
        "modelVersion",
        "usageMetadata",
        ("promptTokenCount", "toolUsePromptTokenCount"),
        ("candidatesTokenCount", "thoughtsTokenCount"),
    ),
}


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    model: str | None  # as the provider named it in the answer, when it did


class UsageReader:
    def __init__(self, protocol: Protocol, content_type: str) -> None:
        self.protocol = protocol
        self.stream = content_type.partition(";")[0].strip().lower() == "text/event-stream"
        self.buffer = bytearray()
        self.overflow = False
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.model: str | None = None

    def feed(self, data: bytes) -> None:
        if self.overflow:
            return
        self.buffer += data
        if not self.stream:
            self.overflow = len(self.buffer) > _BODY_CAP
            return
        *lines, rest = self.buffer.split(b"\n")
        self.buffer = bytearray(rest)
        for line in lines:
            self._line(bytes(line))
        if len(self.buffer) > _LINE_CAP:  # one event this large carries no usage we read
            self.buffer.clear()

    def finish(self) -> Usage | None:
        """The call's usage, or None when the answer reported none."""
        if self.stream:
            self._line(bytes(self.buffer))
        elif not self.overflow:
            body = _json(bytes(self.buffer))
            for event in body if isinstance(body, list) else [body]:
                self._event(event)
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return Usage(self.input_tokens or 0, self.output_tokens or 0, self.model)

    def _line(self, line: bytes) -> None:
        if line.startswith(b"data:"):
            self._event(_json(line[5:]))

    def _event(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        fields = _FIELDS[self.protocol]
        inner = event.get(fields.envelope) if fields.envelope else None
        # A stream's event may carry usage in its envelope (message_start's message,
        # response.completed's response) or beside it (message_delta's).
        for body in (inner, event) if isinstance(inner, dict) else (event,):
            model = body.get(fields.model)
            if isinstance(model, str) and model and self.model is None:
                self.model = model[:200]
            usage = body.get(fields.usage)
            if isinstance(usage, dict):
                self._set(_sum(usage, *fields.inputs), _sum(usage, *fields.outputs))

    def _set(self, input_tokens: Any, output_tokens: Any) -> None:
        # Streams report cumulative counts: the latest wins, and never goes back down.
        if (found := _count(input_tokens)) is not None:
            self.input_tokens = max(found, self.input_tokens or 0)
        if (found := _count(output_tokens)) is not None:
            self.output_tokens = max(found, self.output_tokens or 0)


def _sum(usage: dict[str, Any], *names: str) -> int | None:
    """The sum of the counts present, or None when none is."""
    counts = [found for name in names if (found := _count(usage.get(name))) is not None]
    return sum(counts) if counts else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
