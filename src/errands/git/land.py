"""Moving the user's base branch to the squash commit."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from errands.errors import BaseMoved, DirtyWorkingTree, GitError
from errands.git import lookup
from errands.git.repo import check_branch_name, current_branch, local_repository, resolve
from errands.git.runner import ERRANDS_IDENTITY, error_for, git, run_git
from errands.git.worktrees import Worktree, list_worktrees

# What `git merge` prints (LC_ALL=C) when a fast-forward would clobber uncommitted work:
# a heading, then one tab-indented path per line.
_REFUSAL_HEADING = re.compile(r"would be (?:overwritten|removed) by (?:merge|checkout)")
_ENTRY_REFUSAL = re.compile(r"^error: Entry '(.+)' (?:not uptodate|would be overwritten)")


def land(
    mirror: Path,
    origin: str,
    commit: str,
    base_branch: str,
    expected_base: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> None:
    """Compare-and-swap origin's ``base_branch`` from ``expected_base`` to ``commit``."""
    check_branch_name(base_branch)
    new = lookup.resolve(mirror, commit)
    old = lookup.resolve(mirror, expected_base)
    if new is None or old is None:
        raise GitError(f"cannot land {commit} on {expected_base}: unknown commit")
    if not run_git("merge-base", "--is-ancestor", old, new, cwd=mirror).ok:
        raise GitError(f"refusing to land {new}: it does not descend from {old}")
    user_repo = local_repository(origin)
    checkout = _checkout_of(user_repo, base_branch) if user_repo else None
    if checkout is not None:
        _fast_forward(checkout, mirror, new, base_branch, old)
    else:
        _push(mirror, new, base_branch, old, env=env, timeout=timeout)
    git("update-ref", f"refs/remotes/origin/{base_branch}", new, cwd=mirror)


def _checkout_of(repo: Path, branch: str) -> Worktree | None:
    trees = [
        tree
        for tree in list_worktrees(repo)
        if tree.branch == branch and not tree.bare and not tree.prunable
    ]
    if len(trees) > 1:
        # Moving the branch under one of them would make the others look like they undo it.
        where = ", ".join(str(t.path) for t in trees)
        raise GitError(f"{branch} is checked out in several work trees ({where})")
    return trees[0] if trees else None


def _fast_forward(tree: Worktree, mirror: Path, new: str, branch: str, old: str) -> None:
    """Bring the user's checkout forward the way `git merge --ff-only` would by hand.

    Git itself keeps uncommitted changes that the merge does not touch and refuses, before
    changing anything, when it would overwrite some. Nothing else would be safe: moving the
    ref alone would leave their index showing our change reverted.
    """
    current = resolve(tree.path, f"refs/heads/{branch}")
    if current == new:
        # Landed before the worker died; a retry has nothing left to do.
        return
    if current != old:
        raise BaseMoved(f"{branch} moved in {tree.path}; squash again onto its new tip")
    git(
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--no-auto-maintenance",
        "--no-recurse-submodules",
        str(mirror),
        new,
        cwd=tree.path,
    )
    # The user may have switched branches since we listed work trees: merging then would
    # fast-forward whatever they are on now.
    if current_branch(tree.path) != branch:
        raise BaseMoved(f"{branch} is no longer checked out in {tree.path}; try again")
    result = run_git(
        "merge",
        "--ff-only",
        "--no-autostash",
        "--no-stat",
        "--quiet",
        new,
        cwd=tree.path,
        # A fast-forward makes no commit, but the reflog entry records who moved the branch.
        env=ERRANDS_IDENTITY,
    )
    if result.ok:
        return
    files = _refused_files(result.stderr)
    if files:
        raise DirtyWorkingTree(
            f"landing would overwrite uncommitted changes in {tree.path}: "
            f"{', '.join(files)}; commit or stash them and approve again"
        )
    if resolve(tree.path, f"refs/heads/{branch}") != old:
        raise BaseMoved(f"{branch} moved in {tree.path}; squash again onto its new tip")
    raise error_for(result)


def _refused_files(stderr: str) -> list[str]:
    files: list[str] = []
    in_list = False
    for line in stderr.splitlines():
        entry = _ENTRY_REFUSAL.match(line)
        if entry:
            files.append(entry[1])
        elif _REFUSAL_HEADING.search(line):
            in_list = True
        elif in_list and line.startswith("\t"):
            files.append(line.strip())
        else:
            in_list = False
    return sorted(set(files))


def _push(
    mirror: Path,
    new: str,
    branch: str,
    old: str,
    *,
    env: Mapping[str, str] | None,
    timeout: float | None,
) -> None:
    # If origin is already at `new` (a retry after a crash) git reports the ref up to date
    # and succeeds.
    if not push_with_lease(mirror, new, f"refs/heads/{branch}", old, env=env, timeout=timeout):
        raise BaseMoved(f"{branch} moved on origin; squash again onto its new tip")


def push_with_lease(
    repo: Path,
    new: str,
    ref: str,
    expected: str | None,
    *,
    env: Mapping[str, str] | None,
    timeout: float | None,
    to: str = "origin",
) -> bool:
    """Compare-and-swap origin's ``ref`` from ``expected`` (None: it must not exist) to
    ``new`` (empty: delete it). False when origin's ``ref`` was not ``expected``: nothing
    pushed by anyone else is ever overwritten. Never a bare ``--force``.

    ``to``: the remote's name (git then moves its remote-tracking ref too), or its URL (it
    does not)."""
    result = run_git(
        "push",
        "--porcelain",
        f"--force-with-lease={ref}:{expected or ''}",
        to,
        f"{new}:{ref}",
        cwd=repo,
        env=env,
        timeout=timeout,
    )
    if result.ok:
        return True
    said = result.stdout + result.stderr
    # "stale info": the lease check failed before sending; "cannot lock ref ... but
    # expected": another push won the race on origin's side after the check passed.
    if "stale info" in said or ("cannot lock ref" in said and "but expected" in said):
        return False
    # --porcelain puts the reason a ref was rejected on stdout.
    raise error_for(result, include_stdout=True)
