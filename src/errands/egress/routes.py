"""Where a sandbox may send model calls: one route per provider endpoint, the paths allowed on
it, and how the real key is put on each request.

A route is named by the first segment of the path the sandbox asks for (``/anthropic/...``,
``/openai/...``, ``/google/...``); the rest of the path is appended to the route's upstream
base URL, but only when it is one of the route's allowed calls. Everything a CLI sends besides
model calls (telemetry, update checks, feature flags, ``/api/...`` of the console) matches
nothing and is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import SecretStr

from errands.errors import ConfigError
from errands.settings import Settings

Provider = Literal["anthropic", "openai", "google"]
# How a call's usage is read from the answer: the call is metered and budget-checked.
Protocol = Literal["anthropic-messages", "openai-chat", "openai-responses", "gemini"]

PLACEHOLDER_KEY = "errands-placeholder"

DEFAULT_BASES: dict[Provider, str] = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "google": "https://generativelanguage.googleapis.com",
}

# The variables clients inside read their endpoint and key from, per provider.
_ENV: dict[Provider, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "anthropic": (("ANTHROPIC_BASE_URL",), ("ANTHROPIC_API_KEY",)),
    "openai": (("OPENAI_BASE_URL",), ("OPENAI_API_KEY",)),
    "google": (("GOOGLE_GEMINI_BASE_URL", "GOOGLE_BASE_URL"), ("GEMINI_API_KEY", "GOOGLE_API_KEY")),
}


@dataclass(frozen=True)
class Call:
    """One kind of request a route lets through."""

    method: str
    # The path after the route's name, without the query. A group named "model" says which
    # model is called where the path names it (Gemini) rather than the body.
    path: re.Pattern[str]
    protocol: Protocol | None  # None: not a model call (model lists, token counting)
    stream: bool = False  # the path itself asks for a stream (Gemini)


# A model's name: no dot segments, no slash (OpenAI's fine-tuned names hold colons; Gemini's
# cannot, the colon starts the method).
_MODELS = re.compile(r"models(/[A-Za-z0-9_:-][A-Za-z0-9._:-]*)?")
_GEMINI = r"v1(?:beta|alpha)?/models/(?P<model>[A-Za-z0-9_-][A-Za-z0-9._-]*)"

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
    "google": (
        Call("POST", re.compile(rf"{_GEMINI}:generateContent"), "gemini"),
        Call("POST", re.compile(rf"{_GEMINI}:streamGenerateContent"), "gemini", stream=True),
        Call("POST", re.compile(rf"{_GEMINI}:countTokens"), None),
        Call("GET", re.compile(rf"v1(?:beta|alpha)?/{_MODELS.pattern}"), None),
    ),
}


@dataclass(frozen=True)
class Matched:
    call: Call
    model: str | None  # as the path names it


# Query parameters that carry a key (Gemini's ?key=): dropped, the real key goes in a header.
_KEY_PARAMS = frozenset({"key"})


@dataclass(frozen=True)
class Route:
    name: Provider
    base_url: str  # the upstream: scheme://host[:port][/path], no trailing slash
    key: str | None = field(repr=False)  # the real key; None when the endpoint needs none

    def match(self, method: str, rest: str) -> Matched | None:
        for call in CALLS[self.name]:
            found = call.path.fullmatch(rest) if call.method == method else None
            if found is not None:
                return Matched(call, found.groupdict().get("model"))
        return None

    def upstream(self, rest: str, query: str) -> str:
        kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in _KEY_PARAMS]
        return f"{self.base_url}/{rest}" + (f"?{urlencode(kept)}" if kept else "")

    def auth_headers(self) -> dict[str, str]:
        """The headers that carry the real key (none when no key is configured)."""
        if self.key is None:
            return {}
        if self.name == "anthropic":
            return {"x-api-key": self.key}
        if self.name == "google":
            return {"x-goog-api-key": self.key}
        return {"authorization": f"Bearer {self.key}"}

    def sandbox_env(self, origin: str) -> dict[str, str]:
        """What a client inside needs to call this route through ``origin`` (the
        forwarder), holding only a placeholder key."""
        urls, keys = _ENV[self.name]
        return {
            **dict.fromkeys(urls, f"{origin}/{self.name}"),
            **dict.fromkeys(keys, PLACEHOLDER_KEY),
        }


# Request headers that carry a key: whatever the sandbox put there is dropped, and the route
# sets the real one.
AUTH_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "x-goog-api-key", "proxy-authorization"}
)


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
        ("google", settings.google_api_key, settings.google_base_url),
    )
    for provider, key, base in configured:
        setting = {"google": "GOOGLE_GEMINI_BASE_URL"}.get(provider, f"{provider.upper()}_BASE_URL")
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
