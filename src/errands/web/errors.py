"""The one shape of an error the API returns, and how the OpenAPI schema describes it."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    # Some errors add fields: ``details`` (what failed validation), ``files`` (a conflict's).
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Stable and machine-readable: not_found, conflict, …")
    message: str = Field(description="What went wrong and what to do, for a person.")


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    error: ErrorDetail


# What each error status means on this API (the OpenAPI schema documents them per route).
ERROR_STATUSES: dict[int, str] = {
    400: "A request the server cannot act on: a body that is not JSON, a missing server "
    "setting, a malformed delivery.",
    401: "Not signed in: no session or API token, or an unknown or revoked one.",
    403: "Not allowed: the role does not allow it, the CSRF token is wrong, or the request "
    "came from another site or a non-loopback Host.",
    404: "No such object in your organization (another organization's objects are not found "
    "either).",
    409: "Not now: the object's state does not allow it (or there are no accounts yet).",
    413: "The request body is too large.",
    422: "Invalid input: the message names the field and the rule.",
    429: "Too many attempts: wait for Retry-After seconds.",
    502: "A service Errands depends on (GitHub, the mail server) failed.",
    503: "A service Errands depends on is rate-limiting: try again later.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: these statuses answer with ``ErrorBody``."""
    return {s: {"model": ErrorBody, "description": ERROR_STATUSES[s]} for s in statuses}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def json_error(code: str, message: str, *, status: int, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status)
