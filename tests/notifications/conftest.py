"""A store with an organization of two people and a task, a webhook receiver on loopback,
and a way to make the task say something (a state change, recorded as every stage does)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from errands import runtime
from errands.accounts import service
from errands.domain import TaskState
from errands.settings import Settings
from errands.store import Database, Membership, Project, Task
from errands.store import events as event_log
from tests.support import settings_for

PASSWORD = "correct horse battery"


@dataclass
class Receiver:
    """A webhook endpoint on loopback: answers each request with the next status of
    ``statuses`` (then 200), and keeps what it got."""

    port: int
    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: recompute the signature over ``timestamp.body``."""
    signed = headers["x-errands-timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-errands-signature-256"])


@dataclass
class Team:
    settings: Settings
    db: Database
    owner_id: int
    member_id: int
    viewer_id: int
    task_id: int

    def say(self, state: TaskState, reason: str = "") -> None:
        """The task arrives in ``state``: one transaction, as a stage would write it."""
        with self.db.session() as session:
            task = session.get_one(Task, self.task_id)
            task.state = state
            if state is TaskState.FAILED:
                task.failure_reason = reason
            event_log.record(
                session,
                "task.state",
                f"Task is {state}",
                task_id=task.id,
                project_id=task.project_id,
                data={"state": state},
            )


def make_team(home: Path, sample_repo: Path, **overrides: Any) -> Team:
    chosen: dict[str, Any] = {
        "notify_coalesce_seconds": 0,
        "notify_retry_delay": 0.05,
        "public_url": "https://errands.example.test",
        **overrides,
    }
    settings = settings_for(home, "http://127.0.0.1:9/v1", **chosen)
    db = runtime.open_database(settings)
    with db.session() as session:
        owner, org_id = service.sign_up(
            session, email="owner@example.test", password=PASSWORD, org_name="Alpha"
        )
        session.flush()
        people = []
        for email, role in (("member@example.test", "member"), ("viewer@example.test", "viewer")):
            code = service.invite(
                session, service.Principal("session", owner.id, owner.email, org_id), email, role
            )
            person, _ = service.sign_up(session, email=email, password=PASSWORD, invite_code=code)
            people.append(person.id)
        project = Project(name="calc", origin=str(sample_repo), base_branch="main", org_id=org_id)
        session.add(project)
        session.flush()
        task = Task(
            project_id=project.id,
            title="Add <multiply> & divide",
            state=TaskState.RESEARCHING,
            base_branch="main",
        )
        session.add(task)
        session.flush()
        assert session.get(Membership, (people[1], org_id)) is not None
        return Team(settings, db, owner.id, people[0], people[1], task.id)


@pytest.fixture
def team(home: Path, sample_repo: Path) -> Iterator[Team]:
    made = make_team(home, sample_repo)
    yield made
    made.db.dispose()
