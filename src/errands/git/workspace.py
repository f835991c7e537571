"""A task's work tree: where the agent edits and Errands commits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from errands.errors import InvalidInput
from errands.git.runner import ERRANDS_IDENTITY, error_for, git, run_git


@dataclass(frozen=True, slots=True)
class Workspace:
    """A linked work tree of the mirror, checked out on the task branch.

    ``git_dir`` is the work tree's admin dir inside the mirror. Every command names it
    explicitly rather than letting git follow ``path/.git``: the agent can write anything
    under ``path``, and a ``.git`` file pointing at a config of its own (``core.fsmonitor``,
    ``core.hooksPath``) would make Errands run the agent's commands outside the sandbox.
    """

    path: Path
    branch: str
    git_dir: Path

    def _git(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return git(*self._scope, *args, cwd=self.path, input=input, check=check)

    @property
    def _scope(self) -> tuple[str, str]:
        return (f"--git-dir={self.git_dir}", f"--work-tree={self.path}")

    def head(self) -> str:
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
        self._git("add", "--all")
        staged = run_git(*self._scope, "diff", "--cached", "--quiet", cwd=self.path)
        if staged.returncode == 0:
            return None
        if staged.returncode != 1:
            raise error_for(staged)
        git(
            *self._scope,
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--quiet",
            # The project's checks run as the task's verify commands, in the sandbox, with
            # their output reported; hooks here would run unsandboxed and could veto or
            # rewrite the agent's commit behind our back.
            "--no-verify",
            # Not the default "strip": that would delete message lines starting with "#".
            "--cleanup=whitespace",
            "--file=-",
            cwd=self.path,
            input=message,
            env=ERRANDS_IDENTITY,
        )
        return self.head()

    def discard_changes(self) -> None:
        """Drop uncommitted work; ignored files (.venv, build caches) survive on purpose."""
        self._git("reset", "--hard", "--quiet")
        self._git("clean", "-fd", "--quiet")
