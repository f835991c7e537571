"""LimitedStart: a command's first process is confined (cgroup, rlimits, parent-death signal)
before anything of the command runs, without the worker forking itself."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from errands.sandbox import Limits
from errands.sandbox.limits import LimitedStart, PidsCgroup, hold_programs

held_start = pytest.mark.skipif(
    hold_programs() is None, reason="no setpriv with --pdeathsig: starts fork the worker here"
)


def start(start: LimitedStart, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        start.argv,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        pass_fds=start.pass_fds,
        preexec_fn=start.preexec_fn,  # noqa: PLW1509
    )


@held_start
def test_the_command_runs_only_once_released_and_then_under_its_limits(tmp_path: Path) -> None:
    limits = Limits(cpu_seconds=7, file_bytes=1024**2, memory_bytes=2 * 1024**3)
    cgroup = PidsCgroup.create(100)
    held = LimitedStart(
        ["bash", "-c", "touch ran; ulimit -t; ulimit -f; ulimit -v; cat /proc/self/cgroup"],
        limits,
        cgroup,
    )
    try:
        process = start(held, tmp_path)
        time.sleep(0.3)  # every chance to run ahead, were it not held
        assert not (tmp_path / "ran").exists()
        held.release(process.pid)
        output, _ = process.communicate(timeout=30)
    finally:
        if cgroup is not None:
            cgroup.kill()
            cgroup.remove()

    assert process.returncode == 0
    lines = output.decode().split("\n")
    assert lines[:3] == ["7", "1024", str(2 * 1024**2)]
    if cgroup is not None:
        assert any(line.endswith(f"/{cgroup.path.name}") for line in lines[3:])


@held_start
def test_a_start_given_up_runs_nothing(tmp_path: Path) -> None:
    held = LimitedStart(["bash", "-c", "touch ran"], Limits(), None)
    process = start(held, tmp_path)
    held.close()  # as when confining it failed: the pipe closes without "go"

    assert process.wait(timeout=30) == 125
    assert not (tmp_path / "ran").exists()


def test_the_first_process_dies_with_the_thread_that_started_it(tmp_path: Path) -> None:
    held = LimitedStart(["sleep", "60"], Limits(), None)
    started: list[subprocess.Popen[bytes]] = []

    def starter() -> None:
        started.append(start(held, tmp_path))
        held.release(started[0].pid)
        time.sleep(0.3)  # past the held shell: sleep is running

    thread = threading.Thread(target=starter)
    thread.start()
    thread.join()
    process = started[0]
    try:
        assert process.wait(timeout=10) == -9  # SIGKILL, at the thread's end
    finally:
        process.kill()
        process.wait()
