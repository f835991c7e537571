"""One error handler per error type for both audiences: an HTML page for a browser, the
API's JSON shape for everyone else. The JSON handlers registered by the app stay the source
of truth; these wrap them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from errands.errors import ErrandsError
from errands.web.errors import json_error
from errands.web.headers import html_headers, secure
from errands.web.ui.render import page, wants_html

log = logging.getLogger(__name__)

Handler = Callable[[Request, Exception], Awaitable[Response] | Response]

TITLES = {
    400: "Bad request",
    401: "Sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Not now",
    422: "Invalid input",
    429: "Too many attempts",
    500: "Something went wrong",
}


def error_page(request: Request, status: int, message: str) -> Response:
    return page(
        request,
        "error.html",
        status=status,
        title=TITLES.get(status, "Error"),
        message=message,
        code=status,
    )


def install(app: FastAPI) -> None:
    def wrap(kind: type[Exception] | int, fallback: Handler, *, replace: bool = False) -> None:
        found = None if replace else app.exception_handlers.get(kind)
        original = cast(Handler, found or fallback)

        async def handler(request: Request, exc: Exception) -> Response:
            answer = await answer_to(request, exc)
            if kind is Exception:
                # Answered from outside every middleware (Starlette's ServerErrorMiddleware),
                # so without the security headers the others add: added here.
                secure(
                    answer.headers, html_headers(billing=request.app.state.settings.billing_enabled)
                )
            return answer

        async def answer_to(request: Request, exc: Exception) -> Response:
            if wants_html(request):
                status, message = _describe(exc)
                if status == 401:  # a browser that is not signed in goes to sign in
                    target = quote(
                        request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    )
                    return RedirectResponse(f"/login?next={target}", status_code=303)
                answer = error_page(request, status, message)
                if isinstance(exc, ErrandsError):
                    answer.headers.update(exc.headers)
                return answer
            result = original(request, exc)
            return await result if isinstance(result, Awaitable) else result

        app.add_exception_handler(kind, handler)

    wrap(ErrandsError, _json_fallback)
    wrap(RequestValidationError, _json_fallback)
    # FastAPI's default answers {"detail": ...}; the API's shape is {"error": {...}}.
    wrap(StarletteHTTPException, _http_json, replace=True)
    # Anything unexpected: logged with its traceback here, never shown to the user.
    wrap(Exception, _internal_json)


def _describe(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, ErrandsError):
        return exc.status, exc.message
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{' → '.join(str(p) for p in e['loc'][1:]) or 'input'}: {e['msg']}"
            for e in exc.errors()
        )
        return 422, f"The form or address is not valid: {problems}."
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return 404, "There is no page at this address."
        return exc.status_code, str(exc.detail)
    log.exception("unhandled error", exc_info=exc)
    return 500, "An unexpected error happened; it has been logged on the server."


async def _json_fallback(_: Request, exc: Exception) -> Response:
    status, message = _describe(exc)
    return json_error("error", message, status=status)


async def _http_json(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = "not_found" if exc.status_code == 404 else "http_error"
    return json_error(code, str(exc.detail), status=exc.status_code)


async def _internal_json(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return json_error("internal_error", "An unexpected error happened.", status=500)
