"""PlainSandbox: real child processes, a scrubbed environment, limits."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from errands.sandbox import Limits, PlainSandbox, SandboxPolicy
from errands.sandbox.limits import pids_cgroup_available
from errands.sandbox.process import LINE_CUT_MARKER, MAX_LINE_BYTES, MAX_QUEUED_BYTES
from errands.settings import sandbox_env


def plain(workspace: Path, *, output_chars: int = 50_000) -> PlainSandbox:
    limits = Limits(output_chars=output_chars)
    return PlainSandbox(SandboxPolicy(workspace=workspace, env=sandbox_env(), limits=limits))


@pytest.fixture
def sandbox(tmp_path: Path) -> PlainSandbox:
    return plain(tmp_path)


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (killed, not yet reaped by init) counts as dead.

    SIGKILL is delivered asynchronously, so give a killed process a moment to die."""
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return _running(pid)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def test_exit_code_and_output(sandbox: PlainSandbox, tmp_path: Path) -> None:
    result = sandbox.run("echo out; echo err >&2; exit 7", timeout=30)
    assert result.exit_code == 7
    assert not result.ok
    assert result.output.splitlines() == ["out", "err"]
    assert not result.timed_out
    assert not result.cancelled
    assert not result.truncated
    assert result.describe() == "exit code 7"


def test_success_is_ok(sandbox: PlainSandbox, tmp_path: Path) -> None:
    result = sandbox.run("true", timeout=30)
    assert result.exit_code == 0
    assert result.ok


def test_runs_in_the_given_directory(sandbox: PlainSandbox, tmp_path: Path) -> None:
    assert sandbox.run("pwd", timeout=30).output.strip() == str(tmp_path)


@pytest.mark.parametrize(
    "limit",
    [
        1000,
        20_000,
    ],
)
def test_long_output_keeps_head_and_tail_around_an_elided_marker(
    tmp_path: Path, limit: int
) -> None:
    sandbox = plain(tmp_path, output_chars=limit)
    full = "".join(f"{n}\n" for n in range(1, 200_001))

    result = sandbox.run("seq 1 200000", timeout=30)

    assert result.exit_code == 0
    assert result.truncated
    head, marker, tail = result.output.partition("\n… [")
    assert marker, "no elided marker in the output"
    dropped_text, _, tail = tail.partition(" bytes of output elided] …\n")
    assert full.startswith(head)
    assert head.startswith("1\n2\n3\n")
    assert full.endswith(tail)
    assert tail.endswith("199999\n200000\n")
    # nothing lost or duplicated in the accounting, and the kept part respects the limit
    assert len(head) + int(dropped_text) + len(tail) == len(full)
    assert len(head) + len(tail) <= limit
    assert len(tail) >= limit // 4  # the tail (where test failures are summarised) is kept


def test_output_under_the_limit_is_kept_whole(tmp_path: Path) -> None:
    sandbox = plain(tmp_path, output_chars=1000)
    result = sandbox.run("seq 1 100", timeout=30)
    assert result.output == "".join(f"{n}\n" for n in range(1, 101))
    assert not result.truncated


def test_timeout_kills_the_whole_process_tree(sandbox: PlainSandbox, tmp_path: Path) -> None:
    result = sandbox.run("sleep 60 & echo $! > pid; wait", timeout=0.5)

    assert result.timed_out
    assert result.exit_code is None
    assert not result.ok
    assert result.describe().startswith("timed out")
    grandchild = int((tmp_path / "pid").read_text())
    assert not is_alive(grandchild)


def test_cancel_from_another_thread_stops_the_command(
    sandbox: PlainSandbox, tmp_path: Path
) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.2, cancel.set)
    timer.start()
    try:
        result = sandbox.run("sleep 60 & echo $! > pid; wait", timeout=120, cancel=cancel)
    finally:
        timer.cancel()

    assert result.cancelled
    assert not result.timed_out
    assert result.exit_code is None
    assert result.describe() == "cancelled"
    assert not is_alive(int((tmp_path / "pid").read_text()))


def test_background_processes_do_not_outlive_a_finished_command(
    sandbox: PlainSandbox, tmp_path: Path
) -> None:
    result = sandbox.run("sleep 60 >/dev/null 2>&1 & echo $! > pid", timeout=30)
    pid = int((tmp_path / "pid").read_text())
    try:
        assert result.exit_code == 0
        assert not is_alive(pid)
    finally:
        if is_alive(pid):
            os.kill(pid, 9)


@pytest.mark.skipif(not pids_cgroup_available(), reason="no pids cgroup to find it by")
def test_a_process_that_leaves_the_group_is_killed_too(
    sandbox: PlainSandbox, tmp_path: Path
) -> None:
    result = sandbox.run(
        "setsid sh -c 'echo $$ > pid; exec sleep 60' >/dev/null 2>&1 & sleep 0.3", timeout=30
    )
    pid = int((tmp_path / "pid").read_text())
    try:
        assert result.exit_code == 0
        assert not is_alive(pid)
    finally:
        if is_alive(pid):
            os.kill(pid, 9)


def test_limits_apply_to_the_command(tmp_path: Path) -> None:
    limits = Limits(cpu_seconds=7, file_bytes=1024**2, memory_bytes=2 * 1024**3)
    policy = SandboxPolicy(workspace=tmp_path, env=sandbox_env(), limits=limits)

    result = PlainSandbox(policy).run("ulimit -t; ulimit -f; ulimit -v", timeout=30)

    # bash reports CPU seconds, 1024-byte blocks and KiB.
    assert result.output.split() == ["7", "1024", str(2 * 1024**2)]


def test_secrets_and_errands_settings_never_reach_the_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = {
        "OPENAI_API_KEY": "sk-openai-secret-value",
        "ANTHROPIC_API_KEY": "sk-ant-secret-value",
        "GOOGLE_API_KEY": "google-secret-value",
        "GEMINI_API_KEY": "gemini-secret-value",
        "GITHUB_TOKEN": "ghp_secret_value",
        "ERRANDS_HOME": str(tmp_path / "errands-home"),
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    real_home = os.environ.get("HOME", str(Path.home()))

    result = plain(tmp_path).run("env", timeout=30)

    env = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
    for name, value in secrets.items():
        assert name not in env
        assert value not in result.output
    assert env["HOME"] != real_home
    assert "PATH" in env


def test_non_utf8_output_is_decoded_with_replacement(sandbox: PlainSandbox, tmp_path: Path) -> None:
    result = sandbox.run(r"printf 'caf\xe9 ok\n'", timeout=30)
    assert result.output == "caf\ufffd ok\n"


def test_a_missing_working_directory_is_a_command_error(tmp_path: Path) -> None:
    from errands.errors import CommandError

    with pytest.raises(CommandError, match="Cannot start"):
        plain(tmp_path / "missing").run("true", timeout=30)


def test_a_long_command_reports_its_output_while_it_runs(sandbox: PlainSandbox) -> None:
    seen: list[tuple[float, str]] = []

    result = sandbox.run(
        "for i in 1 2 3 4 5 6; do echo step $i; sleep 1; done",
        timeout=60,
        on_output=lambda tail: seen.append((time.monotonic(), tail)),
    )

    assert result.ok and "step 6" in result.output
    # Reports came during the run (not only at its end), each the tail so far.
    assert 1 <= len(seen) <= 4
    assert "step 1" in seen[0][1]
    assert "step 6" not in seen[0][1]


def test_a_failing_output_listener_never_breaks_the_command(sandbox: PlainSandbox) -> None:
    def broken(tail: str) -> None:
        raise RuntimeError("event store down")

    result = sandbox.run("echo a; sleep 2.5; echo b", timeout=60, on_output=broken)
    assert result.ok and result.output.split() == ["a", "b"]


def test_a_quiet_command_reports_nothing(sandbox: PlainSandbox) -> None:
    seen: list[str] = []
    assert sandbox.run("sleep 2.5", timeout=60, on_output=seen.append).ok
    assert seen == []


def test_every_line_reaches_on_line_in_order_even_past_the_output_cap(tmp_path: Path) -> None:
    sandbox = plain(tmp_path, output_chars=1000)
    lines: list[str] = []
    result = sandbox.run(
        "for i in $(seq 1 2000); do echo line-$i; done; printf last",
        timeout=30,
        on_line=lines.append,
    )
    assert result.ok and result.truncated  # the kept output is capped...
    assert lines == [f"line-{i}" for i in range(1, 2001)] + ["last"]  # ...the lines are not


def test_a_line_without_end_is_cut_for_on_line(tmp_path: Path) -> None:
    """A hostile command printing one endless line must not grow the worker's memory: the
    line handed to on_line is cut at MAX_LINE_BYTES and says how much was dropped."""
    sandbox = plain(tmp_path, output_chars=1000)
    lines: list[str] = []
    size = 3 * MAX_LINE_BYTES + 17
    result = sandbox.run(
        f"head -c {size} /dev/zero | tr '\\0' x; echo; echo after", timeout=60, on_line=lines.append
    )
    assert result.ok
    cut, after = lines
    assert cut == "x" * MAX_LINE_BYTES + LINE_CUT_MARKER.format(size - MAX_LINE_BYTES)
    assert after == "after"


def test_a_flood_of_lines_waits_for_a_slow_listener(tmp_path: Path) -> None:
    """Lines come faster than the listener takes them: the command waits on its pipe rather
    than the worker holding its whole output, and every line still arrives, in order."""
    sandbox = plain(tmp_path, output_chars=1000)
    width = 1000
    count = 3 * MAX_QUEUED_BYTES // width  # far more than the pipe and the queue hold
    lines: list[str] = []
    finished_early: list[bool] = []

    def slow(line: str) -> None:
        lines.append(line)
        if len(lines) == 100:
            time.sleep(1)  # the command gets every chance to run ahead
            # At most a batch, a full queue and a pipe's worth ahead of the listener.
            finished_early.append((tmp_path / "finished").exists())

    result = sandbox.run(
        f"seq -w 1 {count} | sed 's/$/ {'x' * (width - 7)}/'; touch finished",
        timeout=60,
        on_line=slow,
    )
    assert result.ok
    assert [int(line.split()[0]) for line in lines] == list(range(1, count + 1))
    assert finished_early == [False]
