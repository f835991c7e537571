"""Escape attempts against the bubblewrap backend, each as the agent would make it: a shell
command. Every attempt must fail or be cut off, and ``run`` must return normally with a
result the agent can be shown (never raise)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from errands.sandbox import CommandResult, Limits
from errands.sandbox.limits import process_limit_holds
from tests.sandbox.conftest import DB_SECRET, OTHER_SECRET, SSH_KEY, Host, requires_bwrap, survivors

pytestmark = requires_bwrap


def run(host: Host, command: str, *, timeout: float = 30, **policy: object) -> CommandResult:
    result = host.sandbox(**policy).run(command, timeout=timeout)
    assert isinstance(result, CommandResult)
    return result


def test_the_home_directory_and_its_ssh_key_are_invisible(host: Host) -> None:
    key = host.home / ".ssh" / "id_rsa"

    read = run(host, f"cat {key}")
    hidden_home = run(host, f"ls -A {host.home}")
    own_home = run(host, "ls -A ~; cat ~/.ssh/id_rsa")
    real_home = run(host, f"ls -A {Path.home()}")

    assert read.exit_code == 1
    assert "No such file" in read.output
    assert "FAKE-KEY" not in read.output
    # The hidden home is an empty, read-only directory; the sandbox's own HOME is empty; of
    # the worker's real home only the toolchains granted (pyenv here) show.
    assert hidden_home.ok
    assert hidden_home.output == ""
    assert own_home.output.startswith("cat: ")
    assert ".ssh" not in real_home.output.split()
    assert key.read_text() == SSH_KEY


def test_the_errands_database_and_other_workspaces_are_invisible(host: Host) -> None:
    db = run(host, f"cat {host.data}/errands.db")
    other = run(host, f"cat {host.other_workspace}/notes.txt")
    data_dir = run(host, f"ls -A {host.data} {host.data}/workspaces")
    grep = run(host, f"grep -r secret {host.root}")

    assert db.exit_code == other.exit_code == 1
    for result in (db, other, grep):
        assert "task-secret-row" not in result.output
        assert "other-secret" not in result.output
    # Our own workspace shows through the hidden data directory; nothing else of it does.
    assert data_dir.output.split() == [
        f"{host.data}:",
        "workspaces",
        f"{host.data}/workspaces:",
        "task-2",
    ]
    assert (host.data / "errands.db").read_text() == DB_SECRET
    assert (host.other_workspace / "notes.txt").read_text() == OTHER_SECRET


def test_no_secret_from_the_worker_environment_reaches_the_command(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "OPENAI_API_KEY": "sk-secret-openai-1234",
        "GITHUB_TOKEN": "ghp_secret_github_5678",
        "ERRANDS_ANTHROPIC_API_KEY": "sk-ant-secret-9012",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)

    result = run(
        host,
        "cat /proc/1/environ; echo; cat /proc/*/environ; echo; cat /proc/1/cmdline; echo; "
        "echo ENV-START; env; echo ENV-END; ls /proc",
    )

    for value in secrets.values():
        assert value not in result.output
    env_text = result.output.split("ENV-START\n", 1)[1].split("ENV-END", 1)[0]
    names = {line.split("=", 1)[0] for line in env_text.splitlines() if "=" in line}
    granted = {"PATH", "LANG"}  # the policy's allowlist in these tests
    own = {"HOME", "TMPDIR", "PYTHONDONTWRITEBYTECODE", "GIT_TERMINAL_PROMPT", "CI"}
    assert names == granted | own | {"PWD", "SHLVL", "_"}  # the last three: bash's and env's
    # Its own pid namespace: a handful of processes, and none of the host's.
    pids = [line for line in result.output.splitlines() if line.isdigit()]
    assert 0 < len(pids) < 10


def test_bwrap_itself_shows_no_environment_inside(host: Host) -> None:
    """bwrap is the pid namespace's init, so the command can read its environment: it gets
    none, not even what the shell that starts it under its limits would add (PWD, SHLVL)."""
    result = run(host, "tr '\\0' '\\n' < /proc/1/environ; echo END")
    assert result.output == "END\n"


def test_writes_outside_the_workspace_fail(host: Host) -> None:
    targets = [
        host.outside / "file",  # in no policy
        host.root / "planted",  # readable, so read-only
        host.home / "planted",  # hidden
        host.other_workspace / "planted",
        Path("/usr/planted"),
        Path("/etc/planted"),
        Path.home() / "planted",
    ]
    script = "; ".join(f"echo x > {target}" for target in targets)

    result = run(host, f"{script}; echo done")

    assert result.exit_code == 0
    assert result.output.count("Read-only file system") + result.output.count("No such file") == (
        len(targets)
    ), result.output
    for target in targets:
        assert not target.exists(), target


def test_a_symlink_planted_in_the_workspace_cannot_reach_a_host_file(host: Host) -> None:
    invisible = host.outside / "victim.txt"
    read_only = host.root / "victim.txt"
    for victim in (invisible, read_only):
        victim.write_text("original\n")

    result = run(
        host,
        f"ln -s {invisible} link1; ln -s {read_only} link2; ln -s /etc/passwd link3; "
        "echo pwned > link1; echo pwned > link2; echo pwned >> link3; echo done",
    )

    assert result.exit_code == 0
    assert invisible.read_text() == "original\n"
    assert read_only.read_text() == "original\n"
    assert "pwned" not in Path("/etc/passwd").read_text()


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 - shared by the handler instances of one server

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = b"hello-from-the-host\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def loopback_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (_Counter,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", hits
    finally:
        server.shutdown()
        server.server_close()


def test_the_network_is_off(host: Host, loopback_server: tuple[str, list[str]]) -> None:
    url, hits = loopback_server
    fetch = f"import urllib.request; print(urllib.request.urlopen('{url}', timeout=3).read())"

    result = run(
        host,
        f'curl -sS --max-time 3 {url}; echo curl=$?; python3 -c "{fetch}"; echo py=$?; '
        "getent hosts example.com; echo getent=$?; "
        "python3 -c \"import socket; print(socket.gethostbyname('example.com'))\"; echo dns=$?",
    )

    assert "hello-from-the-host" not in result.output
    assert hits == []
    assert "curl=7" in result.output  # connection refused: a loopback of its own, empty
    assert "py=1" in result.output
    assert "getent=2" in result.output  # not found
    assert "dns=1" in result.output


def test_network_on_request_is_all_or_nothing(
    host: Host, loopback_server: tuple[str, list[str]]
) -> None:
    """``network=True`` (declared setup commands only) shares the host's network namespace:
    the host's loopback services are reachable too. There is no egress allowlist yet."""
    url, hits = loopback_server

    result = host.sandbox(network=True).run(
        f"curl -sS --max-time 3 {url}", timeout=30, network=True
    )

    assert result.ok, result.output
    assert "hello-from-the-host" in result.output
    assert hits == ["/"]


def test_a_policy_without_network_ignores_a_request_for_it(
    host: Host, loopback_server: tuple[str, list[str]]
) -> None:
    """The policy is the ceiling: the agent's sandbox never gets the network, whatever the
    caller asks."""
    url, hits = loopback_server

    result = host.sandbox().run(f"curl -sS --max-time 3 {url}", timeout=30, network=True)

    assert not result.ok
    assert hits == []


@pytest.mark.skipif(
    not process_limit_holds(), reason="no pids cgroup for a root worker: the bomb would be free"
)
def test_a_fork_bomb_is_held_and_then_killed_entirely(host: Host, marker: str) -> None:
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, len(survivors(marker, wait=0)))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        result = run(
            host,
            f"bomb() {{ bomb | bomb & }}; bomb; sleep {marker}",
            timeout=3,
            limits=Limits(processes=64, output_chars=2000),
        )
    finally:
        done.set()
        watcher.join()

    assert result.timed_out
    assert time.monotonic() - started < 15
    assert 10 < peak <= 64 + 2  # the command's 64, and bwrap with its init
    assert survivors(marker) == []


@pytest.mark.skipif(not process_limit_holds(), reason="no pids cgroup for a root worker")
def test_the_process_limit_refuses_forks_beyond_it(host: Host, marker: str) -> None:
    (host.workspace / "forks.py").write_text(
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 500:\n"
        "        if os.fork() == 0:\n"
        f"            time.sleep({marker})\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except BlockingIOError:\n"
        "    print('refused after', n)\n"
    )

    result = run(host, f"python3 forks.py {marker}", limits=Limits(processes=40))

    assert result.exit_code == 0
    assert "refused after" in result.output, result.output
    refused_after = int(result.output.split("refused after")[1].split()[0])
    assert 10 < refused_after <= 40
    assert survivors(marker) == []  # the children, left running, went with the command


def test_a_gigabyte_of_output_is_capped(host: Host) -> None:
    result = run(
        host,
        r"head -c 1000000000 /dev/zero | tr '\0' x",
        timeout=10,
        limits=Limits(output_chars=10_000),
    )

    assert result.truncated or result.timed_out
    assert len(result.output) <= 10_000 + 100  # the kept head and tail, and the marker


def test_a_command_that_never_ends_is_timed_out_and_gone(host: Host, marker: str) -> None:
    started = time.monotonic()
    result = run(host, f"sleep {marker} & sleep {marker}; wait", timeout=1)

    assert result.timed_out
    assert result.exit_code is None
    assert result.describe().startswith("timed out")
    assert time.monotonic() - started < 5
    assert survivors(marker) == []


def test_cancel_stops_the_command_promptly_and_entirely(host: Host, marker: str) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        result = host.sandbox().run(
            f"(setsid sleep {marker} &); sleep {marker}", timeout=60, cancel=cancel
        )
    finally:
        timer.cancel()

    assert result.cancelled
    assert result.exit_code is None
    assert time.monotonic() - started < 3
    assert survivors(marker) == []


def test_a_file_larger_than_the_limit_cannot_be_written(host: Host) -> None:
    result = run(
        host,
        "head -c 3000000 /dev/zero > big; echo exit=$?",
        limits=Limits(file_bytes=1024**2),
    )

    assert "File size limit exceeded" in result.output
    assert "exit=153" in result.output  # 128 + SIGXFSZ
    assert (host.workspace / "big").stat().st_size <= 1024**2


def test_cpu_time_and_memory_are_limited(host: Host) -> None:
    limits = Limits(cpu_seconds=1, memory_bytes=512 * 1024**2)
    started = time.monotonic()

    spin = run(host, "python3 -c 'while True: pass'", timeout=30, limits=limits)
    hog = run(host, "python3 -c 'b = bytearray(1024**3)'", timeout=30, limits=limits)

    assert spin.exit_code == 128 + 24  # SIGXCPU
    assert time.monotonic() - started < 10
    assert hog.exit_code == 1
    assert "MemoryError" in hog.output


def test_no_privileges_inside(host: Host) -> None:
    result = run(
        host,
        "id -u; grep CapEff /proc/self/status; unshare -U true || echo no-userns; "
        "ls /var/run/docker.sock /run/podman /run/user /var/run 2>&1 | grep -c 'No such'",
    )

    lines = result.output.splitlines()
    assert lines[0] == "1000"
    assert lines[1].split() == ["CapEff:", "0000000000000000"]
    assert "no-userns" in result.output
    assert lines[-1] == "4"  # no container engine socket, no /run at all


def test_owner_only_files_in_etc_are_masked(host: Host) -> None:
    """Inside the user namespace a root worker's files belong to the sandbox user, so
    /etc/shadow would be readable if it were not masked."""
    result = run(host, "cat /etc/shadow; ls -A /etc/ssl/private /etc/ssh; echo done")

    assert "root:" not in result.output
    assert result.output.strip().endswith("done")
    assert "Permission denied" in result.output or "No such file" in result.output
