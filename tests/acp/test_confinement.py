"""A hostile ACP agent asks Errands for what it must not have: files outside the workspace,
through traversal, absolute paths and symlinks; the repository's git data; a FIFO to hang us;
commands outside the sandbox. Each request is refused with an error the agent can read, the
refusal is recorded, and nothing outside the workspace is read or written."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from errands.acp import AcpAgentError, FileRefused, WorkspaceFiles
from errands.errors import Cancelled
from tests.acp.conftest import Hostile, open_hostile
from tests.sandbox.conftest import SSH_KEY, Host, requires_bwrap

pytestmark = requires_bwrap


def read(path: str) -> tuple[str, dict[str, object]]:
    return ("fs/read_text_file", {"path": path})


def write(path: str, content: str) -> tuple[str, dict[str, object]]:
    return ("fs/write_text_file", {"path": path, "content": content})


def test_files_inside_the_workspace_are_read_and_written(host: Host, hostile: Hostile) -> None:
    (host.workspace / "a.txt").write_text("one\ntwo\nthree\n")
    ws = host.workspace

    answers = hostile.ask(
        read(f"{ws}/a.txt"),
        ("fs/read_text_file", {"path": f"{ws}/a.txt", "line": 2, "limit": 1}),
        write(f"{ws}/pkg/new.py", "x = 1\n"),
        read(f"{ws}/missing.txt"),
    )

    assert answers[0] == {"result": {"content": "one\ntwo\nthree\n"}}
    assert answers[1] == {"result": {"content": "two\n"}}
    assert "result" in answers[2]
    assert (ws / "pkg" / "new.py").read_text() == "x = 1\n"
    # A new file reads as empty, as in Zed: agents create files by reading them first.
    assert answers[3] == {"result": {"content": ""}}
    assert [e.kind for e in hostile.events].count("agent.file_written") == 1


def test_paths_outside_the_workspace_are_refused(host: Host, hostile: Hostile) -> None:
    secret = host.outside / "secret.txt"
    secret.write_text("outside-secret")
    ws = host.workspace

    answers = hostile.ask(
        read("/etc/shadow"),
        read(f"{ws}/../../../../outside/secret.txt"),
        read(str(secret)),
        read(str(host.home / ".ssh" / "id_rsa")),
        read(str(host.other_workspace / "notes.txt")),
        write(str(host.outside / "planted.txt"), "planted"),
        write(f"{ws}/../task-1/notes.txt", "overwritten"),
    )

    for answer in answers:
        assert "error" in answer, answer
        assert "outside the workspace" in str(answer["error"])
    assert not (host.outside / "planted.txt").exists()
    assert (host.other_workspace / "notes.txt").read_text().startswith("another task")
    text = str(answers)
    assert "outside-secret" not in text and SSH_KEY.strip() not in text
    refused = [e for e in hostile.events if e.kind == "agent.refused"]
    assert len(refused) == len(answers)


def test_symlinks_leading_out_are_not_followed(host: Host, hostile: Hostile) -> None:
    secret = host.outside / "secret.txt"
    secret.write_text("outside-secret")
    ws = host.workspace
    (ws / "link.txt").symlink_to(secret)
    (ws / "linkdir").symlink_to(host.outside)
    (ws / "sshlink").symlink_to(host.home / ".ssh" / "id_rsa")

    answers = hostile.ask(
        read(f"{ws}/link.txt"),
        read(f"{ws}/linkdir/secret.txt"),
        read(f"{ws}/sshlink"),
        write(f"{ws}/link.txt", "overwritten"),
        write(f"{ws}/linkdir/planted.txt", "planted"),
    )

    assert all("error" in answer for answer in answers), answers
    assert secret.read_text() == "outside-secret"
    assert not (host.outside / "planted.txt").exists()


def test_a_link_swapped_in_after_the_check_is_not_followed(host: Host) -> None:
    """The race: the agent replaces a checked directory with a symlink before we open."""
    ws = host.workspace
    (ws / "dir").mkdir()

    class Racing(WorkspaceFiles):
        def relative(self, path: str) -> object:  # type: ignore[override]
            checked = super().relative(path)
            (ws / "dir").rmdir()
            (ws / "dir").symlink_to(host.outside)
            return checked

    with pytest.raises(FileRefused, match="changed into a link"):
        Racing(ws).write(f"{ws}/dir/planted.txt", "planted")
    assert not (host.outside / "planted.txt").exists()


def test_git_data_fifos_and_directories_are_refused(host: Host, hostile: Hostile) -> None:
    ws = host.workspace
    (ws / ".git").mkdir()
    (ws / ".git" / "config").write_text("[core]\n")
    os.mkfifo(ws / "pipe")
    (ws / "sub").mkdir()

    answers = hostile.ask(
        write(f"{ws}/.git/config", "[core]\n\tfsmonitor = /tmp/evil\n"),
        write(f"{ws}/vendor/.git/HEAD", "ref: x"),
        read(f"{ws}/pipe"),  # would block a plain open() forever
        write(f"{ws}/pipe", "x"),
        read(f"{ws}/sub"),
        read(""),
    )

    assert all("error" in answer for answer in answers), answers
    assert (ws / ".git" / "config").read_text() == "[core]\n"
    assert not (ws / "vendor").exists()


def test_terminals_run_in_the_work_sandbox(host: Host, hostile: Hostile) -> None:
    ws = host.workspace
    (ws / "sub").mkdir()
    created = hostile.ask(
        (
            "terminal/create",
            {
                "command": "id -u; pwd; cat ~/.ssh/id_rsa /etc/shadow; echo $GREETING",
                "cwd": f"{ws}/sub",
                "env": [{"name": "GREETING", "value": "hi there"}],
            },
        ),
        ("terminal/create", {"command": "true", "cwd": str(host.outside)}),
        ("terminal/create", {"command": "echo", "args": ["a b", "$HOME"]}),
    )
    first = created[0]["result"]["terminalId"]
    third = created[2]["result"]["terminalId"]
    assert "outside the workspace" in str(created[1]["error"])

    waited = hostile.ask(
        ("terminal/wait_for_exit", {"terminalId": first}),
        ("terminal/output", {"terminalId": first}),
        ("terminal/wait_for_exit", {"terminalId": third}),
        ("terminal/output", {"terminalId": third}),
        ("terminal/release", {"terminalId": first}),
        ("terminal/output", {"terminalId": first}),
    )

    output = waited[1]["result"]["output"]
    assert output.splitlines()[:2] == ["1000", str(ws / "sub")]
    assert "hi there" in output
    assert "PRIVATE KEY" not in output
    assert waited[0]["result"]["exitCode"] == 0
    assert waited[3]["result"]["output"] == "a b $HOME\n"
    assert "error" in waited[5]  # released: gone


def test_a_running_terminal_is_killed(host: Host, hostile: Hostile) -> None:
    created = hostile.ask(("terminal/create", {"command": "sleep 600"}))
    terminal = created[0]["result"]["terminalId"]

    answers = hostile.ask(
        ("terminal/output", {"terminalId": terminal}),
        ("terminal/kill", {"terminalId": terminal}),
        ("terminal/wait_for_exit", {"terminalId": terminal}),
    )

    assert "exitStatus" not in answers[0]["result"]
    assert answers[2]["result"] == {"signal": "SIGKILL"}


def test_permissions_follow_the_policy(host: Host) -> None:
    options = [
        {"optionId": "yes", "name": "Allow", "kind": "allow_once"},
        {"optionId": "always", "name": "Always", "kind": "allow_always"},
        {"optionId": "no", "name": "Reject", "kind": "reject_once"},
    ]

    def ask(kind: str) -> tuple[str, dict[str, object]]:
        return (
            "session/request_permission",
            {
                "toolCall": {"toolCallId": "t1", "title": f"a {kind}", "kind": kind},
                "options": options,
            },
        )

    allowing = open_hostile(host)
    try:
        answers = Hostile(allowing).ask(ask("edit"), ask("execute"))
    finally:
        allowing.close()
    read_only = open_hostile(host, permissions="read-only")
    try:
        refused = Hostile(read_only).ask(ask("edit"), ask("read"))
    finally:
        read_only.close()

    chosen = [a["result"]["outcome"]["optionId"] for a in [*answers, *refused]]
    assert chosen == ["yes", "yes", "no", "yes"]


def test_the_agent_sees_no_secret_and_gets_the_mcp_servers(hostile: Hostile) -> None:
    seen = hostile.prompt("env")

    assert seen["env"]["HOME"] == "/tmp/home"
    assert set(seen["env"]) <= {
        "PATH", "LANG", "HOME", "TMPDIR", "PYTHONDONTWRITEBYTECODE", "GIT_TERMINAL_PROMPT",
        "CI", "PWD", "SHLVL", "_", "LC_CTYPE",
    }  # fmt: skip
    assert seen["mcp"] == [
        {"name": "files", "command": "mcp-server-filesystem", "args": ["."],
         "env": [{"name": "A", "value": "1"}]}
    ]  # fmt: skip


def test_host_secrets_in_the_worker_environment_stay_out(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-key-never-inside")
    session = open_hostile(host)
    try:
        seen = Hostile(session).prompt("env")
        assert session.process is not None
        host_env = Path(f"/proc/{session.process.process.pid}/environ").read_bytes()
    finally:
        session.close()

    assert "sk-real-key-never-inside" not in str(seen)
    assert host_env == b""  # bwrap itself (pid 1 inside) gets no environment at all


def test_a_cancelled_job_cancels_the_turn(host: Host, hostile: Hostile) -> None:
    started = time.monotonic()

    def check() -> None:
        if time.monotonic() - started > 0.5:
            raise Cancelled("Task cancelled")

    with pytest.raises(Cancelled):
        hostile.session.prompt("wait", on_event=hostile.events.append, check=check, timeout=60)

    assert (host.workspace / "cancelled.txt").read_text() == "cancelled"  # it got session/cancel
    assert time.monotonic() - started < 10


def test_an_agent_that_dies_fails_the_turn_with_its_last_words(hostile: Hostile) -> None:
    with pytest.raises(AcpAgentError, match=r"(exited|broke the connection).*giving up"):
        hostile.prompt("die")
