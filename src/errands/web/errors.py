"""The one shape of an error the API returns."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def json_error(code: str, message: str, *, status: int, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status)
