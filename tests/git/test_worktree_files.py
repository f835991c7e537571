"""Work tree bookkeeping read and written without a git process (HEAD files, registrations,
whether a prune has anything to do) agrees with git, and refuses what a sandbox may have
planted in an admin dir rather than follow it."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from errands.git import Mirror
from errands.git.worktrees import (
    admin_dirs,
    branch_elsewhere,
    head_of,
    list_worktrees,
    prune_needed,
    register_path,
    write_head,
)
from tests.git.git_helpers import sh

BASE = "refs/remotes/origin/main"


def _add(mirror: Mirror, path: Path, branch: str) -> Path:
    workspace = mirror.add_workspace(path, branch, BASE)
    return workspace.git_dir


def _git_prunes(mirror: Mirror) -> bool:
    said = subprocess.run(
        ["git", "worktree", "prune", "--dry-run", "--verbose"],
        cwd=mirror.path,
        capture_output=True,
        text=True,
        check=True,
    )
    return "Removing" in said.stdout + said.stderr


def test_head_read_as_git_writes_it(mirror: Mirror, tmp_path: Path) -> None:
    git_dir = _add(mirror, tmp_path / "w1", "errands/1-a")
    assert head_of(git_dir) == ("ref", "refs/heads/errands/1-a")
    commit = mirror.resolve(BASE)
    assert commit is not None
    sh(tmp_path / "w1", "checkout", "--quiet", "--detach")
    assert head_of(git_dir) == ("detached", commit)


@pytest.mark.parametrize(
    "content",
    [
        b"ref:  refs/heads/errands/1-a\n",  # git reads this one too, but it is not its own
        b"ref: refs/heads/errands/1-a",
        b"ref: refs/heads/errands/1-a\n\n",
        b"ref: refs/heads/errands/1-a \n",
        b"ref: refs/heads/errands/1-a\n" + b"x" * 5000,
        b"",
    ],
)
def test_any_other_head_is_left_to_git(mirror: Mirror, tmp_path: Path, content: bytes) -> None:
    git_dir = _add(mirror, tmp_path / "w1", "errands/1-a")
    (git_dir / "HEAD").write_bytes(content)
    assert head_of(git_dir) is None


def test_a_planted_head_is_never_followed(mirror: Mirror, tmp_path: Path) -> None:
    git_dir = _add(mirror, tmp_path / "w1", "errands/1-a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("ref: refs/heads/errands/1-a\n")
    (git_dir / "HEAD").unlink()
    (git_dir / "HEAD").symlink_to(elsewhere)
    assert head_of(git_dir) is None
    (git_dir / "HEAD").unlink()
    os.mkfifo(git_dir / "HEAD")  # would block a plain open()
    assert head_of(git_dir) is None
    # Writing replaces the FIFO (or a link) instead of writing through it.
    write_head(git_dir, "refs/heads/errands/1-a")
    assert stat.S_ISREG(os.lstat(git_dir / "HEAD").st_mode)
    assert head_of(git_dir) == ("ref", "refs/heads/errands/1-a")


def test_a_written_head_is_what_git_reads(mirror: Mirror, tmp_path: Path) -> None:
    git_dir = _add(mirror, tmp_path / "w1", "errands/1-a")
    tree = ("--git-dir", str(git_dir), "--work-tree", str(tmp_path / "w1"))
    commit = mirror.resolve(BASE)
    assert commit is not None
    write_head(git_dir, commit)
    assert sh(tmp_path, *tree, "rev-parse", "--symbolic-full-name", "HEAD").strip() == "HEAD"
    assert sh(tmp_path, *tree, "rev-parse", "HEAD").strip() == commit
    write_head(git_dir, "refs/heads/errands/1-a")
    assert sh(tmp_path, *tree, "symbolic-ref", "HEAD").strip() == "refs/heads/errands/1-a"
    # Readable by git in the sandbox, which may run under another uid.
    assert stat.S_IMODE(os.stat(git_dir / "HEAD").st_mode) & 0o044 == 0o044
    assert not [p for p in git_dir.iterdir() if ".errands-" in p.name]


def test_registration_moved_as_worktree_repair_moves_it(mirror: Mirror, tmp_path: Path) -> None:
    git_dir = _add(mirror, tmp_path / "w1", "errands/1-a")
    os.rename(tmp_path / "w1", tmp_path / "w2")
    register_path(git_dir, tmp_path / "w2")
    ours = (git_dir / "gitdir").read_bytes()
    os.rename(tmp_path / "w2", tmp_path / "w3")
    sh(mirror.path, "worktree", "repair", str(tmp_path / "w3"))
    assert (git_dir / "gitdir").read_bytes() == ours.replace(b"/w2/", b"/w3/")
    register_path(git_dir, tmp_path / "w3")
    assert (git_dir / "gitdir").read_bytes() == ours.replace(b"/w2/", b"/w3/")
    assert [t.path for t in list_worktrees(mirror.path)[1:]] == [(tmp_path / "w3").resolve()]


def test_prune_skipped_only_when_git_would_prune_nothing(mirror: Mirror, tmp_path: Path) -> None:
    assert not prune_needed(mirror.path)  # no work tree ever
    one = _add(mirror, tmp_path / "w1", "errands/1-a")
    _add(mirror, tmp_path / "w2", "errands/2-b")
    assert not prune_needed(mirror.path)
    assert not _git_prunes(mirror)
    # Its work tree gone: git prunes it.
    os.rename(tmp_path / "w2", tmp_path / "gone")
    assert prune_needed(mirror.path)
    assert _git_prunes(mirror)
    sh(mirror.path, "worktree", "prune")
    assert not prune_needed(mirror.path)
    # A gitdir a sandbox turned into a FIFO: no hang, and git is asked.
    (one / "gitdir").unlink()
    os.mkfifo(one / "gitdir")
    assert prune_needed(mirror.path)
    assert (tmp_path / "w1").resolve() not in admin_dirs(mirror.path)


def test_branch_elsewhere_agrees_with_worktree_list(mirror: Mirror, tmp_path: Path) -> None:
    one = _add(mirror, tmp_path / "w1", "errands/1-a")
    two = _add(mirror, tmp_path / "w2", "errands/2-b")
    assert branch_elsewhere(mirror.path, "errands/1-a", one) is False
    assert branch_elsewhere(mirror.path, "errands/1-a", two) is True
    assert branch_elsewhere(mirror.path, "errands/3-c", two) is False
    by_git = {t.branch for t in list_worktrees(mirror.path)[1:]}
    assert by_git == {"errands/1-a", "errands/2-b"}
    # A HEAD not in git's own form: git's listing decides.
    (two / "HEAD").write_text("ref:  refs/heads/errands/1-a\n")
    assert branch_elsewhere(mirror.path, "errands/1-a", one) is None
