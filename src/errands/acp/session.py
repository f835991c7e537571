"""One ACP agent process, started inside the sandbox, and one session with it.

The agent speaks JSON-RPC over its stdio (the ``agent-client-protocol`` package does the
protocol); this module owns the process's life and bridges the session's asyncio world to
the synchronous worker: an event loop runs on a thread of its own for as long as the session
lasts, and ``prompt`` blocks the caller's thread while draining the agent's events into the
caller's hands (so the job's recorder is only ever used from the job's thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import acp
from acp import schema
from errands.acp.client import ErrandsClient, Event, PermissionPolicy
from errands.acp.files import WorkspaceFiles
from errands.acp.terminals import Terminals
from errands.errors import ErrandsError
from errands.mcp import McpServer
from errands.sandbox import Sandbox
from errands.sandbox.spawn import SpawnedProcess, spawn

T = TypeVar("T")

START_TIMEOUT = 120.0  # seconds for the agent to start and open its session
CANCEL_GRACE = 10.0  # seconds an agent gets to end a cancelled prompt before it is killed
_POLL = 0.1


class AcpAgentError(ErrandsError):
    """The ACP agent failed: it would not start, broke the protocol, died, or answered a
    prompt with an error. The message says which, with the end of its stderr."""

    code = "acp_agent_error"
    status = 502


@dataclass(frozen=True)
class PromptOutcome:
    stop_reason: str
    text: str  # the agent's last message of the turn
    messages: list[str]
    input_tokens: int | None
    output_tokens: int | None
    refusals: list[str]


class AcpSession:
    """``start`` it, ``prompt`` it as often as needed (the agent keeps its context between
    prompts), ``close`` it. ``agent_sandbox`` is the sandbox the agent process runs in (the
    one that can reach the egress proxy); ``work_sandbox`` runs its terminal commands, like
    the native loop's commands."""

    def __init__(
        self,
        *,
        name: str,
        command: str,
        workspace: Path,
        agent_sandbox: Sandbox,
        work_sandbox: Sandbox,
        command_timeout: float,
        permissions: PermissionPolicy = "allow",
        mcp_servers: Sequence[McpServer] = (),
    ) -> None:
        self.name = name
        self.command = command
        self.agent_sandbox = agent_sandbox
        self.mcp_servers = list(mcp_servers)
        files = WorkspaceFiles(workspace)
        self.terminals = Terminals(work_sandbox, files, timeout=command_timeout)
        self.client = ErrandsClient(
            name=name, files=files, terminals=self.terminals, permissions=permissions
        )
        self.workspace = files.root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name=f"acp:{name}", daemon=True
        )
        self.process: SpawnedProcess | None = None
        self.connection: acp.ClientSideConnection | None = None
        self.session_id: str | None = None
        self.agent_info: schema.Implementation | None = None

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()
        try:
            self._wait(self._start(), START_TIMEOUT, "start")
        except BaseException:
            self.close()
            raise

    async def _start(self) -> None:
        self.process = await spawn(self.agent_sandbox.launch(f"exec {self.command}"))
        self.connection = acp.connect_to_agent(self.client, self.process.stdin, self.process.stdout)
        init = await self._guarded(
            self.connection.initialize(
                protocol_version=acp.PROTOCOL_VERSION,
                client_capabilities=schema.ClientCapabilities(
                    fs=schema.FileSystemCapabilities(read_text_file=True, write_text_file=True),
                    terminal=True,
                ),
                client_info=schema.Implementation(name="errands", title="Errands", version="1"),
            ),
            "initialize",
        )
        self.agent_info = init.agent_info
        session = await self._guarded(
            self.connection.new_session(
                cwd=str(self.workspace),
                mcp_servers=[
                    schema.McpServerStdio(
                        name=server.name,
                        command=server.command,
                        args=list(server.args),
                        env=[schema.EnvVariable(name=k, value=v) for k, v in server.env],
                    )
                    for server in self.mcp_servers
                ],
            ),
            "session/new",
        )
        self.session_id = session.session_id

    def close(self) -> None:
        """Stop the agent (its whole process tree) and the terminals it started."""
        if self.thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        self.terminals.close()
        if not self.loop.is_running():
            self.loop.close()

    async def _stop(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.close(), 5)
        if self.process is not None:
            await self.process.stop()

    # -- prompts ---------------------------------------------------------------------------

    def prompt(
        self,
        text: str,
        *,
        on_event: Callable[[Event], None],
        check: Callable[[], None],
        timeout: float,
    ) -> PromptOutcome:
        """Send ``text`` and wait for the agent's turn to end, handing each event to
        ``on_event`` as it comes. ``check`` is called every moment and may raise to stop the
        turn (a cancelled job): the agent is sent ``session/cancel`` and given a moment to
        end the turn, and the exception goes on. After ``timeout`` seconds the turn is
        cancelled the same way and fails."""
        if self.connection is None or self.session_id is None:
            raise AcpAgentError(f"the ACP agent {self.command!r} was not started")
        self.client.transcript.messages.clear()
        self.client.refusals.clear()
        on_event(
            Event("agent.prompt", f"{self.name}: prompt", {"agent": self.name, "content": text})
        )
        future = asyncio.run_coroutine_threadsafe(self._prompt(text), self.loop)
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._drain(on_event)
                try:
                    response = future.result(_POLL)
                    break
                except concurrent.futures.TimeoutError:
                    pass
                if time.monotonic() > deadline:
                    raise AcpAgentError(
                        f"the ACP agent {self.command!r} did not finish its turn within "
                        f"{timeout:.0f} s"
                    )
                check()
        except BaseException:
            self._cancel(future)
            self._drain(on_event)
            raise
        self._drain(on_event)
        usage = response.usage
        input_tokens = usage.input_tokens if usage is not None else None
        output_tokens = usage.output_tokens if usage is not None else None
        if usage is None:
            input_tokens, output_tokens = _meta_usage(response.field_meta)
        transcript = self.client.transcript
        return PromptOutcome(
            stop_reason=response.stop_reason,
            text=transcript.last_message(),
            messages=list(transcript.messages),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            refusals=list(self.client.refusals),
        )

    async def _prompt(self, text: str) -> schema.PromptResponse:
        assert self.connection is not None and self.session_id is not None
        try:
            return await self._guarded(
                self.connection.prompt(
                    session_id=self.session_id,
                    prompt=[schema.TextContentBlock(type="text", text=text)],
                ),
                "session/prompt",
            )
        finally:
            self.client.flush_text()

    def _cancel(self, future: concurrent.futures.Future[Any]) -> None:
        if future.done() or self.connection is None or self.session_id is None:
            return
        connection, session_id = self.connection, self.session_id
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(
                connection.cancel(session_id=session_id), self.loop
            ).result(5)
        try:
            future.result(CANCEL_GRACE)
        except Exception:
            # Cancelled or not, the turn is over for us: an agent that does not stop in
            # time is stopped with its process (close).
            future.cancel()

    def _drain(self, on_event: Callable[[Event], None]) -> None:
        while True:
            try:
                event = self.client.events.get_nowait()
            except queue.Empty:
                return
            on_event(event)

    # -- helpers ---------------------------------------------------------------------------

    async def _guarded(self, call: Coroutine[Any, Any, T], what: str) -> T:
        """``call``, unless the agent process dies first; protocol errors as ours."""
        assert self.process is not None
        process = self.process
        task = asyncio.ensure_future(call)
        exited = asyncio.ensure_future(process.process.wait())
        try:
            await asyncio.wait({task, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if not task.done():
            task.cancel()
            raise AcpAgentError(
                f"the ACP agent {self.command!r} exited (code {process.returncode}) during "
                f"{what}: {_tail(process)}"
            )
        try:
            return task.result()
        except acp.RequestError as exc:
            detail = f" ({exc.data})" if exc.data else ""
            raise AcpAgentError(
                f"the ACP agent {self.command!r} answered {what} with an error: {exc}{detail}"
            ) from exc
        except (ConnectionError, OSError, ValueError) as exc:
            raise AcpAgentError(
                f"the ACP agent {self.command!r} broke the connection during {what}: {exc}; "
                f"{_tail(process)}"
            ) from exc

    def _wait(self, call: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        future = asyncio.run_coroutine_threadsafe(call, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            process = self.process
            tail = _tail(process) if process is not None else ""
            raise AcpAgentError(
                f"the ACP agent {self.command!r} did not {what} within {timeout:.0f} s: {tail}"
            ) from exc


def _tail(process: SpawnedProcess) -> str:
    tail = process.stderr_tail.strip()
    return f"its last output: {tail[-1500:]}" if tail else "it printed nothing on stderr"


def _meta_usage(meta: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """Token counts some agents report in the prompt response's ``_meta`` instead of the
    (still unstable) ``usage`` field: Gemini CLI's ``quota.token_count``."""
    quota = (meta or {}).get("quota")
    counts = quota.get("token_count") if isinstance(quota, dict) else None
    if not isinstance(counts, dict):
        return None, None
    inputs, outputs = counts.get("input_tokens"), counts.get("output_tokens")
    return (
        inputs if isinstance(inputs, int) else None,
        outputs if isinstance(outputs, int) else None,
    )
