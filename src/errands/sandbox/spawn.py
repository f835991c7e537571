"""A long-running sandboxed process with its stdio as pipes: an ACP agent, an MCP server.

``Sandbox.run`` runs a command to completion; these processes instead talk over stdin and
stdout for as long as a session lasts. They get the same confinement (the sandbox's
``launch``: bwrap's command line and empty host environment), the same rlimits and pids
cgroup as a command, and the same end: nothing of the tree survives ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections import deque

from errands.errors import CommandError
from errands.sandbox.base import Launch
from errands.sandbox.limits import LimitedStart, PidsCgroup, warn_if_process_limit_does_not_hold
from errands.sandbox.process import children_of

# A JSON-RPC line may carry a whole file: asyncio's 64 KiB default line limit is too small.
STREAM_LIMIT = 50 * 1024 * 1024
STDERR_TAIL_CHARS = 4_000


class SpawnedProcess:
    """One running process tree. ``stdin``/``stdout`` are its pipes; its stderr is drained
    and its tail kept for error messages (``stderr_tail``)."""

    def __init__(
        self, launch: Launch, process: asyncio.subprocess.Process, cgroup: PidsCgroup | None
    ) -> None:
        self.launch = launch
        self.process = process
        self.cgroup = cgroup
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        self.stdin: asyncio.StreamWriter = process.stdin
        self.stdout: asyncio.StreamReader = process.stdout
        self._stderr: deque[str] = deque()
        self._stderr_size = 0
        self._drain = asyncio.ensure_future(self._drain_stderr(process.stderr))
        self._stopped = False

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(4096):
            text = chunk.decode("utf-8", errors="replace")
            self._stderr.append(text)
            self._stderr_size += len(text)
            while self._stderr_size - len(self._stderr[0]) > STDERR_TAIL_CHARS:
                self._stderr_size -= len(self._stderr.popleft())

    @property
    def stderr_tail(self) -> str:
        return "".join(self._stderr)[-STDERR_TAIL_CHARS:]

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def stop(self, *, grace: float = 2.0) -> None:
        """Close its stdin, give it ``grace`` seconds to exit on its own, then kill the whole
        tree (also what it started in sessions of its own, bwrap's init among them)."""
        if self._stopped:
            return
        self._stopped = True
        process = self.process
        with contextlib.suppress(OSError, RuntimeError):
            self.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
        detached = children_of(process.pid) if process.returncode is None else []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        for pid in detached:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await process.wait()
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.kill)
            await asyncio.to_thread(self.cgroup.remove)
        self._drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._drain
        for path in self.launch.cleanup:
            shutil.rmtree(path, ignore_errors=True)


async def spawn(launch: Launch) -> SpawnedProcess:
    """Start ``launch`` with pipes for stdin, stdout and stderr."""
    cgroup = PidsCgroup.create(launch.limits.processes + launch.helper_tasks)
    if cgroup is None:
        warn_if_process_limit_does_not_hold()
    try:
        start = LimitedStart(
            launch.argv,
            launch.limits,
            cgroup,
            extra_tasks=launch.helper_tasks,
            empty_env=not launch.env,
        )
        process = await asyncio.create_subprocess_exec(
            *start.argv,
            cwd=launch.cwd,
            env=dict(launch.env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=STREAM_LIMIT,
            start_new_session=True,  # its own process group, so we can kill the tree
            # Only where LimitedStart has no programs to start it with; it only makes system
            # calls in the child (see child_setup): safe in a threaded worker.
            preexec_fn=start.preexec_fn,
        )
    except (OSError, ValueError) as exc:
        if cgroup is not None:
            cgroup.remove()
        for path in launch.cleanup:
            shutil.rmtree(path, ignore_errors=True)
        raise CommandError(f"Cannot start {launch.command!r} in {launch.cwd}: {exc}") from exc
    return SpawnedProcess(launch, process, cgroup)
