"""Real git repositories for the index tests, built in tmp_path with the git CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Protocol

import pytest

from tests.git.git_helpers import commit_files

_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@localhost",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@localhost",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
}


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **_ENV}, capture_output=True, check=False
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr.decode()}"
    return proc.stdout.decode().strip()


class Commit(Protocol):
    def __call__(self, files: dict[str, str | bytes | None], message: str = "change") -> str: ...


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "t")
    git(path, "config", "user.email", "t@localhost")
    return path


@pytest.fixture
def commit(repo: Path) -> Commit:
    """Write (None: delete) files and commit them; the new commit's id."""

    def _commit(files: dict[str, str | bytes | None], message: str = "change") -> str:
        return commit_files(repo, files, message)

    return _commit
