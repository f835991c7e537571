"""A task's work tree: where the agent edits and Errands commits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from errands.errors import InvalidInput
from errands.git.runner import ERRANDS_IDENTITY, error_for, git, run_git


@dataclass(frozen=True, slots=True)
class Workspace:
    path: Path
    branch: str

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.path).strip()

    def changed_files(self) -> list[str]:
        """Paths with uncommitted changes, untracked files included, ignored ones not."""
        out = git(
            "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames",
            cwd=self.path,
        )  # fmt: skip
        # Each entry is "XY <path>"; --no-renames guarantees one path per entry.
        return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})

    def commit_all(self, message: str) -> str | None:
        """Commit every change as Errands; None when there was nothing to commit."""
        if not message.strip():
            raise InvalidInput("the commit message is empty")
        git("add", "--all", cwd=self.path)
        staged = run_git("diff", "--cached", "--quiet", cwd=self.path)
        if staged.returncode == 0:
            return None
        if staged.returncode != 1:
            raise error_for(staged)
        git(
            "-c", "commit.gpgsign=false",
            "commit", "--quiet",
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
        )  # fmt: skip
        return self.head()

    def discard_changes(self) -> None:
        """Drop uncommitted work; ignored files (.venv, build caches) survive on purpose."""
        git("reset", "--hard", "--quiet", cwd=self.path)
        git("clean", "-fd", "--quiet", cwd=self.path)
