"""Serialise Errands' own writers of one repository."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Errands' own lock and state files of a mirror, all in this directory of it. Commands read
# the mirror (a read-only bind), and flock needs no more than a read-only descriptor: a
# command that could open these could hold every job of the project until its timeout. So
# the sandbox hides this directory (workflow.workspaces.policies), and bubblewrap can only
# cover what exists when a command starts: it is made before any lock is taken, and before
# any sandbox of the mirror starts.
LOCKS_DIR = "errands-locks"
LOCK_NAME = "errands.lock"
# Where earlier versions kept them, at the mirror's top where commands see them: removed
# when a mirror is opened (see Mirror.create). No code takes them any more, so a worker of
# an earlier version must not run beside this one on a machine (it would lock the old files).
OLD_NAMES = ("errands.lock", "errands-fetches", ".errands-fetches.tmp", "errands-land-*.lock")


def locks_dir(git_dir: Path) -> Path:
    """The directory of Errands' own lock and state files in the mirror ``git_dir``, made if
    it is missing."""
    path = git_dir / LOCKS_DIR
    path.mkdir(exist_ok=True)
    return path


def remove_old_locks(git_dir: Path) -> None:
    """Delete the lock and state files earlier versions kept at the mirror's top."""
    for pattern in OLD_NAMES:
        for old in git_dir.glob(pattern):
            old.unlink(missing_ok=True)


@contextmanager
def repo_lock(git_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``git_dir`` while managing refs and worktrees.

    Many tasks share one mirror. Git fails rather than waits when two processes take the
    same ref or packed-refs lock (a fetch pruning while a workspace is being added), so
    Errands' workers queue up here instead. The kernel drops the lock if the worker dies.
    """
    with (locks_dir(git_dir) / LOCK_NAME).open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def turn(
    path: Path,
    *,
    patience: float,
    poll: float = 0.05,
    check: Callable[[], None] = lambda: None,
) -> Iterator[bool]:
    """Wait up to ``patience`` seconds for an exclusive lock on the file ``path``; yields
    whether this caller holds it.

    For work that would otherwise race and retry, where queueing is only an optimisation:
    a holder frozen past ``patience`` (a stopped worker keeps its lock until it dies) makes
    the others go ahead without their turn rather than wait for it forever. ``check`` is
    called at every poll while waiting and stops the wait by raising (a cancelled job)."""
    with path.open("a+b") as handle:
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                check()
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
