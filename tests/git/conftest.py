"""Real git repositories in tmp dirs, on a host with no global git identity."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from errands.git import Mirror
from tests.git.git_helpers import commit_files, sh


@pytest.fixture(autouse=True)
def no_global_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Like a fresh CI machine: no ~/.gitconfig, no system config, no identity anywhere but
    # in the test repositories' own config. Errands' code must work regardless.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    # useConfigOnly: git must not guess an identity from the host name either.
    (home / ".gitconfig").write_text("[user]\n\tuseConfigOnly = true\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    for name in ("EMAIL", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GIT_COMMITTER_EMAIL", raising=False)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "user", files: dict[str, str | bytes | None] | None = None) -> Path:
        repo = tmp_path / name
        repo.mkdir()
        sh(repo, "init", "--quiet", "--initial-branch=main")
        sh(repo, "config", "user.name", "Test User")
        sh(repo, "config", "user.email", "user@example.com")
        commit_files(repo, files or {"README.md": "hello\n", "src/app.py": "print('hi')\n"}, "init")
        return repo

    return make


@pytest.fixture
def user_repo(make_repo: Callable[..., Path]) -> Path:
    return make_repo()


@pytest.fixture
def mirror(tmp_path: Path, user_repo: Path) -> Mirror:
    return Mirror.create(tmp_path / "data" / "mirror.git", str(user_repo))


@pytest.fixture
def git_starts(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every git process started from now on: its subcommand and what follows."""
    started: list[list[str]] = []
    original = subprocess.Popen.__init__

    def counting(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        argv = [str(a) for a in args]
        if argv and argv[0] == "git":
            at = 1
            while at < len(argv) and argv[at].startswith("-"):
                at += 2 if argv[at] in ("-c", "-C") else 1
            started.append(argv[at:])
        original(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", counting)
    return started
