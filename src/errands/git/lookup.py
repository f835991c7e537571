"""Revisions of a mirror looked up without a git process each: one long-lived
``git cat-file --batch-check`` per mirror answers them over a pipe.

A job asked ``git rev-parse`` some thirty times (a branch's tip before and after each step,
the base's, a commit's tree): each a process of 3 to 15 ms for microseconds of git's work. The
long-lived git answers as a new process would: it reads a loose ref's file afresh for every
request, re-reads packed-refs whenever that file changed (git checks its stat data each
time), and rescans the object directory for an object it does not find, so what commits,
fetches and pushes made after it started is seen. Git itself reads the refs and peels the
objects, whatever the remote sent; nothing of the repository is parsed here, only git's
one-line answers.

Only for Errands' own mirrors (callers choose this module for them): a user's repository
never has a git of ours lingering in it. At most :data:`MAX_READERS` live per process, the
least recently used stopped first. Anything unusual (git died or is not answering, a
revision that cannot travel on one line) falls back to ``git rev-parse``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import select
import subprocess
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Literal

from errands.errors import GitError
from errands.git.repo import check_rev
from errands.git.runner import run_git, start_git

MAX_READERS = 8
# Seconds a reader serves before a new one takes over: git keeps the pack files it read open,
# and a gc that replaced them frees their disk space only once no process holds them.
MAX_AGE = 60.0
# Seconds an answer may take before the reader is given up on (a lookup takes microseconds;
# this only bounds a git that hangs on a sick disk).
TIMEOUT = 30.0
# What is sent as is: printable ASCII without spaces, so the request is one line and git's
# way of reading it (the whole line is the name) cannot differ from rev-parse's argv.
_PLAIN = re.compile(r"[!-~]+")
_OBJECT_ID = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")
_KINDS = frozenset({b"commit", b"tree", b"blob", b"tag"})

Kind = Literal["commit", "tree"]


class _Unavailable(Exception):
    """This reader cannot answer: ask a git process instead."""


class _Reader:
    """One ``cat-file --batch-check`` in one repository, one request at a time."""

    def __init__(self, repo: Path) -> None:
        self.proc = start_git("cat-file", "--batch-check=%(objectname) %(objecttype)", cwd=repo)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin
        # Read with os.read and select, never through the buffered file: a timeout needs to
        # know whether bytes are waiting.
        self.fd = self.proc.stdout.fileno()
        self.lock = threading.Lock()
        self.closed = False
        self.started = time.monotonic()

    def ask(self, name: str) -> tuple[str, str] | None:
        """(object id, type) of ``name``; None when it names nothing (or not that type)."""
        with self.lock:
            if self.closed:
                raise _Unavailable("closed")
            try:
                self.stdin.write(name.encode() + b"\n")
                self.stdin.flush()
                line = self._line()
            except (OSError, ValueError) as exc:  # ValueError: a pipe already closed
                raise _Unavailable(str(exc)) from exc
        found, _, kind = line.rpartition(b" ")
        if kind in (b"missing", b"ambiguous"):
            return None
        if not _OBJECT_ID.fullmatch(found) or kind not in _KINDS:
            raise _Unavailable(f"unexpected answer {line[:200]!r}")
        return found.decode(), kind.decode()

    def _line(self) -> bytes:
        # One request is in flight at a time, so the answer is the first (and only) line.
        # Anything else (a timeout, a partial line, a second line) and the reader is
        # dropped, never asked again: a late answer must not be taken for the next one's.
        deadline = time.monotonic() + TIMEOUT
        # poll, not select: a server's descriptors can number past select's limit of 1024.
        ready = select.poll()
        ready.register(self.fd, select.POLLIN)
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not ready.poll(left * 1000):
                raise _Unavailable("git cat-file did not answer in time")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise _Unavailable("git cat-file exited")
            data += chunk
        if data.count(b"\n") != 1:
            raise _Unavailable("git cat-file answered more than asked")
        return data[:-1]

    def close(self) -> None:
        # Under the lock: the pipe's descriptor must not be closed (and its number reused
        # by another file) while a request is reading it.
        with self.lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(OSError):
                self.stdin.close()  # git's end of input: it exits
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            assert self.proc.stdout is not None
            self.proc.stdout.close()


class _Registry:
    """This process's readers, by the repository directory's (device, inode): any spelling
    of its path finds the same reader, and a directory deleted and made again is another
    one. (A live reader's git has its working directory there, so that inode cannot be
    reused while it runs.) Least recently used first."""

    def __init__(self) -> None:
        self.readers: OrderedDict[tuple[int, int], _Reader] = OrderedDict()
        self.lock = threading.Lock()


_registry = _Registry()


def _ask(repo: Path, name: str) -> tuple[str, str] | None:
    try:
        found = os.stat(repo)
    except OSError as exc:
        raise _Unavailable(str(exc)) from exc
    key = (found.st_dev, found.st_ino)
    stopped: list[_Reader] = []
    registry = _registry
    with registry.lock:
        reader = registry.readers.get(key)
        if reader is not None and time.monotonic() - reader.started > MAX_AGE:
            stopped.append(registry.readers.pop(key))
            reader = None
        if reader is None:
            try:
                reader = _Reader(repo)
            except (GitError, OSError) as exc:
                raise _Unavailable(str(exc)) from exc
            registry.readers[key] = reader
            while len(registry.readers) > MAX_READERS:
                stopped.append(registry.readers.popitem(last=False)[1])
        else:
            registry.readers.move_to_end(key)
    for old in stopped:  # outside the registry's lock: a close may wait for a request
        old.close()
    try:
        return reader.ask(name)
    except _Unavailable:
        with registry.lock:
            if registry.readers.get(key) is reader:
                del registry.readers[key]
        reader.close()
        raise


def peel(repo: Path, rev: str, kind: Kind) -> str | None:
    """The ``kind`` object ``rev`` names in the mirror ``repo`` (a tag peeled, a commit's
    tree for ``"tree"``), or None when it names none: ``rev-parse --verify rev^{kind}``."""
    spec = f"{check_rev(rev)}^{{{kind}}}"
    if _PLAIN.fullmatch(rev):
        try:
            found = _ask(repo, spec)
        except _Unavailable:
            pass
        else:
            return found[0] if found is not None and found[1] == kind else None
    result = run_git("rev-parse", "--verify", "--quiet", spec, cwd=repo)
    return result.stdout.strip() if result.ok else None


def resolve(repo: Path, rev: str) -> str | None:
    """The commit ``rev`` names in the mirror ``repo``, or None: what
    :func:`errands.git.repo.resolve` answers, without starting git."""
    return peel(repo, rev, "commit")


def close_all() -> None:
    """Stop every reader of this process (at exit; tests that count processes)."""
    registry = _registry
    with registry.lock:
        readers = list(registry.readers.values())
        registry.readers.clear()
    for reader in readers:
        reader.close()


_inherited: list[object] = []


def _forget_in_child() -> None:
    # A forked child shares the parent's pipes: talking to (or stopping) the parent's
    # readers would take their answers. The child starts its own when it needs one, and
    # keeps the parent's out of reach of the garbage collector, which would close them. A
    # new lock, too: another thread may have held the old one at the fork.
    _inherited.append(_registry.readers)
    _registry.readers = OrderedDict()
    _registry.lock = threading.Lock()


atexit.register(close_all)
os.register_at_fork(after_in_child=_forget_in_child)
