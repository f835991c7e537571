"""Serialise Errands' own writers of one repository."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "errands.lock"


@contextmanager
def repo_lock(git_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``git_dir`` while managing refs and worktrees.

    Many tasks share one mirror. Git fails rather than waits when two processes take the
    same ref or packed-refs lock (a fetch pruning while a workspace is being added), so
    Errands' workers queue up here instead. The kernel drops the lock if the worker dies.
    """
    with (git_dir / LOCK_NAME).open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def turn(path: Path, *, patience: float, poll: float = 0.05) -> Iterator[bool]:
    """Wait up to ``patience`` seconds for an exclusive lock on the file ``path``; yields
    whether this caller holds it.

    For work that would otherwise race and retry, where queueing is only an optimisation:
    a holder frozen past ``patience`` (a stopped worker keeps its lock until it dies) makes
    the others go ahead without their turn rather than wait for it forever."""
    with path.open("a+b") as handle:
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(poll)
                continue
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
            return
