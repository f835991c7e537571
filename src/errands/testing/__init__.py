"""Test helpers shipped with errands: a scripted LLM on loopback speaking OpenAI's chat
completions and Responses API (and Gemini's), a fake GitHub API."""

from errands.testing.scripted_llm import (
    DEFAULT_OUTPUT_TOOL_NAME,
    FAST_RETRY_HEADERS,
    Api,
    ChatRequest,
    Received,
    Reply,
    Script,
    ScriptedLLM,
    ToolCall,
    output_tool_name,
)

__all__ = [
    "DEFAULT_OUTPUT_TOOL_NAME",
    "FAST_RETRY_HEADERS",
    "Api",
    "ChatRequest",
    "Received",
    "Reply",
    "Script",
    "ScriptedLLM",
    "ToolCall",
    "output_tool_name",
]
