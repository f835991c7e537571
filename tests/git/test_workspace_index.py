"""The index Errands judges a work tree by is its own, out of the sandbox's reach.

A work tree's git directory is writable in the sandbox (so the agent and the project's tools
can run git there), and with it the index git keeps there. Whatever vouches for a file in
that index (its stat data, an assume-unchanged or skip-worktree bit) made Errands' status and
``add --all`` pass over a change: the subtask came back "empty" though its edit was on disk,
or its commit lacked a change its verification had run with. These run what the sandbox
can do, for real, and check Errands still sees and commits every change."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from errands.git import Mirror
from errands.git.pool import WorkspacePool
from errands.git.workspace import Workspace
from errands.git.worktrees import private_index
from errands.sandbox import BubblewrapSandbox, Limits
from errands.sandbox.bubblewrap import bwrap_problem
from errands.settings import Settings
from errands.workflow.project_config import EffectiveConfig
from errands.workflow.workspaces import policies
from tests.git.git_helpers import sh

pytestmark = pytest.mark.skipif(
    bwrap_problem() is not None, reason=f"bubblewrap is not usable here: {bwrap_problem()}"
)

BASE = "refs/remotes/origin/main"
SAME_SIZE_EDIT = "print('ho')\n"  # src/app.py holds "print('hi')\n": same size, same inode


def sandbox_for(tmp_path: Path, mirror: Mirror, workspace: Workspace) -> BubblewrapSandbox:
    """The sandbox a job's agent and verify commands run in, from the policy jobs use."""
    config = EffectiveConfig(
        verify_commands=[],
        setup_commands=[],
        setup_network=False,
        backend="bubblewrap",
        command_timeout=60,
        limits=Limits(output_chars=20_000),
    )
    settings = Settings(home=tmp_path / "data")
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    _, work = policies(settings, mirror, workspace, cache, config)
    return BubblewrapSandbox(work)


@pytest.fixture(params=["add_workspace", "pool"])
def workspace(request: pytest.FixtureRequest, mirror: Mirror, tmp_path: Path) -> Workspace:
    """A fresh checkout, or a parked tree reused by the pool: both must be judged alike."""
    root = tmp_path / "data" / "workspaces"
    if request.param == "add_workspace":
        return mirror.add_workspace(root / "task-1", "errands/1-x", BASE)
    pool = WorkspacePool(mirror, root)
    pool.release(pool.acquire("task-0", "errands/0-x", BASE))
    return pool.acquire("task-1", "errands/1-x", BASE)


def run_in(sandbox: BubblewrapSandbox, command: str) -> str:
    result = sandbox.run(command, timeout=60)
    assert result.ok, result.output
    return result.output


@pytest.mark.parametrize(
    "hide",
    [
        "git update-index --assume-unchanged src/app.py",
        "git update-index --skip-worktree src/app.py",
    ],
)
def test_a_bit_the_agent_sets_in_its_index_hides_no_change(
    tmp_path: Path, mirror: Mirror, workspace: Workspace, hide: str
) -> None:
    sandbox = sandbox_for(tmp_path, mirror, workspace)
    run_in(sandbox, f"echo 'print(\"planted\")' > src/app.py && {hide} && git status --short")

    assert workspace.changed_files() == ["src/app.py"]
    sha = workspace.commit_all("the agent's change")
    assert sha is not None
    assert "planted" in sh(workspace.path, "show", f"{sha}:src/app.py")


def test_stat_data_the_sandbox_writes_hides_no_change(
    tmp_path: Path, mirror: Mirror, workspace: Workspace
) -> None:
    """The CI failure: a same-size edit in the second of the checkout, then a tool in the
    sandbox (pytest-benchmark runs ``git describe --dirty``) rewrote the index a second later.
    It saw the file under another uid, so it neither refreshed nor smudged the entry, and the
    entry, no longer racy, vouched for the edited file on the host."""
    sandbox = sandbox_for(tmp_path, mirror, workspace)
    app = workspace.path / "src" / "app.py"
    for _ in range(5):
        # The edit must land in the same second as the checkout that wrote the file.
        workspace.discard_changes()
        os.utime(app)  # as if checked out just now
        sh(workspace.path, f"--git-dir={workspace.git_dir}", "update-index", "--refresh")
        written = os.stat(app).st_mtime
        with app.open("r+") as handle:
            handle.write(SAME_SIZE_EDIT)
        if int(os.stat(app).st_mtime) == int(written):
            break
        app.write_text("print('hi')\n")
    else:
        pytest.skip("could not edit within the checkout's second five times running")
    time.sleep(1.1 - time.time() % 1)  # the sandbox's index write lands a second later
    run_in(sandbox, "git describe --dirty --always >/dev/null; git update-index -q --refresh; :")

    assert workspace.changed_files() == ["src/app.py"]
    sha = workspace.commit_all("the agent's change")
    assert sha is not None
    assert sh(workspace.path, "show", f"{sha}:src/app.py") == SAME_SIZE_EDIT


def test_the_sandbox_can_neither_see_nor_replace_errands_index(
    tmp_path: Path, mirror: Mirror, workspace: Workspace
) -> None:
    sandbox = sandbox_for(tmp_path, mirror, workspace)
    ours = private_index(workspace.git_dir)
    assert ours.is_file()  # made with the work tree, before any sandbox runs
    before = ours.read_bytes()
    out = sandbox.run(
        f"ls {ours.parent}; cat {ours} | wc -c; echo x > {ours}; rm -f {ours}; "
        f"ln -s /etc/passwd {ours}.lock",
        timeout=60,
    ).output
    assert ours.read_bytes() == before, out
    assert not os.path.lexists(f"{ours}.lock")
    assert workspace.changed_files() == []


def test_a_tree_from_before_errands_kept_its_own_index_is_judged_by_content(
    mirror: Mirror, workspace: Workspace
) -> None:
    private_index(workspace.git_dir).unlink()  # as a live workspace of an older Errands
    assert workspace.changed_files() == []
    (workspace.path / "src" / "app.py").write_text(SAME_SIZE_EDIT)
    assert workspace.changed_files() == ["src/app.py"]
    sha = workspace.commit_all("the agent's change")
    assert sha is not None and workspace.changed_files() == []
