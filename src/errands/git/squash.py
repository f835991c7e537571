"""Squash a branch onto another without a work tree."""

from __future__ import annotations

from pathlib import Path

from errands.errors import GitError, InvalidInput, MergeConflict, NothingToMerge
from errands.git.lookup import peel, resolve
from errands.git.runner import ERRANDS_IDENTITY, error_for, git, run_git


def squash_commit(repo: Path, branch: str, onto: str, message: str) -> str:
    """Create (but reference nowhere) one commit: ``onto`` plus everything ``branch`` did.

    The merge happens in git's object database only (``merge-tree --write-tree``), so no
    work tree or index anywhere is touched. Raises :class:`MergeConflict` naming the
    conflicting paths, :class:`NothingToMerge` when the result would change nothing on
    ``onto`` (an empty branch, changes that undo each other, or ones ``onto`` already has).
    ``repo`` is an Errands mirror (see :mod:`errands.git.lookup`).
    """
    if not message.strip():
        raise InvalidInput("the squash commit message is empty")
    tip = _resolve(repo, branch)
    base = _resolve(repo, onto)
    # --merge-base needs git 2.40; without it git finds the merge base itself, which is the
    # same thing for a branch that was started from `onto`'s history.
    result = run_git(
        "merge-tree", "--write-tree", "-z", "--name-only", "--no-messages", base, tip, cwd=repo
    )
    if result.returncode == 1:
        fields = result.stdout.split("\0")
        files = sorted({name for name in fields[1:] if name})
        raise MergeConflict(
            f"{branch} conflicts with {onto} in: {', '.join(files)}",
            files=files,
        )
    if not result.ok:
        if "unrelated histories" in result.stderr:
            raise GitError(f"{branch} and {onto} share no history")
        raise error_for(result)
    tree = result.stdout.split("\0")[0].strip()
    if tree == peel(repo, base, "tree"):
        raise NothingToMerge(
            f"{branch} changes nothing on {onto}: there is nothing to merge (an empty commit "
            "would say the work was done)."
        )
    # --no-gpg-sign: commit-tree honours commit.gpgSign from the host's global config, and
    # a worker cannot answer a passphrase prompt.
    out = git(
        "commit-tree",
        "--no-gpg-sign",
        "-p",
        base,
        "-F",
        "-",
        tree,
        cwd=repo,
        input=message if message.endswith("\n") else message + "\n",
        env=ERRANDS_IDENTITY,
    )
    return out.strip()


def _resolve(repo: Path, rev: str) -> str:
    sha = resolve(repo, rev)
    if sha is None:
        raise GitError(f"{rev} does not name a commit")
    return sha
