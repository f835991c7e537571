"""Setup commands reach the network through the egress proxy, to the project's allowlist
only: a registry on the list answers, another host gets the proxy's refusal (and never sees
a request), and the refusal is in the task's events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from errands.sandbox.bubblewrap import bwrap_problem
from errands.testing.scripted_llm import ScriptedLLM
from tests.conftest import run_git
from tests.support import CalcScript, events_of, running_server, settings_for, to_review

PROBLEM = bwrap_problem()
pytestmark = pytest.mark.skipif(PROBLEM is not None, reason=f"bubblewrap: {PROBLEM}")


class Registry:
    def __init__(self, name: str) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                body = f"{name}: pkg-1.0.tar.gz".encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registries() -> Iterator[tuple[Registry, Registry]]:
    allowed, other = Registry("allowed"), Registry("other")
    yield allowed, other
    allowed.close()
    other.close()


def test_setup_reaches_the_allowed_registry_and_nothing_else(
    home: Path, sample_repo: Path, registries: tuple[Registry, Registry]
) -> None:
    allowed, other = registries
    # The registries stand on loopback, which NO_PROXY would send direct: --noproxy ''.
    (sample_repo / ".errands.toml").write_text(
        f"""
[setup]
commands = [
  "curl -sS --noproxy '' http://{allowed.host}/simple/pkg/",
  "curl -s --noproxy '' -o /dev/null -w 'other=%{{http_code}}' http://{other.host}/; true",
]
network = true
hosts = ["{allowed.host}"]
"""
    )
    run_git(sample_repo, "add", "-A")
    run_git(sample_repo, "commit", "-qm", "Configure setup")
    # Loopback is refused unless the operator allows it: here, the allowed registry only.
    settings = {"egress_private_hosts": [allowed.host]}
    with (
        ScriptedLLM(CalcScript()) as llm,
        running_server(settings_for(home, llm.base_url, **settings)) as url,
    ):
        client = httpx.Client(base_url=url, timeout=30)
        task_id, task = to_review(client, sample_repo)
        effective = client.get(f"/api/projects/{task['project_id']}").json()["effective"]
        events = events_of(client, task_id)

    assert effective["setup_egress"] == "allowlist"
    assert effective["setup_hosts"] == [allowed.host]
    started = [e["message"] for e in events if e["kind"] == "setup.started"]
    assert f"through the egress proxy to {allowed.host}" in started[0]
    first, second = [e["data"] for e in events if e["kind"] == "setup.finished"]
    assert first["exit_code"] == 0 and "allowed: pkg-1.0.tar.gz" in first["output"]
    assert "other=403" in second["output"]
    assert allowed.hits == ["/simple/pkg/"]
    assert other.hits == []
    refused = [e["data"] for e in events if e["kind"] == "egress.refused"]
    assert [r["target"] for r in refused] == [f"GET http://{other.host}/"]
