"""Keep web pages the user happens to visit away from the local API.

Errands has no accounts yet, so on a laptop the API trusts whoever reaches it — which
includes any web page open in the user's browser: a page can send a body-less POST to
127.0.0.1 ("approve", "cancel") without CORS stopping it, and DNS rebinding lets a page read
responses under its own host name. So:

- a state-changing request that a browser marks as coming from another site (``Origin`` or
  ``Sec-Fetch-Site``) is refused;
- while the server listens on loopback, a request whose ``Host`` is not a loopback name is
  refused (DNS rebinding).

The CLI, scripts and tests send neither header and are unaffected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from errands.web.errors import json_error

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _hostname(host_header: str) -> str:
    return (urlsplit(f"//{host_header}").hostname or "").lower()


class BrowserGuard:
    def __init__(self, app: ASGIApp, *, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        problem = None
        if self.loopback_only and _hostname(host) not in LOOPBACK_NAMES:
            problem = f"Host {host!r} is not this machine's loopback address"
        elif scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if headers.get("sec-fetch-site") == "cross-site":
                problem = "cross-site requests may not change anything"
            elif origin is not None and urlsplit(origin).netloc.lower() != host.lower():
                problem = f"requests from {origin} may not change anything"
        if problem is None:
            await self.app(scope, receive, send)
            return
        response = json_error("forbidden", f"Refused: {problem}.", status=403)
        await response(scope, receive, send)
