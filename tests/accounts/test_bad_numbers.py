"""Numbers no store can hold and amounts that are not numbers are the caller's mistake: a 4xx
that names the field, never a server error. Ids and counters past 2**63 - 1 make the SQLite
driver raise ``OverflowError``; NaN and infinity are no amount of dollars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from errands.web.app import create_app
from tests.accounts.conftest import World
from tests.support import settings_for

BIG = 2**63  # one past the largest id SQLite and PostgreSQL store
BOUND = str(2**63 - 1)


def _refused(response: Any, field: str) -> None:
    assert response.status_code == 422, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["message"] and BOUND in error["message"], error["message"]


def _api(world: World) -> TestClient:
    client = world.client()
    client.headers.update(world.bearer(world.owner_token))
    return client


LISTED = [
    ("GET", "/api/tasks/{task}/events?after={big}", None, "after"),
    ("GET", "/api/projects/{project}/events?after={big}", None, "after"),
    ("GET", "/api/tasks/{task}/events/stream?after={big}", None, "after"),
    ("POST", "/api/tasks/{task}/comments", {"path": "calc.py", "line": BIG}, "line"),
    ("POST", "/api/tasks/{task}/comments", {"path": "calc.py", "parent_id": BIG}, "parent_id"),
    ("POST", "/api/tasks/{task}/comments", {"path": "calc.py", "end_line": BIG}, "end_line"),
    ("POST", "/api/tasks/{task}/comments/{big}/resolve", {"resolved": True}, "comment_id"),
    ("DELETE", "/api/tokens/{big}", None, "token_id"),
    ("PATCH", "/api/members/{big}", {"role": "member"}, "user_id"),
    ("DELETE", "/api/members/{big}", None, "user_id"),
    ("POST", "/api/me/org", {"org_id": BIG}, "org_id"),
    ("POST", "/api/tasks", {"project": BIG, "title": "Too far"}, "project"),
    ("POST", "/api/tasks/{task}/answers", {"question": BIG}, "question"),
    ("GET", "/api/tasks/{task}/diff?subtask={big}", None, "subtask"),
]


def test_an_integer_past_64_bits_is_refused_by_name(world: World) -> None:
    # One server for every case: the fixture (three sign-ups) is the slow part.
    api = _api(world)
    for method, path, body, field in LISTED:
        url = path.format(task=world.task_id, project=world.project, big=BIG)
        sent = {"line": 1, "body": "Why?", **body} if body and "path" in body else body
        _refused(api.request(method, url, json=sent), field)


def test_a_resumed_event_stream_past_64_bits_is_refused(world: World) -> None:
    # Before: the stream answered 200 and then died on its first poll.
    response = _api(world).get(
        f"/api/tasks/{world.task_id}/events/stream", headers={"Last-Event-ID": str(BIG)}
    )
    _refused(response, "last-event-id")


def test_a_task_id_past_64_bits_is_not_found(world: World) -> None:
    response = _api(world).get(f"/api/tasks/{BIG}")
    assert response.status_code == 404
    assert str(BIG) in response.json()["error"]["message"]


def _put(api: TestClient, path: str, body: dict[str, Any]) -> Any:
    # What Python's json.dumps sends for NaN and infinity (httpx refuses to encode them).
    content = json.dumps(body, allow_nan=True)
    return api.put(path, content=content, headers={"Content-Type": "application/json"})


def test_a_budget_or_price_must_be_a_finite_amount_in_range(world: World) -> None:
    api = _api(world)
    for usd in (float("nan"), float("inf"), float("-inf"), -1.0, 1e7):
        for path in ("/api/budget", f"/api/tasks/{world.task_id}/budget"):
            response = _put(api, path, {"usd": usd})
            assert response.status_code == 422, (usd, path, response.text)
            assert "usd" in response.json()["error"]["message"]
        price = _put(
            api, "/api/prices", {"model": "gpt-4.1", "input_per_mtok": usd, "output_per_mtok": 1}
        )
        assert price.status_code == 422, (usd, price.text)
        assert "input_per_mtok" in price.json()["error"]["message"]
    # Nothing was saved.
    assert api.get("/api/budget").json()["monthly_budget_usd"] is None
    assert api.get(f"/api/tasks/{world.task_id}/cost").json()["budget_usd"] is None


def test_the_budget_and_price_forms_refuse_what_is_not_an_amount(world: World) -> None:
    owner, csrf = world.owner, world.owner_csrf
    for usd in ("nan", "inf", "-infinity", "1e400", "-1"):
        for path, form in (
            ("/org/budget", {"usd": usd}),
            (f"/tasks/{world.task_id}/budget", {"usd": usd}),
            ("/org/prices", {"model": "gpt-4.1", "input_per_mtok": usd, "output_per_mtok": "1"}),
        ):
            page = owner.post(path, data={**form, "csrf_token": csrf}, follow_redirects=False)
            assert page.status_code == 422, (usd, path, page.status_code, page.text[:300])
            assert "amount of US dollars" in page.text


def test_the_pages_refuse_an_integer_no_store_can_hold(world: World) -> None:
    big = str(BIG)
    for path, form in (
        (f"/account/tokens/{big}/revoke", {}),
        (f"/org/members/{big}", {"role": "member"}),
        (f"/tasks/{world.task_id}/answer", {"question": big}),
        (f"/tasks/{world.task_id}/answer", {"question": "1", "option": big}),
        (f"/tasks/{world.task_id}/answer", {"question": "²"}),  # isdigit() says yes, int() no
    ):
        page = world.owner.post(
            path, data={**form, "csrf_token": world.owner_csrf}, follow_redirects=False
        )
        assert page.status_code == 422, (path, form, page.status_code, page.text[:300])
    for query in ("review?subtask=", "review/highlight?file=", "review/lines?path=a&rev=b&start="):
        page = world.owner.get(f"/tasks/{world.task_id}/{query}{big}")
        assert page.status_code == 422, (query, page.status_code, page.text[:300])


def _sample(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A value of the schema's type: enough for the body around the one field under test."""
    if "$ref" in schema:
        return _sample(components[schema["$ref"].split("/")[-1]], components)
    if "anyOf" in schema:
        return _sample(next(s for s in schema["anyOf"] if s.get("type") != "null"), components)
    kind = schema.get("type")
    if kind == "object":
        required = schema.get("required", [])
        return {
            k: _sample(v, components)
            for k, v in schema.get("properties", {}).items()
            if k in required
        }
    return {"integer": 1, "number": 1.0, "boolean": True, "array": [], "string": "x"}.get(
        str(kind), "x"
    )


def _integer(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    if "$ref" in schema:
        return False
    options = schema.get("anyOf", [schema])
    return any(o.get("type") == "integer" for o in options)


def test_every_integer_the_api_takes_is_bounded(world: World) -> None:
    """Walks the OpenAPI schema and sends 2**63 to each integer parameter and body field, one at
    a time, signed in as the owner: each is a 4xx about that very field (a new route that takes
    a bare ``int`` fails here)."""
    api = _api(world)
    spec = api.get("/openapi.json").json()
    components = spec["components"]["schemas"]
    known = {
        "task_id": world.task_id,
        "project": world.project,
        "ref": world.project,
        "token_id": world.owner_token_id,
        "user_id": world.owner_id,
        "comment_id": 1,
        "name": "OPENAI_API_KEY",
    }
    tried = []
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            content = operation.get("requestBody", {}).get("content", {})
            body_schema = content.get("application/json", {}).get("schema")
            body = _sample(body_schema, components) if body_schema else None
            fields = [(p["in"], p["name"]) for p in params if _integer(p["schema"], components)]
            if body_schema is not None:
                model = components[body_schema["$ref"].split("/")[-1]]
                fields += [
                    ("body", name)
                    for name, prop in model.get("properties", {}).items()
                    if _integer(prop, components)
                ]
            for where, field in fields:
                path = template.format(**{**known, **({field: BIG} if where == "path" else {})})
                query = {field: BIG} if where == "query" else {}
                sent = {**(body or {}), field: BIG} if where == "body" else body
                headers = {field: str(BIG)} if where == "header" else {}
                response = api.request(
                    method.upper(), path, params=query, json=sent, headers=headers
                )
                tried.append((method, template, field))
                assert 400 <= response.status_code < 500, (method, path, field, response.text)
                # The schema promises every status the server answers.
                assert str(response.status_code) in operation["responses"], (method, template)
                message = response.json()["error"]["message"]
                refused = field in message and "less than or equal" in message
                assert str(BIG) in message or refused, (
                    method,
                    path,
                    field,
                    message,
                )
    assert len(tried) > 25, tried


def test_a_project_named_by_a_number_no_store_can_hold_is_not_found(home: Path) -> None:
    """A project is named by id or by name: a string of digits past 2**63 - 1 (or of digits
    ``int()`` does not read) is a name no project has, in single-user mode too (no Permit
    scopes the path then)."""
    app = create_app(settings_for(home, "http://127.0.0.1:9/v1"))
    with TestClient(app, base_url="http://127.0.0.1") as local:
        for ref in (str(BIG), "²"):
            for response in (
                local.get(f"/api/projects/{ref}"),
                local.get("/api/tasks", params={"project": ref}),
                local.post("/api/tasks", json={"project": ref, "title": "Where?"}),
            ):
                assert response.status_code == 404, (ref, response.text)
                assert ref in response.json()["error"]["message"]
