"""Shared fixtures: isolation from the developer's environment, sample repositories, a
scripted LLM on loopback and a real Errands server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.smtp import inbox  # noqa: F401  (a fixture: the loopback SMTP server)

ERRANDS_ENV_PREFIXES = ("ERRANDS_", "OPENAI_", "ANTHROPIC_")
# The test suite's own switches (ERRANDS_TEST_SERVICES=require, the service URLs, where
# screenshots go) configure the tests, not Errands, so they survive the scrub below.
TEST_ONLY_PREFIXES = ("ERRANDS_TEST_", "ERRANDS_SCREENSHOTS")

if "ERRANDS_TEST_KEEP_ENV" not in os.environ:
    # No test may reach a paid API or a developer's data directory by accident.
    for name in list(os.environ):
        if name.startswith(ERRANDS_ENV_PREFIXES) and not name.startswith(TEST_ONLY_PREFIXES):
            del os.environ[name]


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    """A small Python project with a passing test suite, on branch main."""
    repo = tmp_path / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    (repo / "README.md").write_text("# calc\n")
    (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    commit_initial(repo)
    return repo


def commit_initial(repo: Path) -> None:
    """Make ``repo`` (a directory of files) a git repository on branch main, its files
    committed as "initial" by a local identity."""
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "config", "user.name", "Dev")
    run_git(repo, "config", "user.email", "dev@example.com")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "initial")


def run_git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def git_range_diff(repo: Path, old: str, new: str) -> str:
    """The body of ``git range-diff`` comparing commit ``old`` with commit ``new`` (its
    indented lines), as git itself prints it."""
    out = run_git(repo, "range-diff", "--no-color", "--creation-factor=999", f"{old}^!", f"{new}^!")
    return "".join(line + "\n" for line in out.splitlines() if line.startswith("    "))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "errands-home"
    path.mkdir()
    return path
