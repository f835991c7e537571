"""Security headers on every response: the second line of defence against stored XSS.

Pages show text that others wrote — the agent's files, commit messages and summaries, issue
text, review comments — and Jinja's escaping (with markdown rendered with raw HTML off) is what
keeps it text. Should an escape ever be missed, the Content-Security-Policy still stops it
running: pages may run only scripts and styles served from this origin (no inline script, no
``on...=`` handler attribute, no ``style=`` attribute), load images only from here (so no
tracking pixel in a comment reports who read it), connect only here, post forms only here, and
be framed by nobody. ``Referrer-Policy: same-origin`` keeps a task's address from the sites its
links lead to; ``nosniff`` keeps a browser from reading an API answer or a text file as HTML.

FastAPI's interactive documentation (``/docs``, ``/redoc``) is its own HTML, loaded from a
CDN, with an inline script: it gets a policy of its own that allows those (its inline scripts
by their hash, computed from the page as it is sent). It shows nothing anyone wrote: only the
API's own schema.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",  # the event stream (fetch) and the chat WebSocket: same origin
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
# The billing forms post here and are redirected to Stripe's pages; Chromium checks a form's
# redirects against form-action too.
STRIPE_PAGES = "https://checkout.stripe.com https://billing.stripe.com"
# FastAPI's documentation pages, from jsDelivr (Swagger UI, ReDoc) with Google's fonts. Their
# styles are set inline by libraries we do not ship: 'unsafe-inline' styles there only.
DOCS_POLICY: dict[str, str] = {
    **PAGE_POLICY,
    "script-src": "'self' https://cdn.jsdelivr.net",
    "style-src": "'self' https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'",
    "font-src": "'self' https://fonts.gstatic.com",
    "img-src": "'self' data: https:",
    "worker-src": "'self' blob:",
}
# Anything else (JSON, the event stream, text, static files): nothing to run, nobody to frame.
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'"

COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
OTHER_HEADERS = {**COMMON, "Content-Security-Policy": OTHER_POLICY}
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def policy(directives: Mapping[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def page_policy(*, billing: bool = False) -> str:
    directives = dict(PAGE_POLICY)
    if billing:
        directives["form-action"] += " " + STRIPE_PAGES
    return policy(directives)


def html_headers(*, billing: bool = False) -> dict[str, str]:
    """The headers of an HTML page of the app."""
    return {
        **COMMON,
        "Content-Security-Policy": page_policy(billing=billing),
        "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
    }


def docs_headers(body: bytes) -> dict[str, str]:
    """The headers of a documentation page ``body``: its inline scripts allowed by hash."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(body)
    ]
    directives = dict(DOCS_POLICY)
    directives["script-src"] = " ".join([directives["script-src"], *hashes])
    return {**COMMON, "Content-Security-Policy": policy(directives), "X-Frame-Options": "DENY"}


class SecurityHeaders:
    """Adds the headers to every HTTP response that does not set its own."""

    def __init__(self, app: ASGIApp, *, billing: bool = False, docs: Iterable[str] = ()) -> None:
        self.app = app
        self.html = html_headers(billing=billing)
        self.docs = frozenset(docs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.docs:
            await self._docs(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                secure(MutableHeaders(scope=message), self.html)
            await send(message)

        await self.app(scope, receive, secured)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A few kilobytes, sent whole: held until the hashes of its scripts are known.
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                body = b"".join(m.get("body", b"") for m in held[1:])
                _add(MutableHeaders(scope=held[0]), docs_headers(body))
                for m in held:
                    await send(m)

        await self.app(scope, receive, hold)


def secure(headers: MutableHeaders, html: Mapping[str, str]) -> None:
    """Add the headers a response of its content type needs (``html``: an HTML page's, see
    :func:`html_headers`) to those it does not set itself."""
    page = headers.get("content-type", "").startswith("text/html")
    _add(headers, html if page else OTHER_HEADERS)


def _add(headers: MutableHeaders, values: Mapping[str, str]) -> None:
    for name, value in values.items():
        if name not in headers:
            headers[name] = value
