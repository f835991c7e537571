"""Jinja2 set-up shared by every page: the environment, filters and content negotiation."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markdown_it import MarkdownIt
from markupsafe import Markup

import errands
from errands.accounts.access import principal_of
from errands.accounts.cost import dollars
from errands.accounts.service import Principal

TEMPLATES = Path(__file__).parent / "templates"

# Hand-off documents and chat replies are model output: rendered with raw HTML disabled, so
# whatever the model writes cannot inject markup into the page.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def _age(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    if value.tzinfo is not None:  # the API's shapes say UTC explicitly; the store does not
        value = value.astimezone(UTC).replace(tzinfo=None)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    seconds = max(0, int((now - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _tokens(value: int | None) -> str:
    value = value or 0
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.1f}k"
    return str(value)


def _markdown_filter(text: str | None) -> Markup:
    return Markup(_markdown.render(text or ""))


def _label(value: str) -> str:
    return value.replace("_", " ")


environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(age=_age, tokens=_tokens, markdown=_markdown_filter, label=_label)


def _principal(request: Request) -> Principal:
    return principal_of(request)


def _csrf_field(request: Request) -> Markup:
    """Every form that changes something carries the session's CSRF token (empty in
    single-user mode, where there is no session to protect)."""
    token = principal_of(request).csrf
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(token)


environment.filters.update(dollars=dollars)
environment.globals.update(
    version=errands.__version__, csrf_field=_csrf_field, principal=_principal
)


def wants_html(request: Request) -> bool:
    """A browser navigating (Accept names text/html before any JSON) rather than an API
    client. API paths always answer JSON."""
    if request.url.path.startswith("/api/") or request.url.path in {"/openapi.json", "/docs"}:
        return False
    accept = request.headers.get("accept", "")
    html_at, json_at = accept.find("text/html"), accept.find("application/json")
    return html_at >= 0 and (json_at < 0 or html_at < json_at)


def wants_json(request: Request) -> bool:
    """An API client asking a page's URL for data (Accept: application/json)."""
    return "application/json" in request.headers.get("accept", "") and not wants_html(request)


def page(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    # base.html shows a form's error above every page: a page without one says so here,
    # once, instead of each route (or template) having to remember it.
    context.setdefault("error", None)
    html = environment.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status)
