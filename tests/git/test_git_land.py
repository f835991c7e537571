from __future__ import annotations

from pathlib import Path

import pytest

from errands.errors import BaseMoved, DirtyWorkingTree, GitError
from errands.git import Mirror
from tests.git.git_helpers import commit_files, sh


def _squashed(mirror: Mirror, tmp_path: Path, files: dict[str, str]) -> tuple[str, str]:
    """A task touching ``files``, squashed onto main; returns (commit, expected base)."""
    mirror.fetch()
    base = mirror.resolve(mirror.base_ref("main"))
    assert base is not None
    ws = mirror.add_workspace(tmp_path / "ws", "errands/1-task", base)
    for name, content in files.items():
        (ws.path / name).write_text(content)
    ws.commit_all("task work")
    mirror.remove_workspace(ws.path)
    return mirror.squash(ws.branch, base, "Task 1"), base


def _state(repo: Path) -> dict[str, object]:
    """Everything about the user's checkout that landing elsewhere must leave alone."""
    # Read the index first: `git status` (even with optional locks off) only reads it.
    git_dir = Path(sh(repo, "rev-parse", "--absolute-git-dir").strip())
    files = {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    return {
        "index": (git_dir / "index").read_bytes(),
        "status": sh(repo, "status", "--porcelain=v1", "--untracked-files=all"),
        "head": sh(repo, "symbolic-ref", "HEAD"),
        "files": files,
    }


def test_land_with_another_branch_checked_out_and_dirty(
    tmp_path: Path, mirror: Mirror, user_repo: Path
) -> None:
    sh(user_repo, "checkout", "--quiet", "-b", "feature")
    (user_repo / "README.md").write_text("dirty\n")
    (user_repo / "staged.txt").write_text("staged\n")
    sh(user_repo, "add", "staged.txt")
    (user_repo / "untracked.txt").write_text("untracked\n")
    commit, base = _squashed(mirror, tmp_path, {"README.md": "task\n", "new.txt": "n\n"})
    before = _state(user_repo)

    mirror.land(commit, "main", base)

    assert sh(user_repo, "rev-parse", "main").strip() == commit
    assert _state(user_repo) == before
    assert mirror.resolve(mirror.base_ref("main")) == commit


def test_land_fast_forwards_a_checkout_keeping_unrelated_changes(
    tmp_path: Path, mirror: Mirror, user_repo: Path
) -> None:
    commit, base = _squashed(mirror, tmp_path, {"src/app.py": "print('task')\n"})
    (user_repo / "README.md").write_text("my work in progress\n")
    (user_repo / "mine.txt").write_text("untracked\n")

    mirror.land(commit, "main", base)

    assert sh(user_repo, "rev-parse", "HEAD").strip() == commit
    assert (user_repo / "src" / "app.py").read_text() == "print('task')\n"
    assert (user_repo / "README.md").read_text() == "my work in progress\n"
    assert (user_repo / "mine.txt").read_text() == "untracked\n"
    assert sh(user_repo, "status", "--porcelain=v1").splitlines() == [
        " M README.md",
        "?? mine.txt",
    ]


@pytest.mark.parametrize("dirty", ["modified", "untracked"])
def test_land_refuses_to_overwrite_uncommitted_work(
    tmp_path: Path, mirror: Mirror, user_repo: Path, dirty: str
) -> None:
    target = "README.md" if dirty == "modified" else "new.txt"
    commit, base = _squashed(mirror, tmp_path, {target: "from the task\n"})
    (user_repo / target).write_text("the user's own edit\n")
    before = _state(user_repo)

    with pytest.raises(DirtyWorkingTree, match=target):
        mirror.land(commit, "main", base)

    assert sh(user_repo, "rev-parse", "HEAD").strip() == base
    assert _state(user_repo) == before
    assert mirror.resolve(mirror.base_ref("main")) == base


def test_land_fast_forwards_the_users_linked_worktree(
    tmp_path: Path, mirror: Mirror, user_repo: Path
) -> None:
    sh(user_repo, "checkout", "--quiet", "-b", "elsewhere")
    linked = tmp_path / "linked"
    sh(user_repo, "worktree", "add", "--quiet", str(linked), "main")
    commit, base = _squashed(mirror, tmp_path, {"new.txt": "n\n"})

    mirror.land(commit, "main", base)

    assert sh(linked, "rev-parse", "HEAD").strip() == commit
    assert (linked / "new.txt").read_text() == "n\n"
    assert sh(linked, "status", "--porcelain=v1") == ""


@pytest.mark.parametrize("checked_out", [True, False])
def test_land_detects_a_moved_base(
    tmp_path: Path, mirror: Mirror, user_repo: Path, checked_out: bool
) -> None:
    if not checked_out:
        sh(user_repo, "checkout", "--quiet", "-b", "feature")
    commit, base = _squashed(mirror, tmp_path, {"new.txt": "n\n"})
    sh(user_repo, "checkout", "--quiet", "main")
    moved = commit_files(user_repo, {"other.txt": "o\n"}, "the user committed meanwhile")
    if not checked_out:
        sh(user_repo, "checkout", "--quiet", "feature")

    with pytest.raises(BaseMoved):
        mirror.land(commit, "main", base)
    assert sh(user_repo, "rev-parse", "main").strip() == moved


def test_land_on_a_remote_is_a_compare_and_swap(tmp_path: Path, user_repo: Path) -> None:
    remote = tmp_path / "remote.git"
    sh(tmp_path, "clone", "--quiet", "--bare", str(user_repo), str(remote))
    mirror = Mirror.create(tmp_path / "m.git", f"file://{remote}")
    commit, base = _squashed(mirror, tmp_path, {"new.txt": "n\n"})

    mirror.land(commit, "main", base)
    assert sh(remote, "rev-parse", "main").strip() == commit
    mirror.land(commit, "main", base)  # a retried job: already landed, nothing to do

    someone_else = commit_files(user_repo, {"other.txt": "o\n"}, "pushed by someone else")
    sh(user_repo, "push", "--quiet", "--force", str(remote), "main:main")
    with pytest.raises(BaseMoved):
        mirror.land(commit, "main", base)
    assert sh(remote, "rev-parse", "main").strip() == someone_else


def test_landing_twice_in_a_checkout_is_a_no_op(
    tmp_path: Path, mirror: Mirror, user_repo: Path
) -> None:
    commit, base = _squashed(mirror, tmp_path, {"new.txt": "n\n"})
    mirror.land(commit, "main", base)
    mirror.land(commit, "main", base)
    assert sh(user_repo, "rev-parse", "HEAD").strip() == commit


def test_land_refuses_a_commit_not_built_on_the_base(
    tmp_path: Path, mirror: Mirror, user_repo: Path
) -> None:
    commit, base = _squashed(mirror, tmp_path, {"new.txt": "n\n"})
    with pytest.raises(GitError, match="does not descend"):
        mirror.land(base, "main", commit)
