"""Invisible markers in what Errands writes on GitHub, so its own comments, coming back as
webhooks, are recognised and never imported again (no echo loops), and so a retried post
finds the comment an interrupted attempt already made instead of posting twice."""

from __future__ import annotations

import re

_MARKER = re.compile(r"<!-- errands:(?P<kind>[a-z]+):(?P<id>\d+) -->")


def marker(kind: str, ident: int) -> str:
    return f"<!-- errands:{kind}:{ident} -->"


def with_marker(body: str, kind: str, ident: int) -> str:
    return f"{body.rstrip()}\n\n{marker(kind, ident)}"


def find_marker(body: str | None) -> tuple[str, int] | None:
    """The marker in ``body`` (checked on the raw text, before sanitising removes it)."""
    match = _MARKER.search(body or "")
    return (match["kind"], int(match["id"])) if match else None
