"""Connections that stay open do not outlive the access they were opened with: the chat
socket checks access again before each message (and closes with 1008, with no model call
made), an event stream every ERRANDS_STREAM_RECHECK_SECONDS (and ends). Through a real
server on loopback, a real WebSocket and a real streaming HTTP response."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM, output_tool_name
from tests.support import running_server, settings_for

PASSWORD = "correct horse battery"


def chat_script(request: ChatRequest) -> Reply:
    return Reply.call(output_tool_name(request), reply="Alpha's secret plan.", requirements=[])


@dataclass
class Team:
    url: str
    llm: ScriptedLLM
    owner: httpx.Client
    owner_csrf: str
    member: httpx.Client  # Alpha's member, signed in with a session cookie
    member_csrf: str
    member_id: int
    member_token: str
    member_token_id: int
    task_id: int

    def as_owner(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.owner.request(method, path, headers={"X-CSRF-Token": self.owner_csrf}, **kwargs)


@pytest.fixture
def team(home: Path, sample_repo: Path) -> Iterator[Team]:
    with ScriptedLLM(chat_script) as llm:
        # No worker: the only model calls are the chat's.
        settings = settings_for(home, llm.base_url, stream_recheck_seconds=0.2)
        with running_server(settings, embedded_worker=False) as url:
            local = httpx.Client(base_url=url, timeout=30)
            added = local.post("/api/projects", json={"origin": str(sample_repo), "name": "a"})
            assert added.status_code == 201, added.text
            task = local.post("/api/tasks", json={"project": "a", "title": "Alpha's task"})
            assert task.status_code == 201, task.text

            owner = httpx.Client(base_url=url, timeout=30)
            me = owner.post("/api/auth/signup", json={"email": "o@a.test", "password": PASSWORD})
            assert me.status_code == 201, me.text
            csrf = me.json()["csrf_token"]
            sent = owner.post(
                "/api/invitations",
                json={"email": "m@a.test", "role": "member"},
                headers={"X-CSRF-Token": csrf},
            )
            code = parse_qs(urlsplit(sent.json()["link"]).query)["code"][0]
            member = httpx.Client(base_url=url, timeout=30)
            joined = member.post(
                "/api/auth/signup",
                json={"email": "m@a.test", "password": PASSWORD, "invite_code": code},
            )
            assert joined.status_code == 201, joined.text
            member_csrf = joined.json()["csrf_token"]
            token = member.post(
                "/api/tokens", json={"name": "cli"}, headers={"X-CSRF-Token": member_csrf}
            ).json()
            yield Team(
                url=url,
                llm=llm,
                owner=owner,
                owner_csrf=csrf,
                member=member,
                member_csrf=member_csrf,
                member_id=joined.json()["id"],
                member_token=token["token"],
                member_token_id=token["id"],
                task_id=task.json()["id"],
            )


def open_chat(team: Team, credentials: dict[str, str]) -> ClientConnection:
    url = team.url.replace("http://", "ws://") + f"/tasks/{team.task_id}/chat"
    return connect(url, origin=Origin(team.url), additional_headers=credentials, open_timeout=10)


def session_of(team: Team) -> dict[str, str]:
    return {"Cookie": f"errands_session={team.member.cookies['errands_session']}"}


def token_of(team: Team) -> dict[str, str]:
    return {"Authorization": f"Bearer {team.member_token}"}


def say(socket: ClientConnection, text: str) -> dict[str, Any]:
    """Send a message; the last thing the server answers to it."""
    socket.send(json.dumps({"text": text}))
    while True:
        answer: dict[str, Any] = json.loads(socket.recv(timeout=60))
        if answer["kind"] != "user":  # the echo of the message
            return answer


def remove_member(team: Team) -> None:
    assert team.as_owner("DELETE", f"/api/members/{team.member_id}").status_code == 204


def make_viewer(team: Team) -> None:
    changed = team.as_owner("PATCH", f"/api/members/{team.member_id}", json={"role": "viewer"})
    assert changed.status_code == 200, changed.text


def sign_out_everywhere(team: Team) -> None:
    ended = team.member.post(
        "/api/auth/logout-everywhere", headers={"X-CSRF-Token": team.member_csrf}
    )
    assert ended.status_code == 200, ended.text


def revoke_token(team: Team) -> None:
    assert team.as_owner("DELETE", f"/api/tokens/{team.member_token_id}").status_code == 200


LOSSES: dict[str, tuple[Callable[[Team], dict[str, str]], Callable[[Team], None]]] = {
    "member removed": (session_of, remove_member),
    "lowered to viewer": (token_of, make_viewer),
    "signed out everywhere": (session_of, sign_out_everywhere),
    "token revoked": (token_of, revoke_token),
}


@pytest.mark.parametrize("loss", list(LOSSES))
def test_the_chat_socket_stops_answering_when_access_ends(team: Team, loss: str) -> None:
    credentials, lose = LOSSES[loss]
    with open_chat(team, credentials(team)) as socket:
        first = say(socket, "What is the plan?")
        assert first["kind"] == "agent" and first["text"] == "Alpha's secret plan."
        assert len(team.llm.requests) == 1

        lose(team)
        refused = say(socket, "And now?")
        assert refused["kind"] == "error"
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert len(team.llm.requests) == 1  # no model call was made for the refused message


def read_stream(response: httpx.Response, on_first_event: Callable[[], None]) -> dict[str, str]:
    """Messages of an event stream until it ends; ``on_first_event`` once one arrived.
    Returns the last message."""
    deadline = time.monotonic() + 120  # a guard against hanging forever, not a measurement
    fields: dict[str, str] = {}
    last: dict[str, str] = {}
    seen = False
    for line in response.iter_lines():
        assert time.monotonic() < deadline, "the stream did not end"
        if line.startswith(":"):
            continue
        if line:
            key, _, value = line.partition(": ")
            fields[key] = value
            continue
        if fields:
            last, fields = fields, {}
            if not seen and "id" in last:
                seen = True
                on_first_event()
    return last


STREAM_LOSSES = {
    "token revoked": (token_of, revoke_token),
    "member removed": (session_of, remove_member),
}


@pytest.mark.parametrize("loss", list(STREAM_LOSSES))
def test_an_event_stream_ends_when_access_ends(team: Team, loss: str) -> None:
    credentials, lose = STREAM_LOSSES[loss]
    with (
        httpx.Client(base_url=team.url, timeout=60) as client,
        client.stream(
            "GET", f"/api/tasks/{team.task_id}/events/stream", headers=credentials(team)
        ) as response,
    ):
        assert response.status_code == 200
        last = read_stream(response, lambda: lose(team))
    # The task is not at rest (no worker runs it): the stream ended for the access alone.
    assert last["event"] == "end"
    assert json.loads(last["data"])["error"]["code"] == "unauthenticated"
