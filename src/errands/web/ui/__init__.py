"""The web app: server-rendered pages (Jinja2) with a little vanilla JavaScript.

There is no JavaScript build step: templates and static assets ship inside the package. Pages
post ordinary forms to the same origin (so BrowserGuard lets them through) and redirect
back; live parts follow the task's server-sent event stream.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from errands.web.ui import accounts, chat, errors, pages, projects, review

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add the pages, their static assets and the HTML side of the error handlers.

    Call it after the JSON error handlers are registered: it wraps them so a browser gets
    an error page while API clients keep getting JSON.
    """
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in (pages, review, projects, chat, accounts):
        app.include_router(module.router)
    errors.install(app)
