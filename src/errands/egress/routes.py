"""Where a sandbox may send model calls: one route per provider endpoint, the paths allowed on
it, and how the real key is put on each request.

A route is named by the first segment of the path the sandbox asks for (``/anthropic/...``,
``/openai/...``); the rest of the path is appended to the route's upstream base URL, but only
when it is one of the route's allowed calls. Everything a CLI sends besides model calls
(telemetry, update checks, feature flags, ``/api/...`` of the console) matches nothing and is
refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from errands.errors import ConfigError
from errands.settings import Settings

Provider = Literal["anthropic", "openai"]
# How a call's usage is read from the answer: the call is metered and budget-checked.
Protocol = Literal["anthropic-messages", "openai-chat", "openai-responses"]

PLACEHOLDER_KEY = "errands-placeholder"

DEFAULT_BASES: dict[Provider, str] = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
}


@dataclass(frozen=True)
class Call:
    """One kind of request a route lets through."""

    method: str
    path: re.Pattern[str]  # the path after the route's name, without the query
    protocol: Protocol | None  # None: not a model call (model lists, token counting)


_MODELS = re.compile(r"models(/[A-Za-z0-9_:-][A-Za-z0-9._:-]*)?")  # no dot segments

CALLS: dict[Provider, tuple[Call, ...]] = {
    "anthropic": (
        Call("POST", re.compile(r"v1/messages"), "anthropic-messages"),
        Call("POST", re.compile(r"v1/messages/count_tokens"), None),
        Call("GET", re.compile("v1/" + _MODELS.pattern), None),
    ),
    "openai": (
        Call("POST", re.compile(r"chat/completions"), "openai-chat"),
        Call("POST", re.compile(r"responses"), "openai-responses"),
        Call("GET", _MODELS, None),
    ),
}


@dataclass(frozen=True)
class Route:
    name: Provider
    base_url: str  # the upstream: scheme://host[:port][/path], no trailing slash
    key: str | None = field(repr=False)  # the real key; None when the endpoint needs none

    def match(self, method: str, rest: str) -> Call | None:
        for call in CALLS[self.name]:
            if call.method == method and call.path.fullmatch(rest):
                return call
        return None

    def upstream(self, rest: str, query: str) -> str:
        return f"{self.base_url}/{rest}" + (f"?{query}" if query else "")

    def auth_headers(self) -> dict[str, str]:
        """The headers that carry the real key (none when no key is configured)."""
        if self.key is None:
            return {}
        if self.name == "anthropic":
            return {"x-api-key": self.key}
        return {"authorization": f"Bearer {self.key}"}

    def sandbox_env(self, origin: str) -> dict[str, str]:
        """What a client inside needs to call this route through ``origin`` (the
        forwarder), holding only a placeholder key."""
        prefix = self.name.upper()
        return {
            f"{prefix}_BASE_URL": f"{origin}/{self.name}",
            f"{prefix}_API_KEY": PLACEHOLDER_KEY,
        }


# Request headers that carry a key: whatever the sandbox put there is dropped, and the route
# sets the real one.
AUTH_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization"})


def check_base_url(url: str, setting: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{setting} must be an http(s) URL, not {url!r}.")
    if parts.query or parts.fragment:
        raise ConfigError(f"{setting} must not carry a query or fragment: {url!r}.")
    return url.rstrip("/")


def model_routes(settings: Settings) -> tuple[Route, ...]:
    """A route for each provider this deployment (or the job's organization) configured: a
    key, or a base URL of its own (a local endpoint that needs no key)."""
    routes = []
    configured: tuple[tuple[Provider, SecretStr | None, str | None], ...] = (
        ("anthropic", settings.anthropic_api_key, settings.anthropic_base_url),
        ("openai", settings.openai_api_key, settings.openai_base_url),
    )
    for provider, key, base in configured:
        setting = f"{provider.upper()}_BASE_URL"
        if key is None and base is None:
            continue
        routes.append(
            Route(
                name=provider,
                base_url=check_base_url(base or DEFAULT_BASES[provider], setting),
                key=key.get_secret_value() if key is not None else None,
            )
        )
    return tuple(routes)
