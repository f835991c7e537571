"""Escape attempts through the real agent tool path, with the bubblewrap backend: the agent
tries, the sandbox refuses or cuts it off, the agent is told, the event log has it, and the
job goes on to a reviewed task. Secrets never reach a command, an event, a log or a commit."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from errands.sandbox import bwrap_problem
from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.conftest import run_git
from tests.support import CalcScript, events_of, phase_of, running_server, settings_for, to_review

pytestmark = pytest.mark.skipif(
    bwrap_problem() is not None, reason=f"bubblewrap is not usable here: {bwrap_problem()}"
)

SECRETS = {
    "OPENAI_API_KEY": "sk-worker-secret-openai-0123456789",
    "GITHUB_TOKEN": "ghp_workersecret0123456789abcdef",
    "ANTHROPIC_API_KEY": "sk-ant-worker-secret-0123456789",
    "GOOGLE_API_KEY": "google-worker-secret-0123456789",
}


PY_DNS = "'import socket; print(socket.getaddrinfo(\"example.com\", 80))'"


@pytest.fixture
def loopback_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"reached the host")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture
def canary_in_home() -> Iterator[Path]:
    """A fake private key in the real home of the worker (removed afterwards)."""
    ssh = Path.home() / ".ssh"
    created_dir = not ssh.exists()
    ssh.mkdir(mode=0o700, exist_ok=True)
    canary = ssh / "errands-test-id_rsa"
    canary.write_text("-----BEGIN FAKE KEY----- canary-7f3a -----END FAKE KEY-----\n")
    yield canary
    canary.unlink()
    if created_dir:
        ssh.rmdir()


class EscapeScript(CalcScript):
    """Subtask 1 first tries every escape in turn, then does its real work."""

    def __init__(self, attempts: list[dict[str, Any]]) -> None:
        super().__init__()
        self.attempts = attempts

    def __call__(self, req: ChatRequest) -> Reply:
        if phase_of(req) == "execute" and "subtask 1 of 2" in req.user:
            if req.n_assistant < len(self.attempts):
                return Reply.call("run_command", **self.attempts[req.n_assistant])
            req.n_assistant -= len(self.attempts)
        return super().__call__(req)


def test_escapes_fail_and_the_job_goes_on(
    home: Path,
    sample_repo: Path,
    loopback_server: str,
    canary_in_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    host_target = sample_repo.parent / "host-file.txt"
    host_target.write_text("original\n")
    (sample_repo / "innocent-link").symlink_to(host_target)
    (sample_repo / ".errands.toml").write_text("[limits]\nprocesses = 64\n")
    run_git(sample_repo, "add", "-A")
    run_git(sample_repo, "commit", "-qm", "A symlink planted in the repository")
    outside = sample_repo.parent / "outside"
    outside.mkdir()
    # Another task's workspace and another project's mirror, in the data directory.
    other_task = home / "workspaces" / "project-1" / "task-99-job-99"
    other_task.mkdir(parents=True)
    (other_task / "notes.txt").write_text("other task's work\n")
    (home / "mirrors" / "project-2.git").mkdir(parents=True)

    attempts: list[dict[str, Any]] = [
        {"command": f"cat {canary_in_home}"},
        {"command": f"cat {home / 'errands.db'} | head -c 100; ls {home}"},
        {"command": f"cat {other_task / 'notes.txt'}; ls {home / 'mirrors'}"},
        {"command": "tr '\\0' '\\n' < /proc/1/environ; ls /proc | grep -c '^[0-9]'"},
        {"command": "env"},
        {"command": f"echo pwned > {outside / 'escaped.txt'}"},
        {"command": "echo pwned > innocent-link"},
        {"command": "echo pwned > /usr/escaped.txt"},
        {"command": f"curl -sS --max-time 5 {loopback_server}"},
        {"command": "getent hosts example.com || python3 -c " + PY_DNS},
        {"command": "ls -la /var/run/docker.sock /run/podman/podman.sock"},
        {"command": "bomb() { bomb | bomb; }; bomb", "timeout_seconds": 10},
        {"command": "head -c 1000000000 /dev/zero | tr '\\0' x", "timeout_seconds": 20},
        {"command": "sleep 1000", "timeout_seconds": 3},
    ]
    script = EscapeScript(attempts)
    with ScriptedLLM(script) as llm:
        settings = settings_for(home, llm.base_url, sandbox="bubblewrap")
        with running_server(settings) as url, caplog.at_level(logging.DEBUG):
            client = httpx.Client(base_url=url, timeout=30)
            task_id, task = to_review(client, sample_repo)
            events = events_of(client, task_id)
            assert llm.script_errors == []

    # The job went on: both subtasks are committed and verified.
    assert [s["state"] for s in task["subtasks"]] == ["committed", "committed"]
    results = [
        e["data"]["content"]
        for e in events
        if e["kind"] == "agent.tool_result" and e["data"]["tool"] == "run_command"
    ]
    assert len(results) >= len(attempts)
    by_attempt = dict(zip((a["command"] for a in attempts), results, strict=False))

    def result(fragment: str) -> str:
        return str(next(v for k, v in by_attempt.items() if fragment in k))

    assert "canary-7f3a" not in result("errands-test-id_rsa")
    assert "No such file" in result("errands-test-id_rsa")
    assert "SQLite" not in result("errands.db") and "No such file" in result("errands.db")
    assert "No such file" in result("task-99-job-99")
    assert "project-2.git" not in result("task-99-job-99")
    environ = result("/proc/1/environ")
    assert not any(secret in environ for secret in SECRETS.values())
    assert int(environ.strip().splitlines()[-1]) < 10  # only the sandbox's own processes
    env = result("env")
    assert not any(name in env for name in SECRETS)
    assert "ERRANDS_" not in env
    assert not (outside / "escaped.txt").exists()
    assert host_target.read_text() == "original\n"
    assert not Path("/usr/escaped.txt").exists()
    assert "reached the host" not in result("curl")
    assert "exit code 0" not in result("getent")
    assert "No such file" in result("docker.sock")
    bomb = result("bomb()")
    assert "timed out" in bomb or "exit code 0" not in bomb
    flood = result("/dev/zero")
    assert "elided" in flood and len(flood) < 60_000
    assert "timed out" in result("sleep 1000")

    # Every attempt is on the record, with its outcome.
    calls = [e for e in events if e["kind"] == "agent.tool_call"]
    assert all(
        any(a["command"] == c["data"]["args"].get("command") for c in calls) for a in attempts
    )

    # Secrets: in no event, no log line, no commit.
    everything = str(events) + caplog.text + run_git(sample_repo, "log", "-p", "--all")
    for secret in SECRETS.values():
        assert secret not in everything
