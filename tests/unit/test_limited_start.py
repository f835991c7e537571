"""LimitedStart: a command's first process is confined (cgroup, rlimits, parent-death signal)
before anything of the command runs, without the worker forking itself."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from errands.sandbox import Limits
from errands.sandbox.limits import LimitedStart, PidsCgroup, confine_programs

PATH = {"PATH": "/usr/bin:/bin"}
confining_shell = pytest.mark.skipif(
    confine_programs() is None, reason="no setpriv with --pdeathsig: starts fork the worker"
)


def run(start: LimitedStart, cwd: Path, env: Mapping[str, str] = PATH) -> tuple[int, str]:
    done = subprocess.run(
        start.argv,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=start.preexec_fn,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout.decode()


def limits_of(output: str) -> dict[str, tuple[str, str]]:
    """/proc/self/limits as name → (soft, hard)."""
    found = {}
    for line in output.splitlines():
        if line.startswith("Max "):
            soft, hard = line[26:].split()[:2]
            found[line[:26].strip()] = (soft, hard)
    return found


def test_the_command_runs_in_its_cgroup_under_its_limits(tmp_path: Path) -> None:
    # Not whole KiB: rounded down, never up.
    limits = Limits(cpu_seconds=7, file_bytes=1024**2 + 1000, memory_bytes=2 * 1024**3 + 5)
    cgroup = PidsCgroup.create(100)
    start = LimitedStart(["sh", "-c", "cat /proc/self/limits /proc/self/cgroup"], limits, cgroup)
    try:
        code, output = run(start, tmp_path)
    finally:
        if cgroup is not None:
            cgroup.kill()
            cgroup.remove()

    assert code == 0, output
    found = limits_of(output)
    assert found["Max cpu time"] == ("7", "8")
    assert found["Max file size"] == (str(1024**2),) * 2
    assert found["Max address space"] == (str(2 * 1024**3),) * 2
    if cgroup is not None:
        assert f"/{cgroup.path.name}\n" in output


@confining_shell
def test_a_startup_file_in_the_environment_does_not_run_before_the_limits(tmp_path: Path) -> None:
    """The environment given is the command's, and bash reads a startup file named there: the
    shell that confines the command must not run it (the command's own shell may, confined)."""
    early = tmp_path / "early.sh"
    early.write_text(f"touch {tmp_path}/ran-early\n")
    start = LimitedStart(["true"], Limits(), None)

    code, output = run(start, tmp_path, {**PATH, "BASH_ENV": str(early)})

    assert code == 0, output
    assert not (tmp_path / "ran-early").exists()


@confining_shell
def test_posix_mode_from_the_environment_does_not_change_the_limits(tmp_path: Path) -> None:
    """POSIXLY_CORRECT puts bash in POSIX mode, where ``ulimit -f`` counts 512-byte blocks."""
    start = LimitedStart(["cat", "/proc/self/limits"], Limits(file_bytes=1024**2), None)

    code, output = run(start, tmp_path, {**PATH, "POSIXLY_CORRECT": "1"})

    assert code == 0, output
    assert limits_of(output)["Max file size"] == (str(1024**2),) * 2


@confining_shell
def test_a_start_that_cannot_join_its_cgroup_runs_nothing(tmp_path: Path) -> None:
    cgroup = PidsCgroup.create(100)
    if cgroup is None:
        pytest.skip("no pids cgroup here")
    start = LimitedStart(["touch", "ran"], Limits(), cgroup)
    cgroup.remove()  # gone before the command starts: it cannot be held to its limit

    code, _ = run(start, tmp_path)

    assert code == 125
    assert not (tmp_path / "ran").exists()


@confining_shell
def test_only_the_given_environment_reaches_the_command(tmp_path: Path) -> None:
    code, output = run(LimitedStart(["env"], Limits(), None, empty_env=True), tmp_path, {})
    assert (code, output) == (0, "")
    code, output = run(LimitedStart(["env"], Limits(), None), tmp_path, {"A": "1", **PATH})
    assert {"A=1", f"PATH={PATH['PATH']}"} <= set(output.splitlines())


def test_the_first_process_dies_with_the_thread_that_started_it(tmp_path: Path) -> None:
    start = LimitedStart(["sleep", "60"], Limits(), None)
    started: list[subprocess.Popen[bytes]] = []

    def starter() -> None:
        started.append(
            subprocess.Popen(
                start.argv,
                cwd=tmp_path,
                env=PATH,
                start_new_session=True,
                preexec_fn=start.preexec_fn,  # noqa: PLW1509
            )
        )
        time.sleep(0.3)  # past the confining shell: sleep is running

    thread = threading.Thread(target=starter)
    thread.start()
    thread.join()
    process = started[0]
    try:
        assert process.wait(timeout=10) == -9  # SIGKILL, at the thread's end
    finally:
        process.kill()
        process.wait()
