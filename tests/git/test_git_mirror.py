from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errands.errors import BranchMoved, GitError, InvalidInput, MergeConflict
from errands.git import Mirror, Workspace
from errands.git import mirror as mirror_module
from errands.git.lock import LOCK_NAME, LOCKS_DIR, repo_lock
from errands.git.mirror import FETCHES_NAME, _Fetches
from errands.git.workspace import stripspace
from tests.git.git_helpers import commit_files, sh


def _snapshot(repo: Path) -> tuple[bytes, str, str]:
    """The user's index bytes, status and refs: what Errands must never change by accident."""
    index = (repo / ".git" / "index").read_bytes()
    status = sh(repo, "status", "--porcelain=v1", "--untracked-files=all")
    refs = sh(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return index, status, refs


BASE_MAIN = "refs/remotes/origin/main"


def _start(mirror: Mirror, tmp_path: Path, branch: str = "errands/1-task") -> Workspace:
    return mirror.add_workspace(
        tmp_path / "ws" / "1", branch, mirror.base_ref(mirror.default_branch())
    )


def test_create_fetches_origin_and_is_idempotent(tmp_path: Path, user_repo: Path) -> None:
    path = tmp_path / "data" / "m.git"
    mirror = Mirror.create(path, str(user_repo))
    head = sh(user_repo, "rev-parse", "HEAD").strip()
    assert mirror.resolve(mirror.base_ref("main")) == head
    assert mirror.resolve("refs/remotes/origin/nope") is None
    assert mirror.default_branch() == "main"
    assert mirror.origin == str(user_repo)

    new_head = commit_files(user_repo, {"x.txt": "x\n"}, "more")
    again = Mirror.create(path, str(user_repo))
    again.fetch()
    assert again.resolve(again.base_ref("main")) == new_head


def test_create_refuses_a_directory_that_is_not_a_mirror(tmp_path: Path, user_repo: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "keep.txt").write_text("mine")
    with pytest.raises(GitError, match="not an Errands mirror"):
        Mirror.create(tmp_path / "stuff", str(user_repo))


def test_default_branch_follows_origin_head(tmp_path: Path, user_repo: Path) -> None:
    sh(user_repo, "checkout", "--quiet", "-b", "trunk")
    mirror = Mirror.create(tmp_path / "m.git", str(user_repo))
    assert mirror.default_branch() == "trunk"


def test_workspace_commits_never_touch_the_user_repository(tmp_path: Path, user_repo: Path) -> None:
    (user_repo / "README.md").write_text("user's uncommitted edit\n")
    (user_repo / "scratch.txt").write_text("untracked\n")
    sh(user_repo, "add", "scratch.txt")
    before = _snapshot(user_repo)

    mirror = Mirror.create(tmp_path / "m.git", str(user_repo))
    ws = _start(mirror, tmp_path)
    assert ws.branch == "errands/1-task"
    assert ws.changed_files() == []
    assert ws.commit_all("nothing") is None

    (ws.path / "src" / "app.py").write_text("print('changed')\n")
    (ws.path / "notes.md").write_text("new\n")
    (ws.path / ".gitignore").write_text(".venv/\n")
    (ws.path / ".venv").mkdir()
    (ws.path / ".venv" / "lib.py").write_text("ignored\n")
    assert ws.changed_files() == [".gitignore", "notes.md", "src/app.py"]
    first = ws.commit_all("Subtask 1: change app\n\n# Heading kept\nBody.")
    (ws.path / "notes.md").unlink()
    second = ws.commit_all("Subtask 2: drop notes")
    assert first is not None
    assert ws.head() == second

    base = mirror.base_ref("main")
    commits = mirror.commits(base, ws.branch)
    assert [c.sha for c in commits] == [first, second]
    assert commits[0].subject == "Subtask 1: change app"
    assert commits[0].body == "# Heading kept\nBody."
    assert commits[0].author == "Errands <errands@localhost>"
    assert commits[1].parent == first
    assert commits[0].parent == mirror.resolve(base)

    assert _snapshot(user_repo) == before
    assert (user_repo / "README.md").read_text() == "user's uncommitted edit\n"
    assert mirror.resolve(f"refs/heads/{ws.branch}") == second
    assert "errands/" not in sh(user_repo, "branch", "--all")


def test_a_commit_message_is_cleaned_as_git_commit_would_and_a_nul_does_not_fail_it(
    tmp_path: Path, user_repo: Path
) -> None:
    mirror = Mirror.create(tmp_path / "m.git", str(user_repo))
    ws = _start(mirror, tmp_path)
    (ws.path / "a.txt").write_text("a\n")
    sha = ws.commit_all("\n\nSubject  \t\n\n\n\n# kept\r\nbody\0 line   \n\n")
    assert sha is not None and ws.head() == sha
    raw = sh(mirror.path, "cat-file", "commit", sha)
    assert raw.split("\n\n", 1)[1] == "Subject\n\n# kept\nbody line\n"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab# \t\n\r\v\f\u00a0")), max_size=30))
def test_stripspace_is_gits(text: str) -> None:
    # What `git commit --cleanup=whitespace` wrote before commits were made with plumbing.
    want = subprocess.run(
        ["git", "stripspace"], input=text.encode(), capture_output=True, check=True
    )
    assert stripspace(text) == want.stdout.decode()


def test_discard_changes_keeps_ignored_files(tmp_path: Path, mirror: Mirror) -> None:
    ws = _start(mirror, tmp_path)
    (ws.path / ".gitignore").write_text(".venv/\n")
    ws.commit_all("ignore venv")
    (ws.path / ".venv").mkdir()
    (ws.path / ".venv" / "cache").write_text("keep me\n")
    (ws.path / "README.md").write_text("half-done\n")
    (ws.path / "stray" / "dir").mkdir(parents=True)
    (ws.path / "stray" / "dir" / "f").write_text("x\n")
    ws.discard_changes()
    assert ws.changed_files() == []
    assert (ws.path / "README.md").read_text() == "hello\n"
    assert not (ws.path / "stray").exists()
    assert (ws.path / ".venv" / "cache").exists()


def test_resumed_job_reuses_the_branch_and_clears_a_dead_workspace(
    tmp_path: Path, mirror: Mirror
) -> None:
    ws = _start(mirror, tmp_path)
    (ws.path / "a.txt").write_text("a\n")
    kept = ws.commit_all("first")
    (ws.path / "half-written.txt").write_text("from a worker that died\n")

    # Same path again (the worker died without cleaning up): the branch continues as is.
    again = _start(mirror, tmp_path)
    assert again.head() == kept
    assert again.changed_files() == []

    # A new path while the old one is gone: the stale registration must not block it.
    mirror.remove_workspace(again.path)
    mirror.remove_workspace(again.path)  # already gone: fine
    third = mirror.add_workspace(tmp_path / "ws" / "2", again.branch, "refs/remotes/origin/main")
    assert third.head() == kept


def test_a_directory_that_is_not_a_workspace_is_never_deleted(
    tmp_path: Path, mirror: Mirror, user_repo: Path
) -> None:
    with pytest.raises(GitError, match="not a workspace"):
        mirror.add_workspace(user_repo, "errands/2-x", "refs/remotes/origin/main")
    with pytest.raises(GitError, match="not a workspace"):
        mirror.remove_workspace(user_repo)
    assert (user_repo / "README.md").exists()


def test_workspace_rejects_bad_input(tmp_path: Path, mirror: Mirror) -> None:
    with pytest.raises(InvalidInput):
        mirror.add_workspace(tmp_path / "w", "bad..name", "refs/remotes/origin/main")
    with pytest.raises(GitError, match="does not name a commit"):
        mirror.add_workspace(tmp_path / "w", "errands/3-x", "refs/remotes/origin/nope")
    ws = _start(mirror, tmp_path)
    (ws.path / "x").write_text("x")
    with pytest.raises(InvalidInput):
        ws.commit_all("  \n")


def test_squash_makes_one_commit_on_the_base(
    tmp_path: Path, mirror: Mirror, user_repo: Path
) -> None:
    ws = _start(mirror, tmp_path)
    (ws.path / "feature.txt").write_text("one\n")
    ws.commit_all("one")
    (ws.path / "feature.txt").write_text("one\ntwo\n")
    ws.commit_all("two")
    # The base moved on meanwhile, in a file the task did not touch.
    base_tip = commit_files(user_repo, {"other.txt": "theirs\n"}, "upstream work")
    mirror.fetch()

    squashed = mirror.squash(ws.branch, mirror.base_ref("main"), "Task 1: feature\n\nDetails.")
    assert sh(mirror.path, "rev-parse", f"{squashed}^@").split() == [base_tip]
    files = sh(mirror.path, "ls-tree", "-r", "--name-only", squashed).split()
    assert {"feature.txt", "other.txt", "README.md"} <= set(files)
    assert sh(mirror.path, "show", f"{squashed}:feature.txt") == "one\ntwo\n"
    assert sh(mirror.path, "log", "-1", "--format=%an <%ae>%n%B", squashed) == (
        "Errands <errands@localhost>\nTask 1: feature\n\nDetails.\n\n"
    )


def test_squash_conflict_names_the_files(tmp_path: Path, mirror: Mirror, user_repo: Path) -> None:
    ws = _start(mirror, tmp_path)
    (ws.path / "README.md").write_text("ours\n")
    ws.commit_all("edit readme")
    commit_files(user_repo, {"README.md": "theirs\n"}, "conflicting edit")
    mirror.fetch()
    with pytest.raises(MergeConflict) as caught:
        mirror.squash(ws.branch, mirror.base_ref("main"), "Task")
    assert caught.value.files == ["README.md"]
    assert "README.md" in caught.value.message


def test_publish_and_delete_only_task_branches(tmp_path: Path, mirror: Mirror) -> None:
    remote = tmp_path / "remote.git"
    sh(tmp_path, "clone", "--quiet", "--bare", str(mirror.origin), str(remote))
    sh(mirror.path, "remote", "set-url", "origin", str(remote))
    ws = _start(mirror, tmp_path)
    (ws.path / "f").write_text("f\n")
    ws.commit_all("f")

    mirror.publish(ws.branch)
    assert sh(remote, "rev-parse", f"refs/heads/{ws.branch}").strip() == ws.head()
    with pytest.raises(GitError, match="errands/"):
        mirror.publish("main")
    with pytest.raises(GitError, match="errands/"):
        mirror.delete_remote_branch("main")

    mirror.delete_remote_branch(ws.branch)
    mirror.delete_remote_branch(ws.branch)  # already gone: fine
    assert ws.branch not in sh(remote, "branch", "--list")


def test_a_dead_jobs_workspace_on_the_same_branch_is_replaced(
    tmp_path: Path, mirror: Mirror
) -> None:
    dead = _start(mirror, tmp_path)
    (dead.path / "a.txt").write_text("a\n")
    kept = dead.commit_all("committed before the worker died")
    (dead.path / "lost.txt").write_text("uncommitted\n")

    ws = mirror.add_workspace(tmp_path / "ws" / "retry", dead.branch, "refs/remotes/origin/main")
    assert ws.head() == kept
    assert not dead.path.exists()
    assert ws.changed_files() == []


def test_workspace_commands_ignore_a_rewritten_dot_git(tmp_path: Path, mirror: Mirror) -> None:
    ws = _start(mirror, tmp_path)
    # What a prompt-injected agent could do: point .git at a repository whose config runs
    # a command of its choosing whenever Errands runs git there.
    evil = ws.path / "evil.git"
    sh(tmp_path, "init", "--quiet", "--bare", str(evil))
    marker = tmp_path / "pwned"
    sh(evil, "config", "core.bare", "false")
    sh(evil, "config", "core.fsmonitor", f"touch {marker}; false")
    (ws.path / ".git").write_text(f"gitdir: {evil}\n")
    # The trap works for anyone who follows .git:
    sh(ws.path, "status")
    assert marker.exists()
    marker.unlink()
    (ws.path / "work.txt").write_text("w\n")

    assert "work.txt" in ws.changed_files()
    sha = ws.commit_all("work")
    ws.discard_changes()

    assert not marker.exists()
    assert mirror.resolve(f"refs/heads/{ws.branch}") == sha


def test_adopt_published_follows_another_machines_pushes(tmp_path: Path, user_repo: Path) -> None:
    remote = tmp_path / "remote.git"
    sh(tmp_path, "clone", "--quiet", "--bare", str(user_repo), str(remote))
    here = Mirror.create(tmp_path / "here.git", str(remote))
    there = Mirror.create(tmp_path / "there.git", str(remote))
    base = here.resolve(here.base_ref("main"))
    assert base is not None
    branch, key = "errands/7-task", "Errands-Task-Key: 7.20261122"

    def commit(ws: Workspace, name: str, marker: str = key) -> str:
        (ws.path / name).write_text(f"{name}\n")
        sha = ws.commit_all(f"{name}\n\n{marker}\n")
        assert sha is not None
        return sha

    assert here.adopt_published(branch, base, key) is None  # nothing anywhere yet

    # The other machine commits and publishes; this one had nothing: it takes origin's.
    ws = _start(there, tmp_path, branch)
    first = commit(ws, "a")
    there.publish(branch)
    here.fetch()
    assert here.adopt_published(branch, base, key) == first
    assert here.resolve(f"refs/heads/{branch}") == first

    # Origin moves on: a local branch behind it fast-forwards.
    second = commit(ws, "b")
    there.publish(branch)
    here.fetch()
    assert here.adopt_published(branch, base, key) == second

    # Local work ahead of origin (committed here, not yet published) is kept.
    mine = here.add_workspace(tmp_path / "ws" / "here", branch, second)
    third = commit(mine, "c")
    here.fetch()
    assert here.adopt_published(branch, base, key) == third

    # Diverged: origin's copy, the one the records refer to, wins.
    theirs = commit(ws, "d")
    there.publish(branch)
    here.remove_workspace(mine.path)
    here.fetch()
    assert here.adopt_published(branch, base, key) == theirs
    with pytest.raises(GitError, match="errands/"):
        here.adopt_published("main", base, key)


def test_a_same_named_branch_of_another_install_is_not_adopted(
    tmp_path: Path, user_repo: Path
) -> None:
    remote = tmp_path / "remote.git"
    sh(tmp_path, "clone", "--quiet", "--bare", str(user_repo), str(remote))
    here = Mirror.create(tmp_path / "here.git", str(remote))
    elsewhere = Mirror.create(tmp_path / "elsewhere.git", str(remote))
    base = here.resolve(here.base_ref("main"))
    assert base is not None
    branch = "errands/1-task"
    ws = _start(elsewhere, tmp_path, branch)
    (ws.path / "theirs").write_text("theirs\n")
    ws.commit_all("theirs\n\nErrands-Task-Key: 1.20250101000000000000\n")
    elsewhere.publish(branch)

    here.fetch()
    assert here.adopt_published(branch, base, "Errands-Task-Key: 1.20261122000000000000") is None
    assert here.resolve(f"refs/heads/{branch}") is None


def test_test_and_build_caches_are_never_committed(tmp_path: Path, mirror: Mirror) -> None:
    ws = _start(mirror, tmp_path)
    (ws.path / "pkg" / "__pycache__").mkdir(parents=True)
    (ws.path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\x00\x01")
    (ws.path / "pkg" / "stale.pyc").write_bytes(b"\x00")
    (ws.path / ".pytest_cache").mkdir()
    (ws.path / ".pytest_cache" / "README.md").write_text("cache\n")
    (ws.path / "pkg" / "m.py").write_text("x = 1\n")

    sha = ws.commit_all("add m")

    assert sha is not None
    assert sh(ws.path, "show", "--name-only", "--format=", sha).split() == ["pkg/m.py"]


def test_publish_is_a_compare_and_swap_never_a_blind_force(tmp_path: Path, user_repo: Path) -> None:
    """A stalled attempt wakes and publishes the branch as it had it: a newer attempt (on
    another machine) has published since, and its push must survive."""
    remote = tmp_path / "remote.git"
    sh(tmp_path, "clone", "--quiet", "--bare", str(user_repo), str(remote))
    stale = Mirror.create(tmp_path / "stale.git", str(remote))
    newer = Mirror.create(tmp_path / "newer.git", str(remote))
    branch = "errands/3-task"
    ws_stale = stale.add_workspace(tmp_path / "ws" / "stale", branch, stale.base_ref("main"))
    (ws_stale.path / "old.txt").write_text("old\n")
    old = ws_stale.commit_all("subtask 1, first attempt")
    assert old is not None
    seen_by_stale = stale.resolve(stale.base_ref(branch))  # None: not on origin yet

    ws_newer = newer.add_workspace(tmp_path / "ws" / "newer", branch, newer.base_ref("main"))
    (ws_newer.path / "new.txt").write_text("new\n")
    new = ws_newer.commit_all("subtask 1, the attempt that took over")
    assert new is not None
    assert newer.publish(branch, commit=new, expected=None) == new

    with pytest.raises(BranchMoved):
        stale.publish(branch, commit=old, expected=seen_by_stale)
    assert sh(remote, "rev-parse", f"refs/heads/{branch}").strip() == new
    # Nor is a copy it did not see deleted.
    with pytest.raises(BranchMoved):
        stale.delete_remote_branch(branch, expected=old)
    assert sh(remote, "rev-parse", f"refs/heads/{branch}").strip() == new

    # From where it last saw it, the owner moves it on, and deletes it once merged.
    (ws_newer.path / "more.txt").write_text("more\n")
    more = ws_newer.commit_all("subtask 2")
    assert more is not None
    assert newer.publish(branch, commit=more, expected=new) == more
    newer.delete_remote_branch(branch, expected=more)
    assert branch not in sh(remote, "branch", "--list")


def _fetch_in_threads(mirror: Mirror, count: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=mirror.fetch) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # each has read the count and queues on the lock held by the test
    return threads


def test_a_fetch_begun_before_the_call_does_not_stand_in_for_it(
    mirror: Mirror, user_repo: Path
) -> None:
    """Jobs queued on the lock skip a fetch only for one begun after they asked: a fetch
    already running when they asked may have missed what was pushed since."""
    fetches = _Fetches(mirror.path)
    begun, finished = fetches.read()
    with repo_lock(mirror.path):
        fetches.write(begun + 1, finished)  # another process's fetch is under way …
        pushed = commit_files(user_repo, {"late.txt": "pushed meanwhile\n"}, "late")
        waiting = _fetch_in_threads(mirror, 1)
        fetches.write(begun + 1, begun + 1)  # … and finishes without having seen the push
    for thread in waiting:
        thread.join(timeout=30)
    assert mirror.resolve(mirror.base_ref("main")) == pushed
    assert fetches.read() == (begun + 2, begun + 2)


def test_fetches_asked_for_together_run_once(mirror: Mirror, user_repo: Path) -> None:
    fetches = _Fetches(mirror.path)
    begun, _ = fetches.read()
    pushed = commit_files(user_repo, {"new.txt": "new\n"}, "new")
    with repo_lock(mirror.path):
        waiting = _fetch_in_threads(mirror, 4)
    for thread in waiting:
        thread.join(timeout=30)
    assert mirror.resolve(mirror.base_ref("main")) == pushed
    assert fetches.read() == (begun + 1, begun + 1)  # one ran; three found it done
    mirror.fetch()  # asked after it finished: runs again
    assert fetches.read() == (begun + 2, begun + 2)


def test_an_unreadable_fetch_count_costs_a_fetch_never_a_skip(
    mirror: Mirror, user_repo: Path
) -> None:
    (mirror.path / LOCKS_DIR / FETCHES_NAME).write_text("garbage\n")
    pushed = commit_files(user_repo, {"more.txt": "more\n"}, "more")
    mirror.fetch()
    assert mirror.resolve(mirror.base_ref("main")) == pushed


def test_branches_publish_while_the_mirror_is_busy_and_fetches_prune(
    tmp_path: Path, mirror: Mirror, user_repo: Path
) -> None:
    """A push to origin takes no lock of the mirror (a job holding it for a checkout does not
    hold up every other task's push), and pushes racing fetches that prune and update the
    same remote-tracking refs all succeed."""
    branches = [f"errands/{n}-task" for n in range(1, 6)]
    spaces = [mirror.add_workspace(tmp_path / "ws" / b[8:], b, BASE_MAIN) for b in branches]
    first = spaces[0]
    (first.path / "first.txt").write_text("first\n")
    first.commit_all("first")
    with repo_lock(mirror.path):  # a long operation of another job
        done = threading.Thread(target=mirror.publish, args=(first.branch,))
        done.start()
        deadline = time.monotonic() + 30
        while sh(user_repo, "branch", "--list", first.branch).strip() == "":
            assert time.monotonic() < deadline, "the push waited for the mirror's lock"
            time.sleep(0.05)
    done.join(timeout=30)
    assert mirror.resolve(mirror.base_ref(first.branch)) == first.head()
    errors: list[BaseException] = []

    def publish_rounds(ws: Workspace) -> None:
        try:
            for round_ in range(3):
                (ws.path / f"r{round_}.txt").write_text(f"{round_}\n")
                ws.commit_all(f"round {round_}")
                mirror.publish(ws.branch)
        except BaseException as exc:
            errors.append(exc)

    def fetch_rounds(moves_base: bool) -> None:
        try:
            for n in range(6):
                if moves_base:  # one thread commits to origin; both fetch
                    commit_files(user_repo, {f"base{n}.txt": "x\n"}, f"base {n}")
                mirror.fetch()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish_rounds, args=(ws,)) for ws in spaces]
    threads += [threading.Thread(target=fetch_rounds, args=(m,)) for m in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    for ws in spaces:
        assert sh(user_repo, "rev-parse", f"refs/heads/{ws.branch}").strip() == ws.head()
        assert mirror.resolve(mirror.base_ref(ws.branch)) == ws.head()


def test_origin_is_read_once_per_version_of_the_config(
    mirror: Mirror, user_repo: Path, make_repo: Callable[..., Path], git_starts: list[list[str]]
) -> None:
    assert mirror.origin == str(user_repo)
    assert mirror.origin == str(user_repo)
    assert [args[0] for args in git_starts] == ["config"]
    other = make_repo("other")
    sh(mirror.path, "config", "remote.origin.url", str(other))
    assert mirror.origin == str(other)


def test_an_earlier_versions_lock_files_are_removed_when_its_mirror_is_opened(
    tmp_path: Path, user_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Earlier versions kept the mirror's lock, the landing turns and the fetch count at the
    mirror's top, in the sandbox's sight; nothing uses them now, and they go."""
    path = tmp_path / "m.git"
    Mirror.create(path, str(user_repo))
    old = ["errands.lock", "errands-fetches", "errands-land-0123456789abcdef.lock"]
    for name in old:
        (path / name).write_text("1 1\n")
    monkeypatch.setattr(mirror_module, "_READY", set())  # the upgraded worker's first job
    Mirror.create(path, str(user_repo))
    assert [name for name in old if (path / name).exists()] == []
    assert (path / LOCKS_DIR / LOCK_NAME).is_file()
    assert (path / LOCKS_DIR / FETCHES_NAME).is_file()
