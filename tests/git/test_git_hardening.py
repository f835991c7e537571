"""Host-side git over a tree the agent wrote runs nothing the agent planted.

Each test plants what a command in the sandbox can write (the work tree, nested repositories,
the work tree's private git directory) with programs that append to a marker file, then
drives the git layer the way a job does: status, add, commit, discard, the review diff,
release (scrub and park) and the next acquire (checkout). The marker must stay absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from errands.errors import NestedRepository
from errands.git import Mirror, Workspace, WorkspacePool
from errands.git.worktrees import private_index
from tests.git.git_helpers import commit_files, sh

BASE = "refs/remotes/origin/main"
VECTORS = "filter=evil diff=evil merge=evil"


@pytest.fixture
def pool(tmp_path: Path, mirror: Mirror) -> WorkspacePool:
    return WorkspacePool(mirror, tmp_path / "data" / "workspaces" / "project-1", keep=2)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "ran-on-the-host"


def evil_program(where: Path, marker: Path) -> Path:
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\ncat\n')
    where.chmod(0o755)
    return where


def evil_config(program: Path, hooks: Path, include: Path | None = None) -> str:
    included = f'[include]\n\tpath = {include}\n[includeIf "gitdir:/"]\n\tpath = {include}\n'
    return f"""[core]
\tfsmonitor = {program}
\thooksPath = {hooks}
\tpager = {program}
\tsshCommand = {program}
\teditor = {program}
[diff]
\texternal = {program}
[diff "evil"]
\ttextconv = {program}
\tcommand = {program}
[filter "evil"]
\tclean = {program}
\tsmudge = {program}
\trequired = true
[merge "evil"]
\tdriver = {program}
[extensions]
\tworktreeConfig = true
{included if include else ""}"""


HOOKS = (
    "pre-commit",
    "commit-msg",
    "post-commit",
    "post-checkout",
    "post-merge",
    "post-index-change",
    "reference-transaction",
    "pre-push",
    "post-rewrite",
    "pre-auto-gc",
)


def plant_hooks(directory: Path, program: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for hook in HOOKS:
        (directory / hook).write_bytes(program.read_bytes())
        (directory / hook).chmod(0o755)


def plant_nested_repository(root: Path, name: str, marker: Path) -> Path:
    """A repository at ``root/name`` whose config, hooks and attributes name programs."""
    nested = root / name
    nested.mkdir(parents=True, exist_ok=True)
    sh(nested, "init", "--quiet")
    (nested / "file.txt").write_text("tracked\n")
    sh(nested, "add", "file.txt")
    sh(nested, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "--quiet", "-m", "x")
    program = evil_program(nested / ".git" / "evil", marker)
    plant_hooks(nested / ".git" / "hooks", program)
    included = nested / ".git" / "included"
    config = evil_config(program, nested / ".git" / "hooks", included)
    included.write_text(evil_config(program, nested / ".git" / "hooks"))
    with (nested / ".git" / "config").open("a") as file:
        file.write(config)
    (nested / ".gitattributes").write_text(f"* {VECTORS}\n")
    (nested / "file.txt").touch()  # stat-dirty: status would run the clean filter
    return nested


def plant_private_git_dir(ws: Workspace, marker: Path) -> None:
    """Everything a sandboxed command can write into the work tree's own git directory."""
    program = evil_program(ws.git_dir / "evil", marker)
    plant_hooks(ws.git_dir / "hooks", program)
    config = evil_config(program, ws.git_dir / "hooks", ws.git_dir / "included")
    for name in ("config.worktree", "config"):
        (ws.git_dir / name).write_text(config)
    (ws.git_dir / "included").write_text(evil_config(program, ws.git_dir / "hooks"))
    (ws.git_dir / "info").mkdir(exist_ok=True)
    (ws.git_dir / "info" / "attributes").write_text(f"* {VECTORS}\n")
    (ws.path / ".gitattributes").write_text(f"* {VECTORS}\n")
    # .gitmodules can override diff.ignoreSubmodules for a submodule path.
    (ws.path / ".gitmodules").write_text(
        '[submodule "sub"]\n\tpath = sub\n\turl = ./sub\n\tignore = none\n'
        '[submodule "vendor"]\n\tpath = vendor\n\turl = ./vendor\n\tignore = none\n'
    )


def host_global_driver(marker: Path, tmp_path: Path) -> None:
    """A filter and diff driver the host's own global config defines (git-lfs installs one):
    trusted programs, but the agent's .gitattributes must not be able to run them."""
    program = evil_program(tmp_path / "host-driver", marker)
    gitconfig = Path(os.environ["GIT_CONFIG_GLOBAL"])
    with gitconfig.open("a") as file:
        file.write(
            f'[filter "hostdriver"]\n\tclean = {program}\n\tsmudge = {program}\n'
            f'[diff "hostdriver"]\n\ttextconv = {program}\n'
        )


def committed_gitlink(ws: Workspace, name: str) -> None:
    """History with a gitlink whose directory holds a planted repository: what an older
    Errands committed from an agent's nested repository, or a project's own submodule whose
    empty directory the agent ran `git init` in."""
    sha = sh(ws.path / name, "rev-parse", "HEAD").strip()
    scope = (f"--git-dir={ws.git_dir}", f"--work-tree={ws.path}")
    # With Errands' own index: this is history, made outside the sandbox.
    ours = {"GIT_INDEX_FILE": str(private_index(ws.git_dir))}
    sh(ws.path, *scope, "update-index", "--add", "--cacheinfo", f"160000,{sha},{name}", env=ours)
    sh(
        ws.path,
        *scope,
        "-c",
        "user.name=x",
        "-c",
        "user.email=x@x",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.fsmonitor=false",
        "commit",
        "--quiet",
        "-m",
        "a gitlink",
        env=ours,
    )


def test_scrub_and_reuse_never_enter_a_committed_gitlink(
    pool: WorkspacePool, mirror: Mirror, marker: Path
) -> None:
    """The reported attack: a nested repository with an fsmonitor, committed as a gitlink;
    releasing the workspace ran `git status` on the host, which entered it."""
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    plant_nested_repository(ws.path, "sub", marker)
    committed_gitlink(ws, "sub")
    plant_private_git_dir(ws, marker)

    assert ws.changed_files() == [".gitattributes", ".gitmodules"]
    mirror.diff(mirror.resolve(BASE), ws.head())
    ws.discard_changes()
    pool.release(ws)
    again = pool.acquire("job-2", "errands/1-a", BASE)  # the same branch, the gitlink in it
    again.changed_files()
    pool.release(again)

    assert not marker.exists(), marker.read_text()


def test_what_the_agent_planted_runs_nowhere_while_its_work_is_committed(
    tmp_path: Path, pool: WorkspacePool, mirror: Mirror, marker: Path
) -> None:
    host_global_driver(marker, tmp_path)
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    plant_private_git_dir(ws, marker)
    (ws.path / ".gitattributes").write_text(
        f"* {VECTORS}\n*.txt filter=hostdriver diff=hostdriver\n"
    )
    (ws.path / "notes.txt").write_text("the agent's work\n")
    (ws.path / "README.md").write_text("changed\n")
    # An ignored nested repository (a dependency checked out by a package manager) is
    # neither refused nor committed nor entered.
    (ws.path / ".gitignore").write_text("deps/\n")
    plant_nested_repository(ws.path / "deps", "lib", marker)

    before = ws.head()
    assert ws.nested_repositories() == []
    sha = ws.commit_all("The agent's work")
    diff = mirror.diff(before, ws.head())
    ws.discard_changes()
    pool.release(ws)

    assert not marker.exists(), marker.read_text()
    assert sha is not None and sha != before
    assert {f.path for f in diff.files} >= {"notes.txt", "README.md", ".gitattributes"}
    # Committed as written: no filter touched the content.
    assert sh(mirror.path, "show", f"{sha}:notes.txt") == "the agent's work\n"
    assert "deps" not in sh(mirror.path, "ls-tree", "-r", "--name-only", sha).split()


def test_nested_repositories_and_gitlinks_are_refused_at_commit(
    pool: WorkspacePool, mirror: Mirror, marker: Path
) -> None:
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    before = ws.head()
    plant_nested_repository(ws.path, "sub", marker)
    plant_nested_repository(ws.path / "lib", "deep", marker)
    sha = sh(ws.path / "sub", "rev-parse", "HEAD").strip()
    scope = (f"--git-dir={ws.git_dir}", f"--work-tree={ws.path}")
    # A gitlink staged by hand, without any directory, in the index the sandbox can write:
    # Errands never reads that index (see private_index), so it is no concern of the commit.
    sh(ws.path, *scope, "update-index", "--add", "--cacheinfo", f"160000,{sha},gl")
    (ws.path / "work.py").write_text("x = 1\n")

    with pytest.raises(NestedRepository) as refused:
        ws.commit_all("Work with nested repositories")

    assert refused.value.paths == ["lib/deep", "sub"]
    assert "nested git repositories" in str(refused.value)
    assert ws.head() == before  # nothing committed
    assert not marker.exists()
    # Removed as the message says, the work is committed, without them.
    sh(ws.path, *scope, "rm", "--quiet", "--cached", "gl")
    shutil.rmtree(ws.path / "sub")
    shutil.rmtree(ws.path / "lib")
    committed = ws.commit_all("Work without them")
    assert committed is not None
    assert sh(mirror.path, "ls-tree", "-r", "--name-only", committed).split().count("work.py") == 1
    assert "160000" not in sh(mirror.path, "ls-tree", "-r", committed)


def test_an_untracked_repository_named_like_an_index_entry_is_refused(
    pool: WorkspacePool, marker: Path
) -> None:
    """Untracked paths and index entries come out of one listing: a name shaped like an
    index entry (mode, object id, stage, tab) is still an untracked repository."""
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    disguised = f"100644 {'e' * 40} 0\tsub"
    plant_nested_repository(ws.path, disguised, marker)
    before = ws.head()

    assert ws.nested_repositories() == [disguised]
    with pytest.raises(NestedRepository):
        ws.commit_all("Work with a disguised repository")
    assert ws.head() == before
    assert not marker.exists()


def test_a_repository_made_inside_a_submodule_path_is_refused(tmp_path: Path, marker: Path) -> None:
    """A project with a real submodule: its gitlink is legitimate, but a repository the
    agent makes in its (empty) directory would be committed as a new gitlink."""
    user = tmp_path / "with-submodule"
    user.mkdir()
    sh(user, "init", "--quiet", "--initial-branch=main")
    sh(user, "config", "user.name", "Test User")
    sh(user, "config", "user.email", "user@example.com")
    commit_files(user, {"README.md": "hello\n"}, "init")
    sh(user, "update-index", "--add", "--cacheinfo", f"160000,{'a' * 40},vendor")
    sh(user, "commit", "--quiet", "-m", "a submodule")
    mirror = Mirror.create(tmp_path / "data" / "mirror2.git", str(user))
    pool = WorkspacePool(mirror, tmp_path / "data" / "workspaces" / "project-2")
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    assert ws.nested_repositories() == []  # the project's own submodule is fine
    plant_nested_repository(ws.path, "vendor", marker)

    assert ws.nested_repositories() == ["vendor"]
    with pytest.raises(NestedRepository):
        ws.commit_all("Bump the submodule")
    pool.release(ws)
    assert not marker.exists(), marker.read_text()


def test_the_commit_lands_on_the_task_branch_whatever_head_says(
    pool: WorkspacePool, mirror: Mirror
) -> None:
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    base = ws.head()
    # What `git checkout --detach` or a rewritten HEAD in the private git dir leaves.
    (ws.git_dir / "HEAD").write_text("ref: refs/remotes/origin/main\n")
    (ws.git_dir / "MERGE_HEAD").write_text(base + "\n")
    (ws.path / "work.py").write_text("x = 1\n")

    sha = ws.commit_all("The agent's work")

    assert sha is not None
    assert mirror.resolve("refs/heads/errands/1-a") == sha
    assert mirror.resolve(BASE) == base
    parents = sh(mirror.path, "rev-list", "--parents", "-n1", sha).split()
    assert parents == [sha, base]  # one parent: no merge made of a planted MERGE_HEAD


def test_a_head_that_only_looks_right_through_a_link_is_mended_not_trusted(
    tmp_path: Path, pool: WorkspacePool, mirror: Mirror
) -> None:
    """HEAD is read without git when it is a plain file naming the task branch; a link to a
    file that says so (somewhere the sandbox cannot reach from the host's view) is not that."""
    ws = pool.acquire("job-1", "errands/1-a", BASE)
    base = ws.head()
    elsewhere = tmp_path / "elsewhere-HEAD"
    elsewhere.write_text("ref: refs/heads/errands/1-a\n")
    (ws.git_dir / "HEAD").unlink()
    (ws.git_dir / "HEAD").symlink_to(elsewhere)
    (ws.path / "work.py").write_text("x = 1\n")

    sha = ws.commit_all("The agent's work")

    assert sha is not None
    assert mirror.resolve("refs/heads/errands/1-a") == sha
    assert mirror.resolve(BASE) == base
    assert not (ws.git_dir / "HEAD").is_symlink()  # replaced by a plain file, not written through
    assert elsewhere.read_text() == "ref: refs/heads/errands/1-a\n"
