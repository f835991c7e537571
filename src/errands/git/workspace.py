"""A task's work tree: where the agent edits and Errands commits."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from errands.errors import InvalidInput, NestedRepository
from errands.git import lookup
from errands.git.repo import check_rev
from errands.git.runner import ERRANDS_IDENTITY, GitResult, error_for
from errands.git.worktrees import head_of, run_tree_git, share_index, tree_git

GITLINK = "160000"
CONFLICT_MARKERS = ("<<<<<<< ", ">>>>>>> ", "|||||||")
# State a command in the sandbox can leave in the private git directory that would make our
# commit something else than "the work tree, on the task branch": a merge's second parent,
# a cherry-pick's author, a sequencer's plan.
_OPERATION_STATE = (
    "MERGE_HEAD",
    "MERGE_MODE",
    "MERGE_MSG",
    "CHERRY_PICK_HEAD",
    "REVERT_HEAD",
    "SQUASH_MSG",
    "sequencer",
    "rebase-merge",
    "rebase-apply",
)


def stripspace(message: str) -> str:
    """A commit message cleaned as ``git commit --cleanup=whitespace`` (``git stripspace``)
    does: trailing whitespace off every line, runs of empty lines made one, none at either
    end, one newline at the end. Lines starting with "#" stay (the default "strip" would
    delete them from an agent's message)."""
    lines = [line.rstrip(" \t\r") for line in message.split("\n")]  # git's isspace: ASCII only
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    while kept and not kept[-1]:
        kept.pop()
    return "".join(line + "\n" for line in kept)


def _head_file_names(git_dir: Path, ref: str) -> bool:
    """Whether ``git_dir``'s HEAD file is exactly the symbolic ref to ``ref``: the common
    case, read without starting git. Anything else (a link, a detached or odd HEAD, an
    unreadable file) is left to git to judge and mend."""
    return head_of(git_dir) == ("ref", ref)


@dataclass(frozen=True, slots=True)
class Workspace:
    """A linked work tree of the mirror, checked out on the task branch.

    ``git_dir`` is the work tree's admin dir inside the mirror. Every command names it
    explicitly rather than letting git follow ``path/.git``: the agent can write anything
    under ``path``, and a ``.git`` file pointing at a config of its own (``core.fsmonitor``,
    ``core.hooksPath``) would make Errands run the agent's commands outside the sandbox.
    And every command uses Errands' own index, never ``git_dir/index``, which the sandbox
    can write (see :func:`errands.git.worktrees.private_index`).
    """

    path: Path
    branch: str
    git_dir: Path

    def read(self, *args: str, ok: tuple[int, ...] = (0,), timeout: float = 60) -> str:
        """Run a read-only git command in the work tree (for the agent's tools); its stdout.
        Raises GitError when it exits with a code not in ``ok``."""
        result = self._run(*args, timeout=timeout)
        if result.returncode not in ok:
            raise error_for(result)
        return result.stdout

    def nested_repositories(self, *, untracked: bool = True) -> list[str]:
        """Paths that are, or would be committed as, a gitlink the agent made: repositories
        inside the work tree (not ignored ones: those are never added), and repositories
        made inside a submodule's path (``add`` would record their commit).

        The index read here is Errands' own (``private_index``), which the sandbox cannot
        write, so its gitlinks are the ones HEAD has: no need to compare them with HEAD.
        Without ``untracked``, only the index is read: right after ``add --all`` it holds
        everything the commit would record, a repository ``add`` took in as a gitlink
        included."""
        found: set[str] = set()
        # One listing of both: -t tags each entry ("? " untracked, "H " and the like for the
        # index), so an untracked name made to look like an index entry is still untracked.
        listed = ("-t", "--others", "--exclude-standard") if untracked else ()
        for listed_entry in self._git("ls-files", "-z", "--stage", *listed).split("\0"):
            entry = listed_entry[2:] if untracked else listed_entry
            if untracked and listed_entry.startswith("? "):
                # An untracked nested repository is listed as one entry ending in "/"; an
                # untracked plain directory is listed by its files.
                if entry.endswith("/"):
                    found.add(entry[:-1])
                continue
            meta, _, name = entry.partition("\t")
            if meta.startswith(GITLINK) and os.path.lexists(self.path / name / ".git"):
                found.add(name)
        return sorted(found)

    def _check_nested(self, *, untracked: bool = True) -> None:
        nested = self.nested_repositories(untracked=untracked)
        if nested:
            raise NestedRepository(nested)

    def _on_branch(self) -> None:
        """Put HEAD back on the task branch if a command moved it (the sandbox can write the
        private git directory: ``git checkout --detach`` there, or a HEAD naming another
        branch of the mirror), keeping the work tree: the commit is always the work tree's
        content on the task branch."""
        for name in _OPERATION_STATE:
            state = self.git_dir / name
            if state.is_dir() and not state.is_symlink():
                shutil.rmtree(state)
            elif os.path.lexists(state):
                state.unlink()
        ref = f"refs/heads/{self.branch}"
        if _head_file_names(self.git_dir, ref):
            return
        head_file = self.git_dir / "HEAD"
        if os.path.lexists(head_file) and not stat.S_ISREG(os.lstat(head_file).st_mode):
            # A link or a FIFO: git would follow it or call the directory no repository.
            # Nothing runs in the sandbox now, so a plain file written here stays one.
            if head_file.is_dir() and not head_file.is_symlink():
                shutil.rmtree(head_file)
            else:
                head_file.unlink()
            head_file.write_text(f"ref: {ref}\n")
        head = self._run("symbolic-ref", "--quiet", "HEAD")
        if head.ok and head.stdout.strip() == ref:
            return
        self._git("symbolic-ref", "HEAD", ref)
        self._git("reset", "--quiet", "--mixed")

    def _git(
        self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        return tree_git(self.path, self.git_dir, *args, input=input, env=env)

    def _run(self, *args: str, timeout: float | None = None) -> GitResult:
        return run_tree_git(self.path, self.git_dir, *args, timeout=timeout)

    def head(self) -> str:
        ref = f"refs/heads/{self.branch}"
        if _head_file_names(self.git_dir, ref):
            # The branch lives in the mirror (git_dir's grandparent, see private_index),
            # which the sandbox cannot write: looked up there without a process.
            found = lookup.resolve(self.git_dir.parent.parent, ref)
            if found is not None:
                return found
        return self._git("rev-parse", "HEAD").strip()

    def changed_files(self) -> list[str]:
        """Paths with uncommitted changes, untracked files included, ignored ones not."""
        out = self._git("status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
        # Each entry is "XY <path>"; --no-renames guarantees one path per entry.
        return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})

    def commit_all(self, message: str) -> str | None:
        """Commit every change as Errands; None when there was nothing to commit."""
        if not message.strip():
            raise InvalidInput("the commit message is empty")
        self._on_branch()
        self._check_nested()
        self._git("add", "--all")
        # Whatever `add` made of something missed above: the index now says it all.
        self._check_nested(untracked=False)
        staged = self._run("diff", "--cached", "--quiet")
        if staged.returncode == 0:
            return None
        if staged.returncode != 1:
            raise error_for(staged)
        # Plumbing, not `git commit`: that would stat every file of the tree once more to
        # refresh the index `add --all` has just refreshed (~20 ms on 5,000 files, for each
        # commit). No hook runs either way (core.hooksPath=/dev/null, errands.git.runner):
        # the project's checks are the verify commands, run in the sandbox.
        ref = f"refs/heads/{self.branch}"
        tree = self._git("write-tree").strip()
        parent = lookup.resolve(self.git_dir.parent.parent, ref)
        commit = self._git(
            "-c",
            "commit.gpgsign=false",
            "commit-tree",
            tree,
            *(("-p", parent) if parent else ()),
            # git refuses a message holding NUL (the agent's summary is part of it).
            input=stripspace(message.replace("\0", "")),
            env=ERRANDS_IDENTITY,
        ).strip()
        # A compare-and-swap from the parent read above (empty: the branch must not exist).
        self._git("update-ref", "-m", "commit (errands)", ref, commit, parent or "")
        share_index(self.git_dir)
        return commit

    def uncommitted_patch(self, limit: int) -> bytes | None:
        """Every uncommitted change, new files included, as a binary patch against HEAD
        (for :meth:`apply_patch`); None when there is none or it is over ``limit`` bytes.
        Raises NestedRepository as a commit would: such work could not be kept either."""
        self._on_branch()
        self._check_nested()
        self._git("add", "--all")
        try:
            with tempfile.TemporaryDirectory(prefix="errands-wip-") as scratch:
                out = Path(scratch) / "wip.patch"
                self._git("diff", "--cached", "--binary", f"--output={out}", "HEAD")
                if out.stat().st_size > limit:
                    return None
                patch = out.read_bytes()
        finally:
            self._git("reset", "--quiet", "--mixed")  # the index again says HEAD
        return patch or None

    def apply_patch(self, patch: bytes) -> None:
        """Put :meth:`uncommitted_patch`'s changes back in the work tree, uncommitted.
        Raises GitError (changing nothing) when they no longer apply."""
        self._on_branch()
        with tempfile.TemporaryDirectory(prefix="errands-wip-") as scratch:
            file = Path(scratch) / "wip.patch"
            file.write_bytes(patch)
            # Not --index: like every edit of the agent's, the changes stay unstaged.
            self._git("apply", "--binary", "--whitespace=nowarn", str(file))
        share_index(self.git_dir)

    def reset_to(self, commit: str) -> None:
        """Move the task branch to ``commit`` and the work tree with it (restacking the
        subtasks above it starts here)."""
        self._on_branch()
        self._git("reset", "--hard", "--quiet", check_rev(commit))
        self._git("clean", "-ffd", "--quiet")
        share_index(self.git_dir)

    def apply_commit(self, commit: str) -> list[str]:
        """Apply ``commit``'s change to the work tree, uncommitted; return the paths that
        conflicted (their conflict markers left in the files for someone to resolve)."""
        self._on_branch()
        applied = self._run("cherry-pick", "--no-commit", check_rev(commit))
        paths: list[str] = []
        if not applied.ok:
            # Only a cherry-pick that stopped short leaves conflicted paths to list.
            conflicted = self._git("diff", "--name-only", "--diff-filter=U", "-z")
            paths = sorted(p for p in conflicted.split("\0") if p)
            if not paths:
                raise error_for(applied)
        # Unstaged, like every edit of the agent's: what the agent then sees in `git diff`
        # is the whole change it is to finish, and the commit takes the work tree as it is.
        self._git("reset", "--quiet", "--mixed")
        share_index(self.git_dir)
        return paths

    def conflict_markers(self, paths: list[str]) -> list[str]:
        """Which of ``paths`` still hold a conflict marker line."""
        marked = []
        for path in paths:
            file = self.path / path
            if file.is_symlink() or not file.is_file():
                continue  # deleted in the resolution (a link is never followed on the host)
            text = file.read_text(errors="replace")
            if any(line.startswith(CONFLICT_MARKERS) for line in text.splitlines()):
                marked.append(path)
        return marked

    def discard_changes(self) -> None:
        """Drop uncommitted work; ignored files (.venv, build caches) survive on purpose."""
        self._on_branch()
        if not self.changed_files():
            # Status saw no staged, changed or untracked path, so reset and clean would
            # change nothing (but an empty untracked directory, which git never records):
            # one walk over the tree instead of two, in the usual case of a tree just
            # claimed clean or just committed.
            return
        self._git("reset", "--hard", "--quiet")
        # -ff: nested repositories too (never committed; see nested_repositories).
        self._git("clean", "-ffd", "--quiet")
        share_index(self.git_dir)
