"""The Anthropic Messages API (``POST /v1/messages``), translated to and from the chat
completions a script answers, for :class:`errands.testing.scripted_llm.ScriptedLLM`.

What is covered is what the Claude Code CLI and the ``anthropic`` SDK (so pydantic-ai's
``AnthropicModel``) send and read: ``system`` (a string or text blocks), ``messages`` whose
content is a string or blocks (``text``, ``tool_use``, ``tool_result``; ``thinking`` and
images are skipped), ``tools`` with ``input_schema``, and the answer as one ``message``
object or as the server-sent events that stream one (``message_start``,
``content_block_start`` / ``…_delta`` / ``…_stop``, ``message_delta`` with the stop reason
and usage, ``message_stop``). ``POST /v1/messages/count_tokens`` is answered too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "anthropic_error",
    "chat_as_message",
    "count_tokens",
    "message_events",
    "messages_as_chat",
]


def _blocks(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


def _text(content: object) -> str:
    return "\n".join(
        str(block.get("text", "")) for block in _blocks(content) if block.get("type") == "text"
    )


def messages_as_chat(body: Mapping[str, Any]) -> dict[str, object]:
    """A Messages request as the chat-completions body a script reads: the system prompt,
    user and assistant turns, tool calls (``tool_use``) and their results (``tool_result``,
    as ``role: tool`` messages), the tools."""
    messages: list[dict[str, Any]] = []
    system = _text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        blocks = _blocks(message.get("content"))
        if message.get("role") == "assistant":
            calls = [
                {
                    "id": str(block.get("id")),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name")),
                        "arguments": json.dumps(block.get("input") or {}),
                    },
                }
                for block in blocks
                if block.get("type") == "tool_use"
            ]
            turn: dict[str, Any] = {"role": "assistant", "content": _text(blocks) or None}
            if calls:
                turn["tool_calls"] = calls
            messages.append(turn)
            continue
        # A user turn: tool results first (they answer the last assistant turn), then text.
        for block in blocks:
            if block.get("type") == "tool_result":
                content = block.get("content")
                text = content if isinstance(content, str) else _text(content)
                messages.append(
                    {"role": "tool", "tool_call_id": str(block.get("tool_use_id")), "content": text}
                )
        text = _text(blocks)
        if text:
            messages.append({"role": "user", "content": text})
    tools = [
        {
            "type": "function",
            "function": {
                "name": tool.get("name"),
                "description": tool.get("description", ""),
                "parameters": tool.get("input_schema") or {},
            },
        }
        for tool in body.get("tools") or ()
        if isinstance(tool, dict) and "name" in tool
    ]
    return {
        "model": body.get("model", ""),
        "messages": messages,
        "tools": tools,
        "stream": body.get("stream") is True,
    }


def chat_as_message(completion: Mapping[str, Any]) -> dict[str, Any]:
    """A chat completion as the ``message`` object the Messages API answers."""
    choice = completion["choices"][0]["message"]
    content: list[dict[str, Any]] = []
    if choice.get("content"):
        content.append({"type": "text", "text": choice["content"]})
    for call in choice.get("tool_calls") or ():
        content.append(
            {
                "type": "tool_use",
                "id": "toolu_" + call["id"].removeprefix("call_"),
                "name": call["function"]["name"],
                "input": json.loads(call["function"]["arguments"]),
            }
        )
    usage = completion["usage"]
    return {
        "id": "msg_" + completion["id"].removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": completion["model"],
        "content": content,
        "stop_reason": "tool_use" if choice.get("tool_calls") else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage["prompt_tokens"],
            "output_tokens": usage["completion_tokens"],
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def message_events(message: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The server-sent events that stream ``message``, as the real API sends them: the
    input tokens in ``message_start``, the output tokens in ``message_delta``."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield {"type": "message_start", "message": start}
    yield {"type": "ping"}
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            }
            text: str = block["text"]
            for i in range(0, len(text), 16):
                yield {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": text[i : i + 16]},
                }
        else:
            yield {
                "type": "content_block_start",
                "index": index,
                "content_block": {**block, "input": {}},
            }
            arguments = json.dumps(block["input"])
            for i in range(0, len(arguments), 24):
                yield {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments[i : i + 24]},
                }
        yield {"type": "content_block_stop", "index": index}
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    yield {"type": "message_stop"}


def count_tokens(body: Mapping[str, Any]) -> dict[str, int]:
    """``POST /v1/messages/count_tokens``: the same estimate the answers' usage uses."""
    return {"input_tokens": max(1, len(json.dumps(body)) // 4)}


_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str) -> dict[str, object]:
    """The Messages API's error body."""
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}
