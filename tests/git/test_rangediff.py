"""A subtask's interdiff is git range-diff's: what the commit itself does differently, not
what moved underneath it."""

from __future__ import annotations

from pathlib import Path

from errands.git.rangediff import range_diff
from tests.conftest import git_range_diff, run_git


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", message)
    return run_git(repo, "rev-parse", "HEAD").strip()


def _stack(tmp_path: Path) -> tuple[Path, str, str, str]:
    """Base; subtask 1 edits f; subtask 2 edits g. Then v2 of both: subtask 1 edits f
    otherwise, subtask 2 edits g otherwise. Returns (repo, sub1 v2, sub2 v1, sub2 v2)."""
    repo = tmp_path / "r"
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    run_git(repo, "config", "user.name", "Dev")
    run_git(repo, "config", "user.email", "dev@example.com")
    _commit(repo, {"f": "a\nb\nc\n", "g": "x\n"}, "base")
    _commit(repo, {"f": "a\nB\nc\n"}, "Subtask 1")
    sub2_v1 = _commit(repo, {"g": "x\ny\n"}, "Subtask 2")
    run_git(repo, "checkout", "-q", "HEAD~1")
    sub1_v2 = _commit(repo, {"f": "a\nBB\nc\n"}, "Subtask 1 (fixed)")
    sub2_v2 = _commit(repo, {"g": "x\ny2\nz\n"}, "Subtask 2")
    return repo, sub1_v2, sub2_v1, sub2_v2


def test_the_interdiff_is_git_range_diffs(tmp_path: Path) -> None:
    repo, _, v1, v2 = _stack(tmp_path)
    found = range_diff(repo, v1, v2)
    assert found.text() == git_range_diff(repo, v1, v2)
    assert not found.same
    changed = {(line.outer, line.inner) for line in found.lines if line.kind == "line"}
    assert ("-", "+y") in changed and ("+", "+y2") in changed and ("+", "+z") in changed
    # Subtask 1's rewrite lies underneath: not part of subtask 2's interdiff.
    assert not any("B" in line.inner for line in found.lines)
    assert [line.title for line in found.lines if line.kind == "section"] == ["Commit message"]


def test_a_commit_only_moved_has_an_empty_interdiff(tmp_path: Path) -> None:
    repo, sub1_v2, v1, _ = _stack(tmp_path)
    # Subtask 2's same change, restacked onto subtask 1's new version.
    run_git(repo, "checkout", "-q", sub1_v2)
    run_git(repo, "cherry-pick", v1)
    moved = run_git(repo, "rev-parse", "HEAD").strip()
    found = range_diff(repo, v1, moved)
    assert found.same and found.lines == []
