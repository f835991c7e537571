"""Errands' side of the Agent Client Protocol: what an agent may ask of us.

File reads and writes are served inside the workspace (``WorkspaceFiles``), terminals run in
the work sandbox (``Terminals``), permission requests are answered by a policy, and the
agent's session updates become events. Everything the agent sends is hostile input: a
request we refuse is answered with a JSON-RPC error the agent can read, and recorded.

Events are not written from here: this runs on the session's event-loop thread, while the
job's recorder belongs to the worker thread. They are queued (``events``) and the caller of
``AcpSession.prompt`` drains them.
"""

from __future__ import annotations

import asyncio
import json
import queue
from dataclasses import dataclass, field
from typing import Any, Literal

from acp import RequestError, schema
from errands.acp.files import FileMissing, FileRefused, WorkspaceFiles
from errands.acp.terminals import Terminals

# What the agent may be allowed to do when it asks: "allow" everything (it is sandboxed; the
# sandbox is the boundary, not the agent's own permission prompts), or only look around.
PermissionPolicy = Literal["allow", "read-only"]
_READ_ONLY_KINDS = {"read", "search", "think"}
_TEXT_LIMIT = 20_000  # characters of one event's content


@dataclass(frozen=True)
class Event:
    kind: str
    message: str
    data: dict[str, Any]


@dataclass
class Transcript:
    """What the agent said during the current prompt: its messages, in order."""

    messages: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # chunks of the message being streamed
    thought: list[str] = field(default_factory=list)
    usage_tokens: int | None = None

    def last_message(self) -> str:
        return self.messages[-1] if self.messages else ""


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _content_text(content: list[Any] | None) -> str:
    parts: list[str] = []
    for item in content or ():
        inner = getattr(item, "content", None)
        if isinstance(inner, schema.TextContentBlock):
            parts.append(inner.text)
        elif isinstance(item, schema.FileEditToolCallContent):
            parts.append(f"[edit {item.path}]")
        elif isinstance(item, schema.TerminalToolCallContent):
            parts.append(f"[terminal {item.terminal_id}]")
    return "\n".join(parts)[:_TEXT_LIMIT]


class ErrandsClient:
    """The ``acp.Client`` an agent talks to (one per agent process)."""

    def __init__(
        self,
        *,
        name: str,
        files: WorkspaceFiles,
        terminals: Terminals,
        permissions: PermissionPolicy = "allow",
    ) -> None:
        self.name = name
        self.files = files
        self.terminals = terminals
        self.permissions = permissions
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.transcript = Transcript()
        self.refusals: list[str] = []

    # -- bookkeeping ----------------------------------------------------------------------

    def emit(self, kind: str, message: str, /, **data: Any) -> None:
        self.events.put(Event(kind, f"{self.name}: {message}", {"agent": self.name, **data}))

    def refuse(self, what: str, exc: FileRefused) -> RequestError:
        self.refusals.append(f"{what}: {exc.message}")
        self.emit(
            "agent.refused", f"refused {what}: {exc.message}", request=what, reason=exc.message
        )
        if isinstance(exc, FileMissing):
            return RequestError.resource_not_found(exc.message)
        return RequestError(-32602, exc.message, {"reason": exc.message})

    def flush_text(self) -> None:
        transcript = self.transcript
        if transcript.pending:
            text = "".join(transcript.pending)
            transcript.pending.clear()
            transcript.messages.append(text)
            self.emit("agent.text", _short(text), content=text[:_TEXT_LIMIT])
        if transcript.thought:
            text = "".join(transcript.thought)
            transcript.thought.clear()
            self.emit("agent.thought", _short(text), content=text[:_TEXT_LIMIT])

    # -- session updates ------------------------------------------------------------------

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        transcript = self.transcript
        if isinstance(update, schema.AgentMessageChunk):
            if isinstance(update.content, schema.TextContentBlock):
                transcript.pending.append(update.content.text)
            return
        if isinstance(update, schema.AgentThoughtChunk):
            if isinstance(update.content, schema.TextContentBlock):
                transcript.thought.append(update.content.text)
            return
        if isinstance(update, schema.UsageUpdate):
            transcript.usage_tokens = update.used
            return
        self.flush_text()
        if isinstance(update, schema.ToolCallStart):
            args = json.dumps(update.raw_input, default=str)[:_TEXT_LIMIT]
            self.emit(
                "agent.tool_call",
                f"{update.title} ({update.kind or 'other'})",
                tool=update.title,
                kind=update.kind,
                args=args,
                id=update.tool_call_id,
            )
        elif isinstance(update, schema.ToolCallProgress):
            if update.status in ("completed", "failed"):
                content = _content_text(update.content)
                self.emit(
                    "agent.tool_result",
                    f"{update.title or update.tool_call_id} {update.status}",
                    tool=update.title,
                    id=update.tool_call_id,
                    status=update.status,
                    content=content,
                )
        elif isinstance(update, schema.AgentPlanUpdate):
            steps = [f"[{entry.status}] {entry.content}" for entry in update.entries]
            self.emit("agent.plan", f"plan of {len(steps)} steps", steps=steps)

    # -- files ----------------------------------------------------------------------------

    async def read_text_file(
        self,
        session_id: str,
        path: str,
        line: int | None = None,
        limit: int | None = None,
        **kwargs: Any,
    ) -> schema.ReadTextFileResponse:
        try:
            content = await asyncio.to_thread(self.files.read, path, line=line, limit=limit)
        except FileRefused as exc:
            raise self.refuse(f"reading {path}", exc) from exc
        return schema.ReadTextFileResponse(content=content)

    async def write_text_file(
        self, session_id: str, path: str, content: str, **kwargs: Any
    ) -> schema.WriteTextFileResponse:
        try:
            await asyncio.to_thread(self.files.write, path, content)
        except FileRefused as exc:
            raise self.refuse(f"writing {path}", exc) from exc
        self.emit("agent.file_written", f"wrote {path}", path=path, chars=len(content))
        return schema.WriteTextFileResponse()

    # -- permissions ----------------------------------------------------------------------

    async def request_permission(
        self,
        session_id: str,
        tool_call: schema.ToolCallUpdate,
        options: list[schema.PermissionOption],
        **kwargs: Any,
    ) -> schema.RequestPermissionResponse:
        allowed = self.permissions == "allow" or tool_call.kind in _READ_ONLY_KINDS
        # Once, not always: "always" switches some agents into a mode of their own (Gemini
        # CLI's auto-edit), which they refuse in a folder they do not trust.
        wanted = ("allow_once", "allow_always") if allowed else ("reject_once", "reject_always")
        choice = next((o for k in wanted for o in options if o.kind == k), None)
        self.emit(
            "agent.permission",
            f"{'allowed' if allowed else 'refused'} {tool_call.title or tool_call.kind}",
            tool=tool_call.title,
            kind=tool_call.kind,
            allowed=allowed,
        )
        if choice is None:
            return schema.RequestPermissionResponse(
                outcome=schema.DeniedOutcome(outcome="cancelled")
            )
        return schema.RequestPermissionResponse(
            outcome=schema.AllowedOutcome(outcome="selected", option_id=choice.option_id)
        )

    # -- terminals ------------------------------------------------------------------------

    async def create_terminal(
        self,
        session_id: str,
        command: str,
        args: list[str] | None = None,
        env: list[schema.EnvVariable] | None = None,
        cwd: str | None = None,
        output_byte_limit: int | None = None,
        **kwargs: Any,
    ) -> schema.CreateTerminalResponse:
        try:
            terminal_id = self.terminals.create(
                command,
                list(args or ()),
                env={item.name: item.value for item in env or ()},
                cwd=cwd,
                output_limit=output_byte_limit,
            )
        except FileRefused as exc:
            raise self.refuse(f"running {command}", exc) from exc
        shown = self.terminals.get(terminal_id).command
        self.emit("agent.command", f"$ {_short(shown)}", command=shown, terminal=terminal_id)
        return schema.CreateTerminalResponse(terminal_id=terminal_id)

    async def terminal_output(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> schema.TerminalOutputResponse:
        terminal = self._terminal(terminal_id)
        output, truncated = terminal.output()
        return schema.TerminalOutputResponse(
            output=output, truncated=truncated, exit_status=_exit_status(terminal)
        )

    async def wait_for_terminal_exit(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> schema.WaitForTerminalExitResponse:
        terminal = self._terminal(terminal_id)
        await asyncio.to_thread(terminal.done.wait)
        status = _exit_status(terminal)
        assert status is not None
        result = terminal.result
        if result is not None:
            self.emit(
                "agent.command_result",
                f"$ {_short(terminal.command, 80)}: {result.describe()}",
                command=terminal.command,
                exit_code=result.exit_code,
                output=result.output[-_TEXT_LIMIT:],
            )
        return schema.WaitForTerminalExitResponse(exit_code=status.exit_code, signal=status.signal)

    async def kill_terminal(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> schema.KillTerminalResponse:
        self._terminal(terminal_id)
        self.terminals.kill(terminal_id)
        return schema.KillTerminalResponse()

    async def release_terminal(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> schema.ReleaseTerminalResponse:
        self._terminal(terminal_id)
        self.terminals.release(terminal_id)
        return schema.ReleaseTerminalResponse()

    def _terminal(self, terminal_id: str) -> Any:
        try:
            return self.terminals.get(terminal_id)
        except FileRefused as exc:
            raise RequestError.invalid_params({"reason": exc.message}) from exc

    # -- the rest of the protocol: not offered ---------------------------------------------

    async def create_elicitation(
        self, message: str, mode: schema.ElicitationMode, **kwargs: Any
    ) -> schema.CreateElicitationResponse:
        # Nobody is there to answer a form mid-run: the agent must go on without.
        raise RequestError.method_not_found("elicitation/create")

    async def complete_elicitation(self, elicitation_id: str, **kwargs: Any) -> None:
        return None

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None

    def on_connect(self, conn: Any) -> None:
        return None


def _exit_status(terminal: Any) -> schema.TerminalExitStatus | None:
    result = terminal.result
    if result is None:
        return None
    if result.exit_code is None:  # killed: timed out or cancelled
        return schema.TerminalExitStatus(exit_code=None, signal="SIGKILL")
    return schema.TerminalExitStatus(exit_code=result.exit_code, signal=None)
