"""Commands as plain child processes: scrubbed environment, limits, no isolation."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from errands.errors import CommandError
from errands.sandbox.base import CommandResult

_CHUNK = 4096


class _CappedReader:
    """Drains a pipe so the child never blocks, keeping the head and the tail of its output."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.dropped = 0
        self.limit = limit
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        half = self.limit // 2
        for data in iter(lambda: stream.read1(_CHUNK), b""):  # type: ignore[attr-defined]
            chunk = data
            if len(self.head) < half:
                room = half - len(self.head)
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail.append(chunk)
                self.tail_size += len(chunk)
                excess = self.tail_size - half
                while excess > 0 and self.tail:
                    # Trim only the excess from the oldest chunk, so the tail stays full.
                    oldest = self.tail.popleft()
                    cut = min(excess, len(oldest))
                    if cut < len(oldest):
                        self.tail.appendleft(oldest[cut:])
                    self.tail_size -= cut
                    self.dropped += cut
                    excess -= cut
        stream.close()

    def text(self) -> tuple[str, bool]:
        self.thread.join(5)
        tail = b"".join(self.tail)
        head = self.head.decode("utf-8", errors="replace")
        if self.dropped:
            marker = f"\n… [{self.dropped} bytes of output elided] …\n"
            return head + marker + tail.decode("utf-8", errors="replace"), True
        return (bytes(self.head) + tail).decode("utf-8", errors="replace"), False


class PlainSandbox:
    """No isolation: only for the walking skeleton and for users who opt out explicitly."""

    name = "none"

    def __init__(self, env: Mapping[str, str], *, output_limit: int = 50_000) -> None:
        self.base_env = dict(env)
        self.output_limit = output_limit

    def run(
        self,
        command: str,
        *,
        cwd: Path,
        timeout: float,
        cancel: threading.Event | None = None,
    ) -> CommandResult:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="errands-home-") as home:
            env = {
                **self.base_env,
                # A throwaway HOME keeps tools from reading the user's dotfiles and
                # credentials, and keeps their caches out of the workspace (and the commit).
                "HOME": home,
                "TMPDIR": home,
                "PYTHONDONTWRITEBYTECODE": "1",
                "GIT_TERMINAL_PROMPT": "0",
                "CI": "true",
            }
            try:
                process = subprocess.Popen(
                    ["bash", "-c", command],
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so we can kill the tree
                )
            except OSError as exc:
                raise CommandError(f"Cannot start {command!r} in {cwd}: {exc}") from exc
            assert process.stdout is not None
            reader = _CappedReader(process.stdout, self.output_limit)
            timed_out = cancelled = False
            while True:
                try:
                    process.wait(timeout=0.1)
                    # Nothing the command started may outlive it (a server left running with
                    # `&` would also hold the output pipe open).
                    _kill_group(process)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() - started > timeout:
                    timed_out = True
                elif cancel is not None and cancel.is_set():
                    cancelled = True
                if timed_out or cancelled:
                    _kill_group(process)
                    break
            output, truncated = reader.text()
        return CommandResult(
            command=command,
            exit_code=None if (timed_out or cancelled) else process.returncode,
            output=output,
            duration=time.monotonic() - started,
            timed_out=timed_out,
            cancelled=cancelled,
            truncated=truncated,
        )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
