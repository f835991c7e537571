"""Run one agent to a validated structured output, recording every step as it happens.

Each model request, model response, tool call and tool result becomes an event through the
``Recorder``; token usage is reported even when the run fails. pydantic-ai's exceptions are
translated into ours here and nowhere else.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel
from pydantic_ai import Agent, ModelRequestNode, ModelRetry, Tool, ToolOutput
from pydantic_ai.exceptions import (
    AgentRunError,
    ModelAPIError,
    ModelHTTPError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
)
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryFeedbackPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.toolsets import AbstractToolset
from pydantic_ai.usage import UsageLimits

from errands.agent.context import (
    CHARS_PER_TOKEN,
    OVERFLOW_RETRIES,
    ContextKeeper,
    history_chars,
    is_context_overflow,
)
from errands.agent.providers import ModelHandle
from errands.agent.schemas import ClarifyingQuestion
from errands.agent.tools import ToolFunction
from errands.errors import AgentOutputError, LLMError, LLMUnavailable
from errands.faults import crash_point

if TYPE_CHECKING:
    from pydantic_ai._function_schema import FunctionSchema

OutputT = TypeVar("OutputT", bound=BaseModel)


class Recorder(Protocol):
    def event(self, kind: str, message: str, data: dict[str, Any]) -> None: ...
    def usage(self, requests: int, input_tokens: int, output_tokens: int) -> None: ...
    def check_cancelled(self) -> None: ...


Event = tuple[str, str, dict[str, Any]]  # kind, message, data


@runtime_checkable
class BatchRecorder(Protocol):
    """A recorder that can record several events in one transaction: what one model
    response or one request holds (the answer and its tool calls) lands together, one
    write instead of one per event."""

    def record_events(self, items: Sequence[Event]) -> None: ...


def _emit(recorder: Recorder, items: list[Event]) -> None:
    if not items:
        return
    if isinstance(recorder, BatchRecorder):
        recorder.record_events(items)
        return
    for kind, message, data in items:
        recorder.event(kind, message, data)


@runtime_checkable
class BudgetGuard(Protocol):
    """A recorder that also guards spending: asked before every model request, with the
    tokens this run has used so far (not yet reported through ``usage``) and an estimate of
    the request itself, and raises to stop the run before the request is sent."""

    def check_budget(
        self, input_tokens: int, output_tokens: int, *, next_input: int = 0, next_output: int = 0
    ) -> None: ...


class QuestionAsked(Exception):
    """The agent stopped to ask the human (the ``ask_human`` tool, in a run that offers it):
    the question, and the conversation so far, so the run can go on once it is answered."""

    def __init__(self, question: ClarifyingQuestion, messages: list[ModelMessage]) -> None:
        super().__init__(question.question)
        self.question = question
        self.messages = messages


ASK_HUMAN = (
    "Ask the human a question instead of guessing, when the work cannot go on without a "
    "decision only they can make (two reasonable ways that produce different results). Give "
    "the context (what you found), 2-4 options each with the requirement it implies, and the "
    "option you lean towards. Your work stops until they answer; what you have committed stays."
)


@dataclass(frozen=True)
class AgentResult(Generic[OutputT]):
    output: OutputT
    messages: list[ModelMessage]


@dataclass(frozen=True)
class AgentConfig:
    model: Callable[[], ModelHandle]  # a fresh client per run, closed when the run ends
    max_requests: int
    output_retries: int


def run_agent(
    config: AgentConfig,
    *,
    name: str,
    instructions: str,
    prompt: str,
    output_type: type[OutputT],
    tools: Sequence[ToolFunction],
    recorder: Recorder,
    message_history: Sequence[ModelMessage] | None = None,
    toolsets: Sequence[AbstractToolset[None]] = (),
    ask: bool = False,
    check: Callable[[OutputT], None] | None = None,
) -> AgentResult[OutputT]:
    """Synchronous entry for worker threads (which have no event loop of their own).
    ``toolsets``: more tools, e.g. the project's MCP servers (errands.mcp.native_toolsets).
    ``ask``: the agent may also end its run with ``ask_human`` (raises ``QuestionAsked``).
    ``check``: what the output's schema cannot say (it names things that exist, say): a
    ``ValueError`` it raises goes back to the model to fix, within the output retries."""
    return asyncio.run(
        _run(
            config,
            name,
            instructions,
            prompt,
            output_type,
            tools,
            recorder,
            message_history,
            toolsets,
            ask,
            check,
        )
    )


async def _run(
    config: AgentConfig,
    name: str,
    instructions: str,
    prompt: str,
    output_type: type[OutputT],
    tools: Sequence[ToolFunction],
    recorder: Recorder,
    message_history: Sequence[ModelMessage] | None,
    toolsets: Sequence[AbstractToolset[None]],
    ask: bool,
    check: Callable[[OutputT], None] | None,
) -> AgentResult[OutputT]:
    handle = config.model()

    def overflowed(refused: int, budget: int) -> None:
        recorder.event(
            "agent.condensed",
            f"{name}: the model endpoint refused {refused:,} characters as too long for its "
            f"context window; condensed to at most {budget:,} and sent again",
            {"agent": name, "refused_chars": refused, "budget_chars": budget},
        )

    # Every request fitted to the model's context window, and sent again smaller when the
    # endpoint still refuses its size (errands.agent.context).
    model = ContextKeeper(
        handle.model,
        window_tokens=handle.context_window,
        tool_output_limit=handle.tool_output_limit,
        on_overflow=overflowed,
    )
    outputs: list[ToolOutput[Any]] = [
        ToolOutput(output_type, name="final_result", max_retries=config.output_retries)
    ]
    if ask:
        outputs.append(
            ToolOutput(
                ClarifyingQuestion,
                name="ask_human",
                description=ASK_HUMAN,
                max_retries=config.output_retries,
            )
        )
    # One at a time, in the order the model asked: pydantic-ai otherwise runs the calls of
    # one response at once, in threads, so two edits of one file could each overwrite the
    # other, or a test run could see half of a change.
    agent_tools = [_tool(tool) for tool in tools]
    agent: Agent[None, Any] = Agent(
        model,
        name=name,
        instructions=instructions,
        output_type=outputs if ask else outputs[0],
        tools=agent_tools,
        toolsets=list(toolsets),
        retries=config.output_retries,
    )
    if check is not None:
        validate = check

        @agent.output_validator
        def _checked(output: Any) -> Any:
            if isinstance(output, output_type):
                try:
                    validate(output)
                except ValueError as exc:
                    raise ModelRetry(str(exc)) from exc
            return output

    run = None
    largest_answer = 0  # output tokens of the run's longest response: the next one's estimate
    fixed_chars = _fixed_chars(instructions, agent_tools, output_type)
    try:
        async with agent.iter(
            prompt,
            message_history=message_history,
            usage_limits=UsageLimits(request_limit=config.max_requests),
        ) as run:
            async for node in run:
                recorder.check_cancelled()
                if Agent.is_model_request_node(node):
                    # The node is the request about to be sent: refusing here spends nothing.
                    if isinstance(recorder, BudgetGuard):
                        recorder.check_budget(
                            run.usage.input_tokens,
                            run.usage.output_tokens,
                            next_input=_request_estimate(run.all_messages(), node, fixed_chars),
                            next_output=largest_answer,
                        )
                    crash_point("agent.step")
                    _record_request(recorder, name, node.request)
                elif Agent.is_call_tools_node(node):
                    _record_response(recorder, name, node.model_response)
                    largest_answer = max(
                        largest_answer, node.model_response.usage.output_tokens or 0
                    )
            result = run.result
            assert result is not None
            if isinstance(result.output, ClarifyingQuestion):
                raise QuestionAsked(result.output, list(result.all_messages()))
            return AgentResult(result.output, list(result.all_messages()))
    except ModelHTTPError as exc:
        if is_context_overflow(exc):
            raise LLMError(
                f"The model endpoint ({handle.endpoint}) still found the prompt too long for "
                f"{exc.model_name}'s context window after condensing it {OVERFLOW_RETRIES} "
                f"times (ERRANDS_CONTEXT_WINDOWS sets its size): {_short(exc.body)}"
            ) from exc
        # Rate limits, timeouts and server errors pass; a bad key or a bad request does not.
        transient = exc.status_code in (408, 409, 429) or exc.status_code >= 500
        raise (LLMUnavailable if transient else LLMError)(
            f"The model endpoint ({handle.endpoint}) answered HTTP {exc.status_code} for "
            f"{exc.model_name} (after retries): {_short(exc.body)}"
        ) from exc
    except UnexpectedModelBehavior as exc:
        # Before ModelAPIError: pydantic-ai >= 2.7x makes a malformed response body both
        # (ModelInvalidResponseError), and it is the model's output that is wrong, not the
        # endpoint that is down.
        raise AgentOutputError(
            f"The {name} agent did not produce a valid result: {exc.message}"
            + (f" ({_short(exc.body)})" if exc.body else "")
        ) from exc
    except ModelAPIError as exc:  # connection refused, reset, timed out
        raise LLMUnavailable(
            f"The model endpoint ({handle.endpoint}) failed: {exc.message}"
        ) from exc
    except UsageLimitExceeded as exc:
        raise AgentOutputError(f"The {name} agent used up its request budget: {exc}") from exc
    except AgentRunError as exc:
        raise LLMError(f"The {name} agent failed: {exc}") from exc
    finally:
        if run is not None:
            usage = run.usage
            recorder.usage(usage.requests, usage.input_tokens, usage.output_tokens)
        await handle.aclose()


# The schema pydantic-ai builds for a tool (from its signature and docstring: a few ms of
# CPU each), by the method it is bound from: every run binds the same WorkspaceTools methods
# to a new workspace, and the schema does not depend on the instance. Methods only, so the
# cache is bounded by our code; a closure is built afresh each run.
_schemas: dict[Callable[..., Any], FunctionSchema] = {}
_schemas_lock = threading.Lock()


def _tool(function: ToolFunction) -> Tool[None]:
    if not inspect.ismethod(function):
        return Tool(function, sequential=True)
    with _schemas_lock:
        schema = _schemas.get(function.__func__)
    if schema is None:
        built: Tool[None] = Tool(function, sequential=True)
        with _schemas_lock:
            _schemas[function.__func__] = built.function_schema
        return built
    return Tool(function, sequential=True, function_schema=replace(schema, function=function))


def _fixed_chars(
    instructions: str, tools: Sequence[Tool[None]], output_type: type[BaseModel]
) -> int:
    """Characters every request of a run sends besides the conversation: the instructions and
    the tool definitions (MCP servers' tools, listed only once the run starts, not counted).
    From the agent's own tools: building a definition again (pydantic's function schema)
    cost a few milliseconds per tool, per run."""
    definitions = [tool.tool_def for tool in tools]
    return (
        len(instructions)
        + sum(
            len(d.name) + len(d.description or "") + len(json.dumps(d.parameters_json_schema))
            for d in definitions
        )
        + _schema_chars(output_type)
    )


@functools.cache
def _schema_chars(output_type: type[BaseModel]) -> int:
    return len(json.dumps(output_type.model_json_schema()))


def _request_estimate(
    history: Sequence[ModelMessage], node: ModelRequestNode[Any, Any], fixed_chars: int
) -> int:
    """Input tokens of the request about to be sent, estimated from its characters: the
    conversation with the new request, and what every request sends (``_fixed_chars``)."""
    messages = list(history)
    if not messages or messages[-1] is not node.request:
        messages.append(node.request)
    return (history_chars(messages) + fixed_chars) // CHARS_PER_TOKEN


def _short(value: object, limit: int = 500) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def _record_request(recorder: Recorder, agent: str, request: ModelRequest) -> None:
    items: list[Event] = []
    for part in request.parts:
        if isinstance(part, UserPromptPart):
            content = part.content if isinstance(part.content, str) else str(part.content)
            items.append(("agent.prompt", f"{agent}: prompt", {"agent": agent, "content": content}))
        elif isinstance(part, ToolReturnPart) and part.outcome == "retried":
            # A tool call (the output tool included) the model must redo, with the reason.
            items.append(
                (
                    "agent.retry",
                    f"{agent}: asked the model to fix its {part.tool_name} call",
                    {"agent": agent, "tool": part.tool_name, "content": part.model_response_str()},
                )
            )
        elif isinstance(part, ToolReturnPart):
            content = part.model_response_str()
            items.append(
                (
                    "agent.tool_result",
                    f"{agent}: {part.tool_name} returned {len(content)} characters",
                    {"agent": agent, "tool": part.tool_name, "content": content},
                )
            )
        elif isinstance(part, RetryFeedbackPart):
            items.append(
                (
                    "agent.retry",
                    f"{agent}: asked the model to fix its answer",
                    {"agent": agent, "tool": None, "content": part.model_response()},
                )
            )
    _emit(recorder, items)


def _record_response(recorder: Recorder, agent: str, response: ModelResponse) -> None:
    usage = response.usage
    items: list[Event] = [
        (
            "agent.response",
            f"{agent}: model answered ({usage.input_tokens} in / {usage.output_tokens} out tokens)",
            {
                "agent": agent,
                "model": response.model_name,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
            },
        )
    ]
    for part in response.parts:
        if isinstance(part, TextPart) and part.content.strip():
            items.append(
                (
                    "agent.text",
                    f"{agent}: {part.content[:200]}",
                    {"agent": agent, "content": part.content},
                )
            )
        elif isinstance(part, ToolCallPart):
            try:
                args: dict[str, Any] = part.args_as_dict() if part.args else {}
            except ValueError:  # the model sent arguments that are not JSON
                args = {"raw": str(part.args)}
            items.append(
                (
                    "agent.tool_call",
                    f"{agent}: {part.tool_name}({_short(args, 160)})",
                    {"agent": agent, "tool": part.tool_name, "args": args},
                )
            )
    _emit(recorder, items)
