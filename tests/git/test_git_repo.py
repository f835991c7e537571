from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from errands.errors import GitError, InvalidInput, NotAGitRepository
from errands.git import current_branch, find_repository, git, slugify, task_branch
from errands.git.repo import check_branch_name, require_task_branch
from errands.git.runner import run_git
from tests.git.git_helpers import sh


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Fix the Login bug!", "fix-the-login-bug"),
        ("  --Already--slugged--  ", "already-slugged"),
        ("Café déjà vu", "cafe-deja-vu"),
        ("", "task"),
        ("!!! ???", "task"),
        ("日本語のタイトル", "task"),
        ("Add: x/y.z (v2)", "add-x-y-z-v2"),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert slugify(title) == slug


def test_slugify_cuts_long_titles_on_a_word_boundary() -> None:
    slug = slugify("Make the reviewer page remember which subtask was open last time")
    assert len(slug) <= 40
    assert slug == "make-the-reviewer-page-remember-which"
    assert slugify("a" * 100) == "a" * 40


def test_task_branch_is_a_valid_branch_name() -> None:
    branch = task_branch(12, "Fix the Login bug!")
    assert branch == "errands/12-fix-the-login-bug"
    assert check_branch_name(branch) == branch
    assert task_branch(3, "...") == "errands/3-task"


@pytest.mark.parametrize(
    "name", ["", "-x", "a..b", "a b", "refs/heads/x", "x.lock", "a~1", "@", "a/.b", "a//b", "a@{1"]
)
def test_invalid_branch_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_branch_name(name)


# Pieces that meet git's rules at their edges, joined at random.
_REF_PIECES = ["a", "b/", "/", ".", "..", ".lock", "lock", "@", "{", "@{", "}", "~", "^", ":"]
_REF_PIECES += ["?", "*", "[", "\\", " ", "\t", "\x7f", "\x01", "é", "-", "_"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_REF_PIECES), min_size=1, max_size=6).map("".join))
def test_branch_names_are_judged_exactly_as_git_judges_them(name: str) -> None:
    """check_branch_name no longer asks git; it must still agree with git on every name."""
    # Refused before git's rules (an option, another namespace, HEAD's alias): see below.
    assume(not name.startswith("-") and not name.startswith("refs/") and name != "@")
    git_says = run_git("check-ref-format", f"refs/heads/{name}", cwd=Path("/")).ok
    try:
        check_branch_name(name)
        ours = True
    except InvalidInput:
        ours = False
    assert ours == git_says, name


def test_only_task_branches_may_be_written() -> None:
    with pytest.raises(GitError, match="errands/"):
        require_task_branch("main")


def test_find_repository(tmp_path: Path, user_repo: Path) -> None:
    (user_repo / "src" / "deep").mkdir()
    assert find_repository(user_repo / "src" / "deep") == user_repo
    bare = tmp_path / "bare.git"
    sh(tmp_path, "init", "--bare", "--quiet", str(bare))
    assert find_repository(bare) == bare


@pytest.mark.parametrize("make_dir", [True, False])
def test_find_repository_rejects_plain_and_missing_dirs(tmp_path: Path, make_dir: bool) -> None:
    plain = tmp_path / "plain"
    if make_dir:
        plain.mkdir()
    with pytest.raises(NotAGitRepository, match="is not a git repository"):
        find_repository(plain)


def test_current_branch(user_repo: Path) -> None:
    assert current_branch(user_repo) == "main"
    sh(user_repo, "checkout", "--quiet", "--detach")
    assert current_branch(user_repo) is None


def test_git_error_names_command_and_stderr(user_repo: Path) -> None:
    expected = r"git rev-parse --verify nope failed \(exit 128\): fatal: Needed a single"
    with pytest.raises(GitError, match=expected):
        git("rev-parse", "--verify", "nope", cwd=user_repo)
    assert git("rev-parse", "--verify", "nope", cwd=user_repo, check=False) == ""


def test_git_error_hides_credentials(tmp_path: Path) -> None:
    url = "https://alice:s3cret-token@127.0.0.1:9/repo.git"
    with pytest.raises(GitError) as caught:
        git("ls-remote", url, cwd=tmp_path, timeout=30)
    assert "s3cret" not in str(caught.value)
    assert "https://***@127.0.0.1:9/repo.git" in str(caught.value)


def test_inherited_git_dir_does_not_redirect_commands(
    tmp_path: Path, user_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    sh(tmp_path, "init", "--quiet", str(other))
    # As when Errands is started from inside a git hook.
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    assert git("rev-parse", "--show-toplevel", cwd=user_repo).strip() == str(user_repo)
