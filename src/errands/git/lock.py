"""Serialise Errands' own writers of one repository."""

from __future__ import annotations

import fcntl
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
