"""A doorbell between the processes of one machine sharing a SQLite ledger: a directory of named
pipes (FIFOs) next to the database file, one per process that waits for jobs.

Why FIFOs: a commit in any process (the CLI, the API, a worker) reaches every waiting worker
within a millisecond, and an idle worker costs nothing while it waits (it sleeps in
``poll``), where polling the ledger more often to answer as fast would run a claim query
several times a second per worker. Unlike ``PRAGMA data_version``, which changes on every
commit (heartbeats, events), a ring means a job was queued, so workers wake only for that.
Unlike Unix sockets, a FIFO's path has no 108-byte limit. A lost ring is harmless: workers
still look at the ledger every ``worker_poll_interval``.

Ringing opens each pipe write-only and non-blocking and writes one byte:

- no reader (``ENXIO``): its process is gone (SIGKILL leaves the file); the pipe is removed.
  A waiter opens its pipe before giving it the name ringers look for, so a live one is
  never mistaken for a dead one;
- full (``EAGAIN``): it is rung already;
- anything but a FIFO (a symlink, a regular file someone put there) is never written to.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import stat
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".fifo"


class Doorbell:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None  # this process's pipe, opened on its first wait
        self._path: Path | None = None
        self._broken = False  # no pipe could be made here: wait is a sleep

    def ring(self) -> None:
        """Wake every waiting process (this one's too). Never raises: workers poll anyway."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return  # no waiter has ever been here
        for name in names:
            if name.endswith(SUFFIX):
                self._ring_one(self.directory / name)

    def _ring_one(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nobody reads it: a dead process's pipe
                with contextlib.suppress(OSError):
                    path.unlink()
            return
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, b"!")
        except OSError:
            pass  # full: rung already
        finally:
            os.close(fd)

    def wait(self, timeout: float) -> None:
        """Return when rung (or after ``timeout`` seconds); rings before the call count."""
        fd = self._open()
        if fd is None:
            time.sleep(timeout)
            return
        # poll, not select: select cannot watch a descriptor numbered 1024 or more, and a
        # busy server process may well have that many open.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if poller.poll(max(timeout, 0) * 1000):
            with contextlib.suppress(BlockingIOError):
                os.read(fd, 4096)  # one wake for every ring so far

    def _open(self) -> int | None:
        if self._fd is not None or self._broken:
            return self._fd
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            pending = self.directory / f"{name}.new"
            os.mkfifo(pending, 0o600)
            # Read-write: the pipe always has a writer (us), so poll never sees an EOF,
            # and it has its reader before ringers can find it by its name.
            fd = os.open(pending, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            path = self.directory / f"{name}{SUFFIX}"
            os.rename(pending, path)
        except OSError as exc:
            log.warning("no doorbell in %s (%s); polling the ledger only", self.directory, exc)
            self._broken = True
            return None
        self._fd, self._path = fd, path
        return fd

    def close(self) -> None:
        """Wake this process's waiter (it is stopping) and take its pipe away. The pipe's
        descriptor stays open: the waiter may still be in ``poll`` on it."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._fd, b"!")
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()
