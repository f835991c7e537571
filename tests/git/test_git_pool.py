"""The warm workspace pool: reuse, isolation between jobs, concurrency, clean-up."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from errands.errors import GitError, InvalidInput
from errands.git import Mirror, Workspace, WorkspacePool
from errands.git.pool import IDLE_PREFIX
from errands.git.worktrees import list_worktrees, private_index
from tests.git.git_helpers import commit_files, sh

BASE = "refs/remotes/origin/main"


@pytest.fixture
def pool(tmp_path: Path, mirror: Mirror) -> WorkspacePool:
    return WorkspacePool(mirror, tmp_path / "data" / "workspaces" / "project-1", keep=2)


def _git(ws: Workspace, *args: str) -> str:
    return sh(ws.path, f"--git-dir={ws.git_dir}", f"--work-tree={ws.path}", *args)


def _idle(pool: WorkspacePool) -> list[Path]:
    return sorted(p for p in pool.root.iterdir() if p.name.startswith(IDLE_PREFIX))


def _registered(mirror: Mirror) -> list[str]:
    out = sh(mirror.path, "worktree", "list", "--porcelain")
    return [line.removeprefix("worktree ") for line in out.splitlines()[1:] if "worktree " in line]


def _assert_exactly_at(ws: Workspace, commit: str) -> None:
    assert _git(ws, "rev-parse", "HEAD").strip() == commit
    assert _git(ws, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert _git(ws, "diff", commit) == ""
    on_disk = sorted(
        str(p.relative_to(ws.path))
        for p in ws.path.rglob("*")
        if not p.is_dir() and p.name != ".git"
    )
    assert on_disk == sorted(_git(ws, "ls-tree", "-r", "--name-only", commit).split())


def test_second_acquire_reuses_the_parked_tree(pool: WorkspacePool, mirror: Mirror) -> None:
    first = pool.acquire("job-1", "errands/1-a", BASE)
    assert first.path == pool.root / "job-1"
    assert first.head() == mirror.resolve(BASE)
    (first.git_dir / "marker").write_text("the same tree\n")
    inode = (first.path / "README.md").stat().st_ino
    pool.release(first)
    assert not first.path.exists()
    assert len(_idle(pool)) == 1

    second = pool.acquire("job-2", "errands/2-b", BASE)
    assert second.path == pool.root / "job-2"
    assert second.branch == "errands/2-b"
    assert second.git_dir == first.git_dir
    assert (second.git_dir / "marker").exists()
    assert _git(second, "rev-parse", "--absolute-git-dir").strip() == str(first.git_dir)
    # Same commit: not a single file was rewritten.
    assert (second.path / "README.md").stat().st_ino == inode
    assert _idle(pool) == []
    # The registration follows the tree, and git itself finds it through path/.git.
    assert _registered(mirror) == [str(second.path)]
    assert sh(second.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "errands/2-b"
    # The new branch starts at the start point; the old one is intact.
    assert mirror.resolve("refs/heads/errands/2-b") == mirror.resolve(BASE)
    assert mirror.resolve("refs/heads/errands/1-a") == mirror.resolve(BASE)


def test_nothing_of_the_previous_job_survives(
    pool: WorkspacePool, mirror: Mirror, user_repo: Path
) -> None:
    first = pool.acquire("job-1", "errands/1-a", BASE)
    (first.path / ".gitignore").write_text(".venv/\n*.pyc\n")
    (first.path / "only-on-1.txt").write_text("committed on the task branch\n")
    committed = first.commit_all("task 1 work")
    (first.path / "README.md").write_text("modified, uncommitted\n")
    (first.path / "src" / "app.py").unlink()
    (first.path / "untracked.txt").write_text("x\n")
    (first.path / ".venv" / "lib").mkdir(parents=True)
    (first.path / ".venv" / "lib" / "site.py").write_text("ignored cache\n")
    (first.path / "src" / "app.pyc").write_bytes(b"\0ignored")
    nested = first.path / "vendor" / "nested"
    nested.mkdir(parents=True)
    sh(nested, "init", "--quiet")
    sh(first.path, "add", "--intent-to-add", "untracked.txt")  # through path/.git: staged too
    pool.release(first)
    # The task branch keeps its commit and is free: detached where it is parked.
    assert mirror.resolve("refs/heads/errands/1-a") == committed
    assert "errands/1-a" not in sh(mirror.path, "worktree", "list", "--porcelain")

    # Meanwhile the base moved by a commit touching a few files.
    commit_files(user_repo, {"README.md": "hello again\n", "docs/new.md": "new\n"}, "upstream")
    mirror.fetch()
    base = mirror.resolve(BASE)
    assert base is not None
    second = pool.acquire("job-2", "errands/2-b", BASE)
    assert second.git_dir == first.git_dir
    _assert_exactly_at(second, base)
    assert not (second.path / ".venv").exists()
    assert not (second.path / "vendor").exists()
    assert not (second.path / "only-on-1.txt").exists()
    assert second.changed_files() == []


def test_a_git_dir_planted_inside_a_tracked_directory_does_not_reach_the_next_job(
    pool: WorkspacePool, mirror: Mirror, user_repo: Path
) -> None:
    """Git's own walks (clean, status) never list an entry named .git, so a repository the
    agent planted as ``src/.git`` (a tracked directory) survived the scrub: the next task's
    git under src/ would have been that repository, with that agent's fsmonitor and hooks."""
    first = pool.acquire("job-1", "errands/1-a", BASE)
    planted = first.path / "src" / ".git"
    sh(first.path / "src", "init", "--quiet")
    (planted / "config").write_text("[core]\n\tfsmonitor = /tmp/evil\n")
    (first.path / "docs" / "deep").mkdir(parents=True)
    (first.path / "docs" / "deep" / ".git").write_text("gitdir: /tmp/elsewhere\n")
    (first.path / "src" / "link").mkdir()
    (first.path / "src" / "link" / ".git").symlink_to(planted)
    pool.release(first)
    (parked,) = _idle(pool)
    assert _dot_gits(parked) == [Path(".git")]
    second = pool.acquire("job-2", "errands/2-b", BASE)
    assert _dot_gits(second.path) == [Path(".git")]
    assert second.changed_files() == []


def _dot_gits(tree: Path) -> list[Path]:
    return sorted(p.relative_to(tree) for p in tree.rglob(".git"))


def test_a_parked_tree_moves_to_the_next_commit_by_what_differs(
    pool: WorkspacePool, mirror: Mirror, user_repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every kind of change between the parked commit and the job's, written without a
    walk over the tree (no full checkout): the tree ends up exactly at the new commit."""
    commit_files(
        user_repo,
        {
            "gone/only.txt": "the only file of its directory\n",
            "tool.sh": "echo hi\n",
            "link": "a file, later a link\n",
            "*": "a file named like a glob\n",
            ":(glob)x": "a file named like pathspec magic\n",
            "keep.txt": "untouched\n",
        },
        "before",
    )
    mirror.fetch()
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    (ws.path / "build").mkdir()  # an empty directory the job leaves
    kept = (ws.path / "keep.txt").stat().st_ino
    pool.release(ws)
    assert not (_idle(pool)[0] / "build").exists()

    (user_repo / "link").unlink()
    os.symlink("keep.txt", user_repo / "link")
    (user_repo / "tool.sh").chmod(0o755)
    commit_files(
        user_repo,
        {
            "gone/only.txt": None,
            "*": "changed\n",
            ":(glob)x": None,
            "new/deep/file.txt": "added\n",
        },
        "after",
    )
    mirror.fetch()
    base = mirror.resolve(BASE)
    assert base is not None
    with caplog.at_level(logging.INFO, logger="errands.git.pool"):
        again = pool.acquire("job-2", "errands/2-b", BASE)
    assert "in full" not in caplog.text
    assert again.git_dir == ws.git_dir
    _assert_exactly_at(again, base)
    assert not (again.path / "gone").exists()
    assert os.readlink(again.path / "link") == "keep.txt"
    assert os.access(again.path / "tool.sh", os.X_OK)
    assert (again.path / "keep.txt").stat().st_ino == kept
    assert again.changed_files() == []


def test_a_file_that_became_a_directory_and_back(
    pool: WorkspacePool, mirror: Mirror, user_repo: Path
) -> None:
    commit_files(user_repo, {"was-a-file": "file\n", "was-a-dir/inside.txt": "dir\n"}, "before")
    mirror.fetch()
    pool.release(pool.acquire("job-1", "errands/1-a", BASE))
    commit_files(user_repo, {"was-a-file": None, "was-a-dir/inside.txt": None}, "neither")
    (user_repo / "was-a-dir").rmdir()
    commit_files(user_repo, {"was-a-file/inside.txt": "dir\n", "was-a-dir": "file\n"}, "after")
    mirror.fetch()
    again = pool.acquire("job-2", "errands/2-b", BASE)
    base = mirror.resolve(BASE)
    assert base is not None
    _assert_exactly_at(again, base)


def test_a_head_the_job_moved_is_where_the_tree_is_parked(
    pool: WorkspacePool, mirror: Mirror, user_repo: Path
) -> None:
    """The sandbox can point HEAD anywhere; the scrub goes back to it exactly, records it,
    and the next job's commit is reached from there."""
    first = mirror.resolve(BASE)
    assert first is not None
    commit_files(user_repo, {"README.md": "second\n", "added.txt": "x\n"}, "second")
    mirror.fetch()
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    # What `git checkout --detach <first>` in the sandbox does, with the sandbox's index.
    sh(ws.path, "checkout", "--quiet", "--detach", first)
    (ws.path / "README.md").write_text("edited after\n")
    pool.release(ws)
    assert _idle(pool)[0].name.endswith(f"-{first}")
    again = pool.acquire("job-2", "errands/2-b", BASE)
    second = mirror.resolve(BASE)
    assert second is not None
    _assert_exactly_at(again, second)


def test_a_tree_parked_without_its_commit_is_checked_out_in_full(
    pool: WorkspacePool, mirror: Mirror
) -> None:
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    pool.release(ws)
    parked = _idle(pool)[0]
    old_style = parked.with_name(parked.name.rpartition("-")[0])  # as an older Errands named it
    parked.rename(old_style)
    sh(mirror.path, "worktree", "repair", str(old_style))
    (old_style / "left.txt").write_text("not ours to trust\n")
    again = pool.acquire("job-2", "errands/2-b", BASE)
    base = mirror.resolve(BASE)
    assert base is not None
    _assert_exactly_at(again, base)


def test_an_existing_task_branch_is_checked_out_as_it_is(
    pool: WorkspacePool, mirror: Mirror
) -> None:
    first = pool.acquire("job-1", "errands/1-a", BASE)
    (first.path / "a.txt").write_text("a\n")
    tip = first.commit_all("work so far")
    assert tip is not None
    pool.release(first)
    other = pool.acquire("job-2", "errands/2-b", BASE)
    pool.release(other)

    # A revise job of task 1: the start point is ignored, the branch continues.
    again = pool.acquire("job-3", "errands/1-a", BASE)
    assert again.git_dir == first.git_dir
    _assert_exactly_at(again, tip)
    assert sh(again.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "errands/1-a"
    (again.path / "b.txt").write_text("b\n")
    assert again.commit_all("more") is not None
    assert mirror.resolve("refs/heads/errands/1-a^") == tip


def test_a_released_branch_can_be_checked_out_anywhere(
    tmp_path: Path, pool: WorkspacePool, mirror: Mirror
) -> None:
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    pool.release(ws)
    # Parked (detached): neither git nor add_workspace sees the branch as checked out.
    plain = mirror.add_workspace(tmp_path / "elsewhere", "errands/1-a", BASE)
    assert _idle(pool) != []
    mirror.remove_workspace(plain.path)


def test_a_dead_jobs_tree_on_the_same_branch_does_not_block_acquire(
    pool: WorkspacePool, mirror: Mirror
) -> None:
    spare = pool.acquire("spare", "errands/9-spare", BASE)
    dead = pool.acquire("job-1", "errands/1-a", BASE)
    pool.release(spare)
    (dead.path / "lost.txt").write_text("uncommitted\n")
    # The worker running job-1 died; its retry runs as job-2 on the same branch.
    retry = pool.acquire("job-2", "errands/1-a", BASE)
    assert retry.git_dir == spare.git_dir
    assert not dead.path.exists()
    assert retry.changed_files() == []


def test_prewarm_makes_the_first_acquire_a_reuse(pool: WorkspacePool, mirror: Mirror) -> None:
    assert pool.prewarm(BASE)
    assert len(_idle(pool)) == 1
    assert not pool.prewarm(BASE)  # one is parked already
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    assert _idle(pool) == []
    assert [p.name for p in pool.root.iterdir()] == ["job-1"]
    base = mirror.resolve(BASE)
    assert base is not None
    _assert_exactly_at(ws, base)
    with pytest.raises(GitError, match="does not name a commit"):
        pool.prewarm("refs/remotes/origin/nope")
    assert [p.name for p in pool.root.iterdir()] == ["job-1"]


def test_concurrent_acquires_get_different_trees(pool: WorkspacePool) -> None:
    parked = [pool.acquire(f"warm-{i}", f"errands/{i}-warm", BASE) for i in range(2)]
    for ws in parked:
        pool.release(ws)
    results: dict[int, Workspace] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def work(i: int) -> None:
        try:
            start.wait()
            results[i] = pool.acquire(f"job-{i}", f"errands/{10 + i}-x", BASE)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    git_dirs = {ws.git_dir for ws in results.values()}
    paths = {ws.path for ws in results.values()}
    assert len(git_dirs) == len(paths) == 3
    # Two were warm, the third a full checkout; every one is on its own branch.
    assert git_dirs > {ws.git_dir for ws in parked}
    for ws in results.values():
        assert sh(ws.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == ws.branch


def test_keep_bounds_the_parked_trees(pool: WorkspacePool, mirror: Mirror) -> None:
    trees = [pool.acquire(f"job-{i}", f"errands/{i}-x", BASE) for i in range(4)]
    for ws in trees:
        pool.release(ws)
    assert pool.keep == 2
    assert len(_idle(pool)) == 2
    assert len(_registered(mirror)) == 2
    # The most recently parked are kept.
    assert {admin for admin in (t.git_dir for t in trees) if admin.exists()} == {
        trees[2].git_dir,
        trees[3].git_dir,
    }

    none_kept = WorkspacePool(mirror, pool.root, keep=0)
    ws = none_kept.acquire("job-9", "errands/9-x", BASE)
    none_kept.release(ws)
    assert _idle(pool) == []
    assert _registered(mirror) == []


def test_sweep_cleans_up_after_dead_jobs(pool: WorkspacePool, mirror: Mirror) -> None:
    live = pool.acquire("job-live", "errands/1-a", BASE)
    dead = pool.acquire("job-dead", "errands/2-b", BASE)
    (dead.path / "half-done.txt").write_text("from a worker that died\n")
    vanished = pool.acquire("job-vanished", "errands/3-c", BASE)
    shutil.rmtree(vanished.path)  # gone, but still registered in the mirror
    (live.path / "in-progress.txt").write_text("mine\n")

    assert pool.sweep({"job-live"}, min_age=3600) == 1  # only the vanished registration
    assert dead.path.exists()
    assert pool.sweep({"job-live"}) == 1
    assert not dead.path.exists()
    assert (live.path / "in-progress.txt").exists()
    assert len(_idle(pool)) == 1
    assert sorted(_registered(mirror)) == sorted([str(live.path), str(_idle(pool)[0])])
    # The dead job's branch is free again, and its tree is reused, clean.
    retry = pool.acquire("job-retry", "errands/2-b", BASE)
    assert retry.git_dir == dead.git_dir
    assert retry.changed_files() == []
    assert pool.sweep({"job-live", "job-retry"}) == 0


def test_sweep_leaves_what_is_not_a_workspace(pool: WorkspacePool) -> None:
    pool.root.mkdir(parents=True)
    (pool.root / "stray").mkdir()
    (pool.root / "stray" / "keep.txt").write_text("not ours\n")
    assert pool.sweep(()) == 0
    assert (pool.root / "stray" / "keep.txt").exists()


def test_release_is_safe_when_the_workspace_is_gone(pool: WorkspacePool, mirror: Mirror) -> None:
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    mirror.remove_workspace(ws.path)
    pool.release(ws)
    pool.release(ws)
    assert _idle(pool) == []

    again = pool.acquire("job-2", "errands/2-b", BASE)
    pool.release(again)
    pool.release(again)  # released twice: the parked tree is left alone
    assert len(_idle(pool)) == 1


def test_a_tampered_dot_git_is_restored_on_release(pool: WorkspacePool, tmp_path: Path) -> None:
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    evil = tmp_path / "evil.git"
    sh(tmp_path, "init", "--quiet", "--bare", str(evil))
    marker = tmp_path / "pwned"
    sh(evil, "config", "core.bare", "false")
    sh(evil, "config", "core.fsmonitor", f"touch {marker}; false")
    (ws.path / ".git").write_text(f"gitdir: {evil}\n")
    pool.release(ws)
    again = pool.acquire("job-2", "errands/2-b", BASE)
    assert again.git_dir == ws.git_dir
    assert sh(again.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "errands/2-b"
    assert not marker.exists()


def test_a_tree_that_cannot_be_cleaned_is_removed_not_parked(pool: WorkspacePool) -> None:
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    # A git command of the dead job never finished (Errands' index: the one it writes).
    index = private_index(ws.git_dir)
    locked = index.with_name(f"{index.name}.lock")
    locked.write_text("")
    pool.release(ws)
    assert not ws.path.exists()
    assert _idle(pool) == []


def test_acquire_rejects_bad_input(pool: WorkspacePool, make_ws: Callable[[], None]) -> None:
    for name in ("", ".idle-1", "a/b", "..", ".hidden"):
        with pytest.raises(InvalidInput):
            pool.acquire(name, "errands/1-a", BASE)
    with pytest.raises(InvalidInput):
        pool.acquire("job-1", "bad..name", BASE)
    with pytest.raises(GitError, match="does not name a commit"):
        pool.acquire("job-1", "errands/1-a", "refs/remotes/origin/nope")
    make_ws()
    # With a parked tree too: the error comes before anything is claimed.
    with pytest.raises(GitError, match="does not name a commit"):
        pool.acquire("job-1", "errands/1-a", "refs/remotes/origin/nope")
    assert len(_idle(pool)) == 1
    assert not (pool.root / "job-1").exists()


@pytest.fixture
def make_ws(pool: WorkspacePool) -> Callable[[], None]:
    def make() -> None:
        pool.release(pool.acquire("warm", "errands/0-warm", BASE))

    return make


def test_an_untouched_tree_is_parked_without_a_scrub_and_its_branch_freed(
    tmp_path: Path, pool: WorkspacePool, mirror: Mirror
) -> None:
    """A research job's tree (nothing ran or wrote there) is parked as it is: the branch is
    free, the next acquire reuses it and it is exactly at its commit."""
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    inode = (ws.path / "README.md").stat().st_ino
    # Only to see that no scrub ran: a caller says "untouched" only when nothing wrote.
    (ws.path / "marker.txt").write_text("left as it was\n")
    pool.release(ws, untouched=True)
    assert len(_idle(pool)) == 1
    parked = _idle(pool)[0]
    assert (parked / "marker.txt").exists()  # parked as it was: no clean, no walk
    (parked / "marker.txt").unlink()
    plain = mirror.add_workspace(tmp_path / "elsewhere", "errands/1-a", BASE)
    mirror.remove_workspace(plain.path)
    again = pool.acquire("job-2", "errands/2-b", BASE)
    assert again.git_dir == ws.git_dir
    assert (again.path / "README.md").stat().st_ino == inode
    _assert_exactly_at(again, mirror.resolve(BASE) or "")


def _plant_fifo(git_dir: Path, how: str) -> None:
    """What a sandboxed job can do to its own admin dir, which it may write."""
    if how == "head ref":
        (git_dir / "refs" / "bisect").mkdir(parents=True, exist_ok=True)
        os.mkfifo(git_dir / "refs" / "bisect" / "trap")
        (git_dir / "HEAD").write_text("ref: refs/bisect/trap\n")
        return
    target = git_dir / how
    target.unlink(missing_ok=True)
    os.mkfifo(target)


@pytest.mark.parametrize("how", ["gitdir", "HEAD", "locked", "head ref"])
def test_a_fifo_in_one_jobs_admin_dir_does_not_freeze_the_projects_git(
    pool: WorkspacePool, mirror: Mirror, how: str
) -> None:
    """git reads every registration when it lists, prunes or adds work trees; a FIFO there
    would block it forever under the mirror's lock, and every job of the project with it.
    The registration is removed instead, and only the job that planted it loses it."""
    hostile = pool.acquire("job-1", "errands/1-a", BASE)
    honest = pool.acquire("job-2", "errands/2-b", BASE)
    _plant_fifo(hostile.git_dir, how)
    outcome: list[object] = []

    def others() -> None:
        try:
            pool.sweep({"job-2"}, min_age=0)
            listed = [t.path for t in list_worktrees(mirror.path)]
            third = pool.acquire("job-3", "errands/3-c", BASE)
            pool.release(third)
            outcome.append(listed)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=others, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "git blocked on the FIFO"
    assert not isinstance(outcome[0], BaseException), outcome[0]
    assert honest.path in outcome[0]  # type: ignore[operator]
    assert not hostile.git_dir.exists()
    _assert_exactly_at(honest, mirror.resolve(BASE) or "")
