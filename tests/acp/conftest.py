"""An ACP session with the hostile protocol fixture (``hostile_agent.py``) inside bubblewrap,
on a host laid out like a worker's (see tests/sandbox/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from errands.acp import AcpSession, Event, McpServer
from tests.sandbox.conftest import Host, host, requires_bwrap

__all__ = ["HOSTILE", "Hostile", "host", "hostile", "requires_bwrap"]

HOSTILE = Path(__file__).with_name("hostile_agent.py")


class Hostile:
    """Drives the fixture: ``ask`` makes it send the given client requests."""

    def __init__(self, session: AcpSession) -> None:
        self.session = session
        self.events: list[Event] = []

    def prompt(self, text: str) -> Any:
        outcome = self.session.prompt(
            text, on_event=self.events.append, check=lambda: None, timeout=60
        )
        return json.loads(outcome.text)

    def ask(self, *steps: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = self.prompt(
            json.dumps([{"method": method, "params": params} for method, params in steps])
        )
        return answers


def open_hostile(host: Host, **options: Any) -> AcpSession:
    fixture = HOSTILE.parent.resolve()
    session = AcpSession(
        name="hostile",
        command=f"/usr/bin/python3 {HOSTILE.resolve()}",
        workspace=host.workspace,
        agent_sandbox=host.sandbox(readable=(host.root, fixture)),
        work_sandbox=host.sandbox(),
        command_timeout=30,
        **options,
    )
    session.start()
    return session


@pytest.fixture
def hostile(host: Host) -> Iterator[Hostile]:
    session = open_hostile(
        host, mcp_servers=[McpServer("files", "mcp-server-filesystem", (".",), (("A", "1"),))]
    )
    try:
        yield Hostile(session)
    finally:
        session.close()
