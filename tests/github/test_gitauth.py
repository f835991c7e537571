"""The token reaches git's HTTP requests, and nowhere else: not argv, not .git/config, not the
remote URL, not an error message."""

from __future__ import annotations

import base64
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from errands.errors import GitError
from errands.git import Mirror
from errands.github.errors import GitHubNotConfigured
from errands.github.gitauth import git_auth_env

TOKEN = "ghs_testtoken0123456789abcdef"


class Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []  # noqa: RUF012 - shared by the handler instances

    def do_GET(self) -> None:
        Recorder.seen.append({"path": self.path, **dict(self.headers.items())})
        self.send_response(404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def git_server() -> Iterator[str]:
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/acme/calc.git"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def argv_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every git command line Errands runs, logged by a shim in front of the real git."""
    real = shutil.which("git")
    assert real is not None
    log = tmp_path / "argv.log"
    shim = tmp_path / "bin" / "git"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}:{__import__('os').environ['PATH']}")
    return log


def test_the_token_travels_only_in_the_http_header(
    git_server: str, argv_log: Path, tmp_path: Path
) -> None:
    mirror_dir = tmp_path / "mirror.git"
    with pytest.raises(GitError) as caught:
        Mirror.create(mirror_dir, git_server, auth_env=git_auth_env(git_server, TOKEN))
    # git asked the server with the token as Basic credentials.
    expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert any(h.get("Authorization") == expected for h in Recorder.seen), Recorder.seen
    # ... and it is nowhere else.
    assert TOKEN not in str(caught.value)
    assert argv_log.read_text().strip(), "the shim saw no git command"
    assert TOKEN not in argv_log.read_text()
    assert base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode() not in (
        argv_log.read_text()
    )
    config = (mirror_dir / "config").read_text()
    assert TOKEN not in config
    assert "extraheader" not in config.lower()
    for path in mirror_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_the_header_is_scoped_to_the_repository_host() -> None:
    env = git_auth_env("https://github.example.com:8443/acme/calc.git", TOKEN)
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert env["GIT_CONFIG_KEY_0"] == "http.https://github.example.com:8443/.extraHeader"


@pytest.mark.parametrize(
    "url",
    [
        "http://github.com/acme/calc.git",  # plain HTTP off this machine
        "https://x-access-token:abc@github.com/acme/calc.git",  # credentials in the URL
        "/srv/git/calc.git",
        "git@github.com:acme/calc.git",
    ],
)
def test_tokens_are_never_sent_insecurely(url: str) -> None:
    with pytest.raises(GitHubNotConfigured):
        git_auth_env(url, TOKEN)
