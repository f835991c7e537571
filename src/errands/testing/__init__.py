"""Test helpers shipped with errands: a scripted OpenAI-compatible LLM on loopback."""

from errands.testing.scripted_llm import (
    DEFAULT_OUTPUT_TOOL_NAME,
    FAST_RETRY_HEADERS,
    ChatRequest,
    Reply,
    Script,
    ScriptedLLM,
    ToolCall,
    output_tool_name,
)

__all__ = [
    "DEFAULT_OUTPUT_TOOL_NAME",
    "FAST_RETRY_HEADERS",
    "ChatRequest",
    "Reply",
    "Script",
    "ScriptedLLM",
    "ToolCall",
    "output_tool_name",
]
