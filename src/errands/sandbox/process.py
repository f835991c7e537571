"""One command as one child process tree: output drained and capped, a wall-clock deadline, a
cancel flag, and nothing of the tree left running when ``run_process`` returns."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from errands.errors import CommandError
from errands.faults import crash_point
from errands.sandbox.base import CommandResult
from errands.sandbox.limits import LimitedStart, PidsCgroup, warn_if_process_limit_does_not_hold
from errands.sandbox.policy import Limits

log = logging.getLogger(__name__)

_CHUNK = 4096
# What one line handed to ``on_line`` may hold, and how much may wait for the listener: the
# command is hostile, so a line without end or a flood faster than the listener must not grow
# the worker's memory. A longer line is cut (and says so); past MAX_QUEUED_BYTES the drain
# waits, which stalls the command on its pipe until the listener catches up.
MAX_LINE_BYTES = 4 << 20
MAX_QUEUED_BYTES = 8 << 20
LINE_CUT_MARKER = " … [line cut: {} more bytes]"
OUTPUT_EVERY = 2.0  # seconds between progress reports of a running command's output
OUTPUT_TAIL_CHARS = 2_000
# How often a running command's loop looks at its lines, its timeout and the cancel flag. Its
# exit wakes the loop at once (``_ExitWatch``): a command costs no waiting on top.
_TICK = 0.05

OutputListener = Callable[[str], None]
LineListener = Callable[[str], None]


def _tell(listener: OutputListener, tail: str) -> None:
    try:
        listener(tail)
    except Exception:  # a progress report must never break the command
        log.exception("could not report a command's output")


class _CappedReader:
    """Drains a pipe so the child never blocks, keeping the head and the tail of its output."""

    def __init__(self, stream: IO[bytes], limit: int, *, lines: bool = False) -> None:
        # With ``lines``, every complete line of output (whatever the cap keeps) also goes to
        # ``self.lines``, for a caller that reads a protocol from the output (stream-json).
        self.lines: queue.SimpleQueue[tuple[str, int]] | None = (
            queue.SimpleQueue() if lines else None
        )
        self.queued = 0  # bytes of the lines in self.lines
        self.room = threading.Condition()
        self.partial = bytearray()
        self.partial_cut = 0  # bytes of the current line dropped past MAX_LINE_BYTES
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.dropped = 0
        self.received = 0  # bytes read so far, to tell when there is news
        self.limit = limit
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        half = self.limit // 2
        for data in iter(lambda: stream.read1(_CHUNK), b""):  # type: ignore[attr-defined]
            self.received += len(data)
            if self.lines is not None:
                self._split_lines(data)
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
        if self.lines is not None and (self.partial or self.partial_cut):
            self._end_line()
        stream.close()

    def _split_lines(self, data: bytes) -> None:
        # Only the new data is searched for line ends, so a long line costs linear time.
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self._add_to_line(data[start:end])
            self._end_line()
            start = end + 1
        self._add_to_line(data[start:])

    def _add_to_line(self, data: bytes) -> None:
        room = MAX_LINE_BYTES - len(self.partial)
        self.partial += data[:room]
        self.partial_cut += max(0, len(data) - room)

    def _end_line(self) -> None:
        assert self.lines is not None
        line = self.partial.decode("utf-8", errors="replace")
        if self.partial_cut:
            line += LINE_CUT_MARKER.format(self.partial_cut)
        size = len(self.partial)
        self.partial, self.partial_cut = bytearray(), 0
        with self.room:
            while self.queued > MAX_QUEUED_BYTES:
                self.room.wait()
            self.queued += size
        self.lines.put((line, size))

    def take_lines(self) -> list[str]:
        taken: list[str] = []
        while self.lines is not None and len(taken) < 256:  # a batch, not the whole backlog
            try:
                line, size = self.lines.get_nowait()
            except queue.Empty:
                break
            taken.append(line)
            with self.room:
                self.queued -= size
                self.room.notify()
        return taken

    def recent(self, chars: int) -> str:
        """The last ``chars`` characters so far (read while the drain thread appends)."""
        data = b"".join(list(self.tail)) or bytes(self.head)
        return data[-chars * 2 :].decode("utf-8", errors="replace")[-chars:]

    def text(self) -> tuple[str, bool]:
        self.thread.join(5)
        tail = b"".join(self.tail)
        head = self.head.decode("utf-8", errors="replace")
        if self.dropped:
            marker = f"\n… [{self.dropped} bytes of output elided] …\n"
            return head + marker + tail.decode("utf-8", errors="replace"), True
        return (bytes(self.head) + tail).decode("utf-8", errors="replace"), False


def run_process(
    argv: Sequence[str],
    *,
    command: str,
    env: Mapping[str, str],
    cwd: Path,
    limits: Limits,
    timeout: float,
    cancel: threading.Event | None,
    helper_tasks: int = 0,
    on_output: OutputListener | None = None,
    on_line: LineListener | None = None,
) -> CommandResult:
    """Run ``argv`` (which runs ``command``) to completion, timeout or cancel.

    ``helper_tasks`` are processes of the wrapper itself (bwrap's), granted on top of
    ``limits.processes`` so that the limit means the same for every backend. While it runs,
    ``on_output`` gets the tail of its output every ``OUTPUT_EVERY`` seconds when there is
    new output, so a long test run shows progress; ``on_line`` gets each line of its output
    as it comes, in this thread (the output kept in the result is still capped)."""
    started = time.monotonic()
    cgroup = PidsCgroup.create(limits.processes + helper_tasks)
    if cgroup is None:
        warn_if_process_limit_does_not_hold()
    try:
        start = LimitedStart(argv, limits, cgroup, extra_tasks=helper_tasks, empty_env=not env)
        try:
            process = subprocess.Popen(
                start.argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so we can kill the tree
                # Only where LimitedStart has no programs to start it with. Safe in our
                # threaded worker: it only makes system calls (see child_setup).
                preexec_fn=start.preexec_fn,  # noqa: PLW1509
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise CommandError(f"Cannot start {command!r} in {cwd}: {exc}") from exc
        assert process.stdout is not None
        reader = _CappedReader(process.stdout, limits.output_chars, lines=on_line is not None)
        crash_point("command.running")
        timed_out = cancelled = False
        reported, next_report = 0, time.monotonic() + OUTPUT_EVERY
        with _ExitWatch(process.pid) as exit_watch:
            while not _exited(process.pid):
                if on_line is not None:
                    _tell_lines(on_line, reader.take_lines())
                if on_output is not None and time.monotonic() >= next_report:
                    next_report = time.monotonic() + OUTPUT_EVERY
                    if reader.received != reported:
                        reported = reader.received
                        _tell(on_output, reader.recent(OUTPUT_TAIL_CHARS))
                if time.monotonic() - started > timeout:
                    timed_out = True
                elif cancel is not None and cancel.is_set():
                    cancelled = True
                if timed_out or cancelled:
                    break
                exit_watch.wait(min(_TICK, max(0.0, started + timeout - time.monotonic())))
        # Also after a normal exit: nothing the command started may outlive it (a server
        # left running with `&` would also hold the output pipe open).
        _kill_tree(process, cgroup)
        if on_line is not None:
            # The drain may be waiting for room in the line queue: keep taking lines until
            # it has read the pipe to its end (the tree is dead, so the end is near).
            deadline = time.monotonic() + 5
            while reader.thread.is_alive() and time.monotonic() < deadline:
                _tell_lines(on_line, reader.take_lines())
                reader.thread.join(0.01)
        output, truncated = reader.text()
        while on_line is not None and (lines := reader.take_lines()):
            _tell_lines(on_line, lines)
    finally:
        if cgroup is not None:
            cgroup.remove()
    return CommandResult(
        command=command,
        exit_code=None if (timed_out or cancelled) else process.returncode,
        output=output,
        duration=time.monotonic() - started,
        timed_out=timed_out,
        cancelled=cancelled,
        truncated=truncated,
    )


def _tell_lines(listener: LineListener, lines: list[str]) -> None:
    for line in lines:
        _tell(listener, line)


class _ExitWatch:
    """Sleeps until ``pid`` exits or a timeout passes, whichever is first. A pidfd (Linux
    5.3+) turns readable at the exit, without reaping it; elsewhere it sleeps in growing
    steps (1 ms up to ``_TICK``) and the caller looks again."""

    def __init__(self, pid: int) -> None:
        self.pidfd: int | None = None
        self.poller: select.poll | None = None
        self.delay = 0.001
        with contextlib.suppress(OSError, AttributeError):
            self.pidfd = os.pidfd_open(pid)
            self.poller = select.poll()
            self.poller.register(self.pidfd, select.POLLIN)

    def __enter__(self) -> _ExitWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)

    def wait(self, seconds: float) -> None:
        if self.poller is not None:
            self.poller.poll(seconds * 1000)
            return
        time.sleep(min(seconds, self.delay))
        self.delay = min(self.delay * 2, _TICK)


def _exited(pid: int) -> bool:
    """True once ``pid`` has exited, without reaping it: until we reap it, its pid (which is
    also the process group's id) cannot be reused, so killing the group stays safe."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_tree(process: subprocess.Popen[bytes], cgroup: PidsCgroup | None) -> None:
    # Children that moved to a session of their own (bwrap's pid-namespace init does) are
    # not in the group; remember them while the leader still has them.
    detached = children_of(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if cgroup is not None:
        cgroup.kill()
        return
    for pid in detached:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # bwrap's init takes the whole pid namespace down with it: the kernel kills every process
    # in it and waits for them before the init itself is gone. So its exit is our signal.
    deadline = time.monotonic() + 5
    while detached and time.monotonic() < deadline:
        detached = [pid for pid in detached if _alive(pid)]
        time.sleep(0.01)


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
