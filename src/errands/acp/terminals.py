"""The agent's ``terminal/*`` requests: each command runs in the work sandbox, exactly as the
native loop's ``run_command`` does (no network, the workspace writable, the project's limits
and timeout), in a thread of its own so the agent can poll, wait for or kill it."""

from __future__ import annotations

import re
import shlex
import threading
import uuid
from dataclasses import dataclass, field

from errands.acp.files import FileRefused, WorkspaceFiles
from errands.sandbox import CommandResult, Sandbox

MAX_TERMINALS = 16
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Terminal:
    command: str
    output_limit: int | None
    cancel: threading.Event = field(default_factory=threading.Event)
    tail: str = ""
    result: CommandResult | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def output(self) -> tuple[str, bool]:
        """What it printed so far (all of it once it exited, as far as the sandbox keeps
        it), cut to the agent's byte limit from the end, and whether something was cut."""
        text = self.result.output if self.result is not None else self.tail
        truncated = self.result.truncated if self.result is not None else False
        if self.output_limit is not None and len(text.encode()) > self.output_limit:
            data = text.encode()[-self.output_limit :]
            text = data.decode("utf-8", errors="ignore")  # a cut character is dropped
            truncated = True
        return text, truncated


class Terminals:
    def __init__(self, sandbox: Sandbox, files: WorkspaceFiles, *, timeout: float) -> None:
        self.sandbox = sandbox
        self.files = files
        self.timeout = timeout
        self.running: dict[str, Terminal] = {}
        self.lock = threading.Lock()

    def create(
        self,
        command: str,
        args: list[str],
        *,
        env: dict[str, str],
        cwd: str | None,
        output_limit: int | None,
    ) -> str:
        """Start the command; its id. ``command`` alone is a shell line (as agents send it);
        with ``args``, a program and its arguments."""
        line = shlex.join([command, *args]) if args else command
        if not line.strip():
            raise FileRefused("a command is required")
        for name in env:
            if not _ENV_NAME.fullmatch(name):
                raise FileRefused(f"{name!r} is not an environment variable name")
        prefix = ""
        if cwd:
            # Confined like a file path: a directory inside the workspace.
            directory = self.files.root / self.files.relative(cwd)
            if directory != self.files.root:
                prefix += f"cd {shlex.quote(str(directory))} && "
        if env:
            prefix += "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + "; "
        terminal = Terminal(command=line, output_limit=output_limit)
        with self.lock:
            if sum(not t.done.is_set() for t in self.running.values()) >= MAX_TERMINALS:
                raise FileRefused(f"at most {MAX_TERMINALS} commands may run at once")
            terminal_id = f"term-{uuid.uuid4().hex[:12]}"
            self.running[terminal_id] = terminal
        threading.Thread(
            target=self._run, args=(terminal, prefix + line), name=terminal_id, daemon=True
        ).start()
        return terminal_id

    def _run(self, terminal: Terminal, command: str) -> None:
        def progress(tail: str) -> None:
            terminal.tail = tail

        try:
            terminal.result = self.sandbox.run(
                command, timeout=self.timeout, cancel=terminal.cancel, on_output=progress
            )
        except Exception as exc:  # told to the agent as the command's output
            terminal.result = CommandResult(
                command=command, exit_code=None, output=f"Error: {exc}", duration=0.0
            )
        finally:
            terminal.done.set()

    def get(self, terminal_id: str) -> Terminal:
        with self.lock:
            terminal = self.running.get(terminal_id)
        if terminal is None:
            raise FileRefused(f"no terminal {terminal_id!r}")
        return terminal

    def kill(self, terminal_id: str) -> None:
        self.get(terminal_id).cancel.set()

    def release(self, terminal_id: str) -> None:
        terminal = self.get(terminal_id)
        terminal.cancel.set()
        with self.lock:
            self.running.pop(terminal_id, None)

    def close(self) -> None:
        """Kill every command still running and wait for them (the sandbox kills the tree)."""
        with self.lock:
            terminals, self.running = list(self.running.values()), {}
        for terminal in terminals:
            terminal.cancel.set()
        for terminal in terminals:
            terminal.done.wait(30)
