"""Every route of the OpenAPI schema, walked as an outsider (not signed in), a viewer, and
the owner of another organization: each gets the refusal its level and scope call for, and
an error body that carries nothing of the organization it was refused."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.websockets import WebSocketDisconnect

from errands.accounts.access import READ, SCOPES, Permit, check_routes, permit_of, routes_of
from tests.accounts.conftest import World

# Words that would tell an outsider something about Alpha.
MARKERS = ("alpha", "Secret alpha task", "owner@alpha.test", "viewer@alpha.test")
BODY_METHODS = {"post", "put", "patch"}
# Answers that never end while the task runs: only their refusals are walked.
ENDLESS = {"/api/tasks/{task_id}/events/stream"}


def permits(app: FastAPI) -> dict[tuple[str, str], Permit]:
    found = {}
    for route in routes_of(app):
        permit = permit_of(route)
        assert permit is not None, f"{route.path} declares no Permit"
        for method in route.methods:
            found[(route.path, method.lower())] = permit
    return found


def fill(path: str, world: World, *, missing: bool = False) -> str:
    values = {
        "task_id": "999999" if missing else str(world.task_id),
        "project": "no-such-project" if missing else world.project,
        "ref": world.project,
        "comment_id": "1",
        "number": "1",  # an issue number of the (scoped) project's repository
        "token_id": str(world.owner_token_id),
        "user_id": str(world.owner_id),
        "name": "openai_api_key",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def call(world: World, method: str, path: str, token: str | None) -> Any:
    client = world.client()
    headers = world.bearer(token) if token else {}
    body: dict[str, Any] | None = {} if method in BODY_METHODS else None
    return client.request(method.upper(), path, headers=headers, json=body)


def assert_no_data(response: Any, where: str, *, echo: str = "") -> None:
    """An error and nothing else; ``echo`` is what the caller itself sent (a name in the
    path), which the message may repeat."""
    body = response.json()
    assert set(body) == {"error"}, f"{where}: {body}"
    assert set(body["error"]) <= {"code", "message"}, f"{where}: {body}"
    text = response.text.replace(f"'{echo}'", "") if echo else response.text
    for marker in MARKERS:
        assert marker not in text, f"{where} leaks {marker!r}: {response.text}"


def test_every_route_refuses_outsiders_viewers_and_other_organizations(world: World) -> None:
    schema = world.app.openapi()
    table = permits(world.app)
    walked = 0
    for path, operations in schema["paths"].items():
        for method in operations:
            permit = table[(path, method)]
            url = fill(path, world)
            where = f"{method.upper()} {path}"
            walked += 1

            anonymous = call(world, method, url, None)
            if permit.level != "public":
                assert anonymous.status_code == 401, f"{where} as nobody: {anonymous.text}"
                assert_no_data(anonymous, where)

            if permit.level in ("act", "admin") or path not in ENDLESS:
                viewer = call(world, method, url, world.viewer_token)
            if permit.level in ("act", "admin"):
                assert viewer.status_code == 403, f"{where} as viewer: {viewer.text}"
                assert_no_data(viewer, where)
            elif path not in ENDLESS:
                assert viewer.status_code not in (401, 403), f"{where} as viewer: {viewer.text}"

            if permit.level == "public":
                continue
            outsider = call(world, method, url, world.outsider_token)
            scoped = [p for p in re.findall(r"\{(\w+)\}", path) if p in SCOPES]
            if scoped:
                # Refused exactly like an object that does not exist: nothing leaks.
                nowhere = call(world, method, fill(path, world, missing=True), world.outsider_token)
                assert outsider.status_code == 404, f"{where} from Beta: {outsider.text}"
                assert_no_data(outsider, where, echo=world.project)
                expected = nowhere.text.replace("999999", str(world.task_id)).replace(
                    "no-such-project", world.project
                )
                assert outsider.text == expected
            elif re.search(r"\{(token_id|user_id)\}", path):
                # Looked up by the handler within Beta: not found (or the empty body is
                # refused first, which says nothing either).
                assert outsider.status_code in (404, 422), f"{where} from Beta: {outsider.text}"
                for marker in MARKERS:
                    assert marker not in outsider.text, f"{where} leaks {marker!r} to Beta"
            else:
                for marker in MARKERS:
                    assert marker not in outsider.text, f"{where} leaks {marker!r} to Beta"
    assert walked == sum(len(ops) for ops in schema["paths"].values()) > 50


def test_pages_and_the_chat_socket_refuse_outsiders(world: World) -> None:
    client = world.client()
    routes = routes_of(world.app)
    for route in routes:
        permit = permit_of(route)
        public = permit is not None and permit.level == "public"  # sign-in and sign-up
        if not route.in_schema and "GET" in route.methods and not public:
            url = fill(route.path, world)
            page = client.get(url, headers={"Accept": "application/json"})
            assert page.status_code == 401, f"{route.path}: {page.status_code}"
            assert_no_data(page, route.path)
            browser = client.get(url, headers={"Accept": "text/html"}, follow_redirects=False)
            assert browser.status_code == 303
            assert browser.headers["location"].startswith("/login?next=")
            other = client.get(url, headers={**world.bearer(world.outsider_token)})
            if any(p in route.path for p in ("{task_id}", "{ref}")):
                assert other.status_code == 404, route.path
                assert "Secret alpha task" not in other.text
    sockets = [r for r in routes if r.websocket]
    assert sockets
    for route in sockets:
        url = fill(route.path, world)
        for headers in ({}, world.bearer(world.outsider_token), world.bearer(world.viewer_token)):
            with (
                pytest.raises(WebSocketDisconnect) as refused,
                client.websocket_connect(url, headers=headers),
            ):
                pass
            assert refused.value.code == 1008, (url, refused.value.reason)


def test_lists_show_only_the_callers_organization(world: World) -> None:
    client = world.client()
    beta = world.bearer(world.outsider_token)
    assert client.get("/api/projects", headers=beta).json() == []
    assert client.get("/api/tasks", headers=beta).json() == []
    assert client.get("/api/tasks?project=alpha", headers=beta).status_code == 404
    assert client.get("/", headers={**beta, "Accept": "application/json"}).json() == []
    viewer = world.bearer(world.viewer_token)
    assert [p["name"] for p in client.get("/api/projects", headers=viewer).json()] == ["alpha"]


def test_a_route_without_a_permit_stops_the_app(world: World) -> None:
    app = world.app

    @app.get("/api/forgotten")
    def forgotten() -> dict[str, str]:
        return {"secret": "everything"}

    with pytest.raises(RuntimeError, match="/api/forgotten declares no Permit"):
        check_routes(app)

    app.router.routes.pop()

    @app.get(
        "/api/things/{thing_id}",
        dependencies=[READ],
    )
    def unscoped(thing_id: int) -> dict[str, int]:
        return {"thing": thing_id}

    with pytest.raises(RuntimeError, match="'thing_id' is scoped by nothing"):
        check_routes(app)
    app.router.routes.pop()
    check_routes(app)


def test_cookie_sessions_need_the_csrf_token_for_changes(world: World) -> None:
    owner = world.owner
    refused = owner.post(f"/tasks/{world.task_id}/cancel", data={})
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]
    json_without = owner.post("/api/tokens", json={"name": "x"})
    assert json_without.status_code == 403
    accepted = owner.post(
        f"/tasks/{world.task_id}/cancel",
        data={"csrf_token": world.owner_csrf},
        follow_redirects=False,
    )
    assert accepted.status_code == 303, accepted.text
    # A browser's same-origin fetch carries an Origin (BrowserGuard checked it): enough.
    with_origin = owner.post(
        "/api/tokens", json={"name": "y"}, headers={"Origin": "http://127.0.0.1"}
    )
    assert with_origin.status_code == 201


def test_logout_everywhere_ends_every_session(world: World) -> None:
    other = world.client()
    login = other.post(
        "/api/auth/login", json={"email": "owner@alpha.test", "password": "correct horse battery"}
    )
    assert login.status_code == 200, login.text
    assert other.get("/api/me").status_code == 200
    done = world.owner.post(
        "/api/auth/logout-everywhere", headers={"X-CSRF-Token": world.owner_csrf}
    )
    assert done.status_code == 200
    assert other.get("/api/me").status_code == 401
    assert world.owner.get("/api/me").status_code == 401
    # API tokens are not sessions: automation keeps working until the token is revoked.
    assert other.get("/api/me", headers=world.bearer(world.owner_token)).status_code == 200


def test_tokens_are_hashed_shown_once_revocable_and_record_last_use(world: World) -> None:
    client = world.client()
    owner = world.bearer(world.owner_token)
    assert client.get("/api/me", headers=owner).json()["email"] == "owner@alpha.test"
    listed = client.get("/api/tokens", headers=owner).json()
    mine = next(t for t in listed if t["id"] == world.owner_token_id)
    assert "token" not in mine and mine["last_used_at"] is not None
    assert world.owner_token.startswith(mine["prefix"])
    with world.app.state.db.session() as session:
        from errands.store import ApiToken

        stored = session.get_one(ApiToken, world.owner_token_id)
        assert world.owner_token not in stored.token_hash
    revoked = client.delete(f"/api/tokens/{world.owner_token_id}", headers=owner)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert client.get("/api/me", headers=owner).status_code == 401
