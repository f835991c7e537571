"""A sandboxed command cannot hold the locks Errands' workers queue on.

The sandbox reads the project's mirror (objects, refs), and ``flock`` needs no more than a
read-only descriptor. Errands' own lock files (the mirror's lock every ref and work tree
change waits for, the landing turns, the fetch counter) once sat at the mirror's top: a
command that locked them froze every job of the project for as long as it ran. This runs
that attack in the sandbox jobs use, for real."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from errands.git import Mirror
from errands.git.lock import repo_lock
from errands.git.workspace import Workspace
from errands.sandbox import BubblewrapSandbox
from errands.sandbox.bubblewrap import bwrap_problem
from errands.workflow.merge import landing_turn
from tests.git.test_workspace_index import BASE, sandbox_for

pytestmark = pytest.mark.skipif(
    bwrap_problem() is not None, reason=f"bubblewrap is not usable here: {bwrap_problem()}"
)

# Every file of the mirror the command can see, opened read-only and locked; then it holds
# them all while it sleeps (as a hostile command may until its timeout).
LOCK_EVERYTHING = """
for f in $(find {mirror} -type f 2>/dev/null); do
    exec {{fd}}<"$f" && flock -x -n "$fd" && echo "$f" >> held.txt
done
touch locked
sleep {hold}
"""
HOLD = 20.0


def _hold_everything(sandbox: BubblewrapSandbox, mirror: Mirror, workspace: Workspace) -> None:
    command = LOCK_EVERYTHING.format(mirror=mirror.path, hold=HOLD)
    threading.Thread(target=sandbox.run, args=(command,), kwargs={"timeout": 60}).start()
    marker = workspace.path / "locked"
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the command never got to lock anything"
        time.sleep(0.05)


def _finishes(work: threading.Thread, within: float) -> bool:
    work.start()
    work.join(within)
    return not work.is_alive()


@pytest.fixture
def workspace(mirror: Mirror, tmp_path: Path) -> Workspace:
    return mirror.add_workspace(tmp_path / "data" / "workspaces" / "task-1", "errands/1-x", BASE)


def test_a_sandboxed_command_cannot_hold_the_mirrors_lock(
    tmp_path: Path, mirror: Mirror, workspace: Workspace
) -> None:
    sandbox = sandbox_for(tmp_path, mirror, workspace)
    _hold_everything(sandbox, mirror, workspace)
    assert (workspace.path / "held.txt").exists()  # it did lock what it could see

    def manage() -> None:
        with repo_lock(mirror.path):
            pass
        mirror.fetch()

    assert _finishes(threading.Thread(target=manage, daemon=True), within=10), (
        "a sandboxed command held the mirror's lock"
    )


def test_a_sandboxed_command_cannot_hold_a_landing_turn(
    tmp_path: Path, mirror: Mirror, workspace: Workspace
) -> None:
    with landing_turn(mirror, "main") as mine:  # the turn's file exists before the sandbox
        assert mine
    sandbox = sandbox_for(tmp_path, mirror, workspace)
    _hold_everything(sandbox, mirror, workspace)
    turns: list[bool] = []

    def land() -> None:
        with landing_turn(mirror, "main") as mine:
            turns.append(mine)

    assert _finishes(threading.Thread(target=land, daemon=True), within=10), (
        "a sandboxed command held the landing turn"
    )
    assert turns == [True]


def test_the_sandbox_sees_none_of_errands_own_files_in_the_mirror(
    tmp_path: Path, mirror: Mirror, workspace: Workspace
) -> None:
    with landing_turn(mirror, "main"):
        pass
    sandbox = sandbox_for(tmp_path, mirror, workspace)
    result = sandbox.run(f"find {mirror.path} -name 'errands*' -type f", timeout=60)
    assert result.ok, result.output
    assert result.output.strip() == ""
