"""A host laid out like a worker's: a home with an SSH key, an Errands data directory with
its database, another task's workspace and ours. The sandbox may read the host tree (so every
hidden path sits below a readable one) and write only its workspace."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from errands.sandbox import BubblewrapSandbox, Limits, SandboxPolicy
from errands.sandbox.bubblewrap import bwrap_problem

PROBLEM = bwrap_problem()

requires_bwrap = pytest.mark.skipif(
    PROBLEM is not None, reason=f"bubblewrap cannot run here: {PROBLEM}"
)

SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nFAKE-KEY-b3BlbnNzaC1rZXktdjEA\n"
DB_SECRET = "SQLite format 3\x00 task-secret-row-42"
OTHER_SECRET = "another task's uncommitted work: other-secret-77"


@dataclass(frozen=True)
class Host:
    root: Path  # readable
    home: Path  # hidden
    data: Path  # hidden: errands.db, workspaces/
    other_workspace: Path
    workspace: Path  # ours: writable
    outside: Path  # in no policy at all

    def policy(self, **changes: Any) -> SandboxPolicy:
        policy = SandboxPolicy(
            workspace=self.workspace,
            env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
            readable=(self.root, *toolchains()),
            hidden=(self.home, self.data),
            limits=Limits(output_chars=20_000),
        )
        return replace(policy, **changes)

    def sandbox(self, **changes: Any) -> BubblewrapSandbox:
        return BubblewrapSandbox(self.policy(**changes))


def toolchains() -> tuple[Path, ...]:
    """What this test process runs on: its Python installation, and the root of a version
    manager (pyenv) whose shims PATH points at."""
    found = [Path(sys.base_prefix).resolve()]
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(entry)
        if path.name == "shims" and path.is_dir():
            found.append(path.parent.resolve())
    return tuple(found)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    root = tmp_path / "host"
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(SSH_KEY)
    (home / ".ssh" / "id_rsa").chmod(0o600)
    data = root / "errands-data"
    other = data / "workspaces" / "task-1"
    workspace = data / "workspaces" / "task-2"
    other.mkdir(parents=True)
    workspace.mkdir()
    (data / "errands.db").write_text(DB_SECRET)
    (other / "notes.txt").write_text(OTHER_SECRET)
    outside = tmp_path / "outside"
    outside.mkdir()
    return Host(root, home, data, other, workspace, outside)


@pytest.fixture
def marker() -> str:
    """A unique string to find the command's processes by on the host (as ``sleep`` takes
    fractional seconds, a unique duration is one)."""
    return f"1000.{os.getpid()}{time.monotonic_ns() % 1_000_000:06d}"


def survivors(marker: str, *, wait: float = 5.0) -> list[str]:
    """Command lines of host processes (any pid namespace) that still carry ``marker``,
    after giving killed ones a moment to go (SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker in cmdline and state not in ("Z", "X"):
                found.append(f"{entry.name}: {cmdline}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
