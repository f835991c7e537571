"""The OpenAI Responses API (``POST /v1/responses``), translated to and from the chat
completions a script answers, for :class:`errands.testing.scripted_llm.ScriptedLLM`.

What is covered is what the Codex CLI (``codex exec``, ``wire_api = "responses"``) and
pydantic-ai's ``OpenAIResponsesModel`` send and read: ``instructions`` and ``input`` items
(messages of every role, ``function_call`` / ``function_call_output`` and the free-form
``custom_tool_call`` / ``custom_tool_call_output``; ``reasoning`` items are skipped), function
and custom tools (those inside a ``namespace``, as Codex offers an MCP server's, named
``<namespace>.<tool>`` for the script and called with their ``namespace``), and the answer
as a ``response`` object or as the server-sent events that stream one (``response.created``
… ``response.output_item.added`` / ``…delta`` / ``response.output_item.done`` …
``response.completed`` with ``usage``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["chat_as_response", "response_events", "responses_as_chat"]

CUSTOM_TOOL_INPUT = "input"
"""A custom (free-form) tool's text is the script's ``ToolCall(name, input=...)`` argument."""

_CUSTOM_PARAMETERS: Mapping[str, object] = {
    "type": "object",
    "properties": {CUSTOM_TOOL_INPUT: {"type": "string"}},
    "required": [CUSTOM_TOOL_INPUT],
}


def _text(content: object) -> str:
    """Text of an input item's ``content``: a string, or parts with a ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part["text"]) for part in content if isinstance(part, dict) and "text" in part
        )
    return ""


def _output_text(output: object) -> str:
    """A tool result's ``output``: a string, or content items (text parts kept)."""
    return output if isinstance(output, str) else _text(output)


def responses_as_chat(body: Mapping[str, Any]) -> dict[str, object]:
    """A Responses request as the chat-completions body a script reads.

    Consecutive assistant items (a message and the calls made in the same response) become
    one assistant message, so ``ChatRequest.n_assistant`` counts the model's turns."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    raw_input = body.get("input")
    items: list[object] = (
        [{"type": "message", "role": "user", "content": raw_input}]
        if isinstance(raw_input, str)
        else list(raw_input or ())
        if isinstance(raw_input, list)
        else []
    )
    turn: dict[str, Any] | None = None  # the assistant message being gathered

    def assistant() -> dict[str, Any]:
        nonlocal turn
        if turn is None:
            turn = {"role": "assistant", "content": None}
            messages.append(turn)
        return turn

    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "reasoning":
            continue
        if kind == "message" and item.get("role") == "assistant":
            message = assistant()
            message["content"] = (message["content"] or "") + _text(item.get("content"))
            continue
        if kind in ("function_call", "custom_tool_call"):
            name = str(item.get("name"))
            if isinstance(item.get("namespace"), str):
                name = f"{item['namespace']}.{name}"
            if kind == "function_call":
                arguments = str(item.get("arguments") or "{}")
            else:
                arguments = json.dumps({CUSTOM_TOOL_INPUT: str(item.get("input") or "")})
            call = {
                "id": str(item.get("call_id") or item.get("id")),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            assistant().setdefault("tool_calls", []).append(call)
            continue
        turn = None
        if kind in ("function_call_output", "custom_tool_call_output"):
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id")),
                    "content": _output_text(item.get("output")),
                }
            )
        elif kind == "message":
            role = item.get("role")
            role = role if role in ("system", "developer", "user") else "user"
            messages.append({"role": role, "content": _text(item.get("content"))})
    tools: list[dict[str, object]] = []
    for name, tool in _offered(body):
        parameters = tool.get("parameters")
        if tool.get("type") == "custom":
            parameters = dict(_CUSTOM_PARAMETERS)
        tools.append({"type": "function", "function": {"name": name, "parameters": parameters}})
    return {
        "model": body.get("model"),
        "messages": messages,
        "tools": tools,
        "stream": body.get("stream") is True,
    }


def _offered(body: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The function and custom tools a request offers, by the name a script calls them: a
    tool inside a ``namespace`` (Codex puts each MCP server's tools in one) is
    ``<namespace>.<tool>``. Hosted tools (web_search …) are nothing a script calls."""
    for tool in body.get("tools") or ():
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            continue
        if tool.get("type") in ("function", "custom"):
            yield tool["name"], tool
        elif tool.get("type") == "namespace":
            for inner in tool.get("tools") or ():
                if isinstance(inner, dict) and inner.get("type") in ("function", "custom"):
                    yield f"{tool['name']}.{inner.get('name')}", inner


def _custom_tools(body: Mapping[str, Any]) -> set[str]:
    return {name for name, tool in _offered(body) if tool.get("type") == "custom"}


def chat_as_response(
    completion: Mapping[str, Any], body: Mapping[str, Any], created: int
) -> dict[str, Any]:
    """A finished ``response`` object for a chat completion. A call to a tool the request
    offered as ``custom`` is a ``custom_tool_call`` carrying the text of its ``input``."""
    message = completion["choices"][0]["message"]
    output: list[dict[str, Any]] = []
    if message.get("content"):
        output.append(
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": message["content"], "annotations": []}],
            }
        )
    custom = _custom_tools(body)
    namespaced = {name for name, _ in _offered(body) if "." in name}
    for call in message.get("tool_calls") or ():
        name = call["function"]["name"]
        arguments: str = call["function"]["arguments"]
        if name in custom:
            text = json.loads(arguments).get(CUSTOM_TOOL_INPUT, "")
            output.append(
                {
                    "type": "custom_tool_call",
                    "id": f"ctc_{uuid.uuid4().hex}",
                    "status": "completed",
                    "call_id": call["id"],
                    "name": name,
                    "input": str(text),
                }
            )
        else:
            item: dict[str, Any] = {
                "type": "function_call",
                "id": f"fc_{uuid.uuid4().hex}",
                "status": "completed",
                "call_id": call["id"],
                "name": name,
                "arguments": arguments,
            }
            namespace, dot, inner = name.rpartition(".")
            if dot and name in namespaced:
                item.update(name=inner, namespace=namespace)
            output.append(item)
    usage = completion["usage"]
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": created,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "model": completion["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": list(body.get("tools") or ()),
        "usage": {
            "input_tokens": usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["total_tokens"],
        },
    }


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _item_events(index: int, item: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The events that stream one output item, between its ``added`` and ``done``."""
    base = {"output_index": index, "item_id": item["id"]}
    kind = item["type"]
    if kind == "message":
        text = item["content"][0]["text"]
        part = {"type": "output_text", "text": "", "annotations": []}
        yield {"type": "response.content_part.added", **base, "content_index": 0, "part": part}
        for delta in _pieces(text, 16):
            yield {
                "type": "response.output_text.delta",
                **base,
                "content_index": 0,
                "delta": delta,
            }
        yield {"type": "response.output_text.done", **base, "content_index": 0, "text": text}
        done_part = {**part, "text": text}
        yield {"type": "response.content_part.done", **base, "content_index": 0, "part": done_part}
    elif kind == "function_call":
        for delta in _pieces(item["arguments"], 24):
            yield {"type": "response.function_call_arguments.delta", **base, "delta": delta}
        yield {
            "type": "response.function_call_arguments.done",
            **base,
            "arguments": item["arguments"],
        }
    elif kind == "custom_tool_call":
        for delta in _pieces(item["input"], 24):
            yield {"type": "response.custom_tool_call_input.delta", **base, "delta": delta}
        yield {"type": "response.custom_tool_call_input.done", **base, "input": item["input"]}


def _started(item: Mapping[str, Any]) -> dict[str, Any]:
    """``item`` as ``response.output_item.added`` shows it: nothing generated yet."""
    empty: dict[str, Any] = {"message": {"content": []}, "function_call": {"arguments": ""}}
    empty["custom_tool_call"] = {"input": ""}
    return {**item, **empty.get(item["type"], {}), "status": "in_progress"}


def response_events(response: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The server-sent events that stream ``response``, each with its ``sequence_number``;
    the event's name is its ``type``."""
    pending = {**response, "status": "in_progress", "output": [], "usage": None}

    def events() -> Iterator[dict[str, Any]]:
        yield {"type": "response.created", "response": pending}
        yield {"type": "response.in_progress", "response": pending}
        for index, item in enumerate(response["output"]):
            yield {
                "type": "response.output_item.added",
                "output_index": index,
                "item": _started(item),
            }
            yield from _item_events(index, item)
            yield {"type": "response.output_item.done", "output_index": index, "item": item}
        yield {"type": "response.completed", "response": dict(response)}

    for number, event in enumerate(events()):
        yield {**event, "sequence_number": number}
