"""What must keep working inside the bubblewrap sandbox: the workspace, the toolchain, git in
a worktree of the project's mirror, and the command's own output and exit code."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from errands.errors import CommandError
from errands.sandbox import BubblewrapSandbox, SandboxPolicy
from tests.conftest import run_git
from tests.sandbox.conftest import Host, requires_bwrap, toolchains

pytestmark = requires_bwrap


def test_the_workspace_is_writable_and_files_belong_to_the_host_user(host: Host) -> None:
    result = host.sandbox().run(
        "mkdir -p pkg && echo 'print(40 + 2)' > pkg/main.py && id -u && pwd", timeout=30
    )

    assert result.ok, result.output
    assert result.output.split() == ["1000", str(host.workspace)]
    created = host.workspace / "pkg" / "main.py"
    assert created.read_text() == "print(40 + 2)\n"
    assert created.stat().st_uid == os.getuid()
    assert created.stat().st_gid == os.getgid()


def test_exit_code_output_and_scratch_space(host: Host) -> None:
    result = host.sandbox().run(
        "echo out; echo err >&2; touch $HOME/x $TMPDIR/y /dev/shm/z && echo scratch; exit 3",
        timeout=30,
    )

    assert result.exit_code == 3
    assert result.output.splitlines() == ["out", "err", "scratch"]
    assert result.describe() == "exit code 3"


def test_python_runs_from_a_toolchain_under_the_home_directory(host: Host) -> None:
    result = host.sandbox().run("python3 -c 'import sys; print(sys.version_info[:2])'", timeout=30)

    assert result.ok, result.output
    assert result.output.strip() == "(3, 11)"


def test_git_works_in_a_worktree_of_the_mirror(tmp_path: Path, sample_repo: Path) -> None:
    mirror = tmp_path / "mirror.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(sample_repo), str(mirror)],
        check=True,
        capture_output=True,
    )
    workspace = tmp_path / "workspaces" / "task-7"
    run_git(mirror, "worktree", "add", "-q", "-b", "errands/7-x", str(workspace), "main")
    (workspace / "calc.py").write_text("def add(a, b):\n    return b + a\n")
    policy = SandboxPolicy(
        workspace=workspace,
        env={"PATH": os.environ["PATH"]},
        readable=(mirror, *toolchains()),
        writable=(mirror / "worktrees" / "task-7",),
        hidden=(tmp_path / "workspaces",),
    )

    result = BubblewrapSandbox(policy).run(
        "git status --porcelain && git log --oneline -1 && git diff --stat && "
        "python3 -m pytest -q -p no:cacheprovider tests",
        timeout=60,
    )

    assert result.ok, result.output
    lines = result.output.splitlines()
    assert lines[0] == " M calc.py"
    assert lines[1].endswith("initial")
    assert "1 passed" in result.output
    # The mirror itself stays read-only.
    denied = BubblewrapSandbox(policy).run("touch $(git rev-parse --git-common-dir)/x", timeout=30)
    assert not denied.ok
    assert "Read-only file system" in denied.output


def test_the_pointers_to_the_repository_cannot_be_redirected(
    tmp_path: Path, sample_repo: Path
) -> None:
    """Redirected to a repository the command made, with a core.fsmonitor of its choosing,
    the worker's next git command in the workspace would run that program on the host."""
    mirror = tmp_path / "mirror.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(sample_repo), str(mirror)],
        check=True,
        capture_output=True,
    )
    workspace = tmp_path / "task-8"
    run_git(mirror, "worktree", "add", "-q", "-b", "errands/8-x", str(workspace), "main")
    private = mirror / "worktrees" / "task-8"
    before = {path: path.read_text() for path in (workspace / ".git", private / "commondir")}
    policy = SandboxPolicy(
        workspace=workspace,
        env={"PATH": os.environ["PATH"]},
        readable=(mirror,),
        writable=(private,),
    )

    result = BubblewrapSandbox(policy).run(
        "mkdir -p evil && echo 'gitdir: evil' > .git; rm -f .git; mv .git moved; "
        f"echo {workspace}/evil > {private}/commondir; rm -f {private}/commondir; "
        "git status --porcelain",
        timeout=30,
    )

    assert result.ok, result.output  # git still works, and the agent hears why writes failed
    assert result.output.count("Read-only file system") == 2  # writes
    assert result.output.count("Device or resource busy") == 3  # rm, mv: a mount point
    assert {path: path.read_text() for path in before} == before
    assert run_git(workspace, "status", "--porcelain") == ""


def test_hidden_wins_over_a_readable_parent_and_grants_show_through_a_hidden_one(
    host: Host,
) -> None:
    toolbox = host.home / "toolbox"  # readable, inside the hidden home
    toolbox.mkdir()
    (toolbox / "tool.sh").write_text("echo tool-ok\n")

    result = host.sandbox(readable=(host.root, toolbox)).run(
        f"bash {toolbox}/tool.sh; ls -A {host.home}; cat {host.home}/.ssh/id_rsa", timeout=30
    )

    assert result.output.splitlines()[:2] == ["tool-ok", "toolbox"]
    assert "FAKE-KEY" not in result.output


def test_a_missing_workspace_is_a_command_error(host: Host) -> None:
    with pytest.raises(CommandError, match="Cannot start"):
        host.sandbox(workspace=host.root / "missing").run("true", timeout=30)
