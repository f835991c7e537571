"""The OpenAPI schema documents every error status a route can answer, with the error body,
so a client (or a schema-driven fuzzer) can hold the server to its contract.

Most statuses follow from what a route is, and are added here from one set of rules so no
route can forget them: every route may be refused by the browser guard (403); one that needs
a principal may answer 401; one that takes a body, 400 when it is not JSON; one that names an
object in its path or body, 404; one that takes input, 422 (in our error shape, not FastAPI's
default); one that changes something, 409. A
route adds what only it can answer (429, 413, 502…) with ``responses=error_responses(...)``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from errands.accounts.access import permit_of, routes_of
from errands.web.errors import ERROR_STATUSES, ErrorBody

SAFE_METHODS = frozenset({"get", "head", "options"})
REF = "#/components/schemas/ErrorBody"


def install(app: FastAPI) -> None:
    """Serve the schema with the error statuses documented (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document_errors(app, schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def statuses(method: str, path: str, operation: dict[str, Any], level: str) -> set[int]:
    found = {403}  # BrowserGuard: a non-loopback Host, or a change sent from another site
    if level != "public":
        found.add(401)
    body = "requestBody" in operation
    if body:
        found.add(400)  # a body that does not parse as JSON
    if "{" in path or body:
        found.add(404)
    if operation.get("parameters") or body or method not in SAFE_METHODS:
        found.add(422)
    if method not in SAFE_METHODS:
        found.add(409)
    return found


def document_errors(app: FastAPI, schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorBody"] = error_schema
    for route in routes_of(app):
        permit = permit_of(route)
        if not route.in_schema or route.websocket or permit is None:
            continue
        for method in route.methods:
            operation = schema["paths"].get(route.path, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses(method.lower(), route.path, operation, permit.level)):
                existing = responses.get(str(status), {})
                refs = str(existing.get("content", {}))
                if existing and "HTTPValidationError" not in refs:
                    continue  # declared by the route itself
                responses[str(status)] = {
                    "description": ERROR_STATUSES[status],
                    "content": {"application/json": {"schema": {"$ref": REF}}},
                }
    # FastAPI's default validation error shape is never sent: ours is.
    if "HTTPValidationError" not in str(schema["paths"]):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
