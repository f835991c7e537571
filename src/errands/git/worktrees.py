"""Listing, adding and removing linked work trees."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from errands.errors import GitError
from errands.git.repo import check_branch_name, check_rev, resolve
from errands.git.runner import git, run_git


@dataclass(frozen=True, slots=True)
class Worktree:
    path: Path
    head: str | None
    branch: str | None  # without refs/heads/; None when detached or bare
    bare: bool = False
    # Registered, but its directory is gone: nothing is really checked out there.
    prunable: bool = False


def list_worktrees(repo: Path) -> list[Worktree]:
    """Every work tree of ``repo``: the main one (possibly bare) first, then linked ones."""
    out = git("worktree", "list", "--porcelain", "-z", cwd=repo)
    trees: list[Worktree] = []
    for record in out.split("\0\0"):
        attrs: dict[str, str] = {}
        for field in record.split("\0"):
            if field:
                key, _, value = field.partition(" ")
                attrs[key] = value
        if "worktree" not in attrs:
            continue
        branch = attrs.get("branch")
        trees.append(
            Worktree(
                path=Path(attrs["worktree"]),
                head=attrs.get("HEAD"),
                branch=branch.removeprefix("refs/heads/") if branch else None,
                bare="bare" in attrs,
                prunable="prunable" in attrs,
            )
        )
    return trees


def add_worktree(repo: Path, path: Path, branch: str, start_point: str) -> tuple[Path, Path]:
    """Check ``branch`` out at ``path``, creating it at ``start_point`` if it does not exist.

    An existing branch is checked out as is: a resumed or revising job continues from the
    commits already made. Leftovers of a dead job, at ``path`` or anywhere else on
    ``branch``, are removed first: one job per task runs at a time, so another work tree
    on the same branch can only be one whose worker died. Returns the work tree and its
    administrative directory inside ``repo``.
    """
    check_branch_name(branch)
    path = path.absolute()
    _clear_leftover(repo, path)
    clear_branch(repo, branch)
    path.parent.mkdir(parents=True, exist_ok=True)
    if resolve(repo, f"refs/heads/{branch}") is not None:
        git("worktree", "add", "--quiet", str(path), branch, cwd=repo)
    else:
        start = resolve(repo, check_rev(start_point))
        if start is None:
            raise GitError(f"cannot start branch {branch}: {start_point} does not name a commit")
        # --no-track: an upstream pointing at the base would only invite `git pull` there.
        git("worktree", "add", "--quiet", "--no-track", "-b", branch, str(path), start, cwd=repo)
    return path, admin_dir(repo, path)


def clear_branch(repo: Path, branch: str, *, keep: Path | None = None) -> None:
    """Remove every linked work tree of ``repo`` that has ``branch`` checked out but ``keep``.

    One job per task runs at a time, so another work tree on the task's branch can only be
    one whose worker died; git would refuse to check the branch out anywhere else while it
    stays there.
    """
    kept = keep.resolve() if keep is not None else None
    git("worktree", "prune", cwd=repo)
    for tree in list_worktrees(repo)[1:]:
        if tree.branch == branch and tree.path.resolve() != kept:
            _clear_leftover(repo, tree.path)
    git("worktree", "prune", cwd=repo)


def admin_dir(repo: Path, path: Path) -> Path:
    """The directory in ``repo`` where git keeps the HEAD and index of work tree ``path``.

    Found from ``repo``'s side (each admin dir names its work tree in a ``gitdir`` file),
    never by reading ``path/.git``, which whoever edits the work tree can rewrite.
    """
    found = admin_dirs(repo).get(path.resolve())
    if found is None:
        raise GitError(f"{path} is not a work tree of {repo}")
    return found


def admin_dirs(repo: Path) -> dict[Path, Path]:
    """Every linked work tree registered in ``repo`` (resolved path) → its admin dir.

    Read from ``repo``'s side only (see :func:`admin_dir`); a registration whose work tree
    is gone is included, its path simply does not exist.
    """
    found: dict[Path, Path] = {}
    for candidate in sorted((_common_dir(repo) / "worktrees").glob("*/gitdir")):
        dot_git = Path(candidate.read_text(errors="replace").strip())
        if dot_git.name == ".git":
            found.setdefault(dot_git.parent.resolve(), candidate.parent)
    return found


def _common_dir(repo: Path) -> Path:
    out = git("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=repo)
    return Path(out.strip()).resolve()


def remove_worktree(repo: Path, path: Path) -> None:
    """Remove the work tree at ``path`` and its registration; fine if it is already gone."""
    path = path.absolute()
    _clear_leftover(repo, path)
    git("worktree", "prune", cwd=repo)


def _clear_leftover(repo: Path, path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        path.rmdir()
        return
    if not _belongs_to(repo, path):
        # Never delete a directory we cannot prove is ours: the caller may have passed the
        # wrong path, even the user's own checkout.
        raise GitError(f"{path} exists and is not a workspace of {repo}; not removing it")
    # Twice --force: also removes a worktree that is locked or has local changes.
    run_git("worktree", "remove", "--force", "--force", str(path), cwd=repo)
    if path.exists():
        shutil.rmtree(path)


def _belongs_to(repo: Path, path: Path) -> bool:
    common_dir = _common_dir(repo)
    # [1:]: the main work tree is never a workspace, even when `repo` is not bare.
    if any(t.path.resolve() == path.resolve() for t in list_worktrees(repo)[1:]):
        return True
    dot_git = path / ".git"
    if not dot_git.is_file():
        return False
    # A worktree's .git file is "gitdir: <common dir>/worktrees/<name>". Registration may
    # be missing after a crash half-way through `worktree add`, but this file is written first.
    content = dot_git.read_text(errors="replace").strip()
    if not content.startswith("gitdir: "):
        return False
    gitdir = (path / content.removeprefix("gitdir: ")).resolve()
    return gitdir.parent == common_dir / "worktrees"
