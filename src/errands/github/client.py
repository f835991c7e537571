"""A small REST client over httpx: pagination by ``Link`` header, GitHub's rate limits.

GitHub's rules (docs: "Rate limits for the REST API", "Best practices"):

- a ``retry-after`` header says how many seconds to wait;
- otherwise ``x-ratelimit-remaining: 0`` means wait until ``x-ratelimit-reset`` (epoch s);
- otherwise a 403/429 that is a *secondary* rate limit means wait at least a minute, longer
  on each repeat.

Waits longer than ``max_wait`` are not slept through inside a job: :class:`RateLimited`
says how long instead, and the job is retried later. Server errors and dropped connections
are retried a few times with exponential back-off. httpx's exceptions never leave here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

import errands
from errands.github.errors import GitHubError, RateLimited

API_VERSION = "2022-11-28"
SECONDARY_MINIMUM_WAIT = 60.0
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="next"')

HeaderSource = Callable[[], str]


@dataclass(frozen=True)
class Throttle:
    """How the client waits; tests inject ``sleep``/``clock`` (time, not our code)."""

    max_wait: float = 120.0
    max_retries: int = 4
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time


class GitHubClient:
    """Authenticated requests against one API base URL (github.com or an Enterprise Server).

    ``authorization`` is called before every request so a refreshed installation token is
    picked up without rebuilding the client; ``on_unauthorized`` lets the token cache drop a
    token GitHub no longer accepts (revoked early), after which the request is tried once more.
    """

    def __init__(
        self,
        base_url: str,
        authorization: HeaderSource,
        *,
        on_unauthorized: Callable[[], None] | None = None,
        throttle: Throttle | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._authorization = authorization
        self._on_unauthorized = on_unauthorized
        self.throttle = throttle or Throttle()
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=timeout,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": f"errands/{errands.__version__}",
            },
            follow_redirects=True,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        allow: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send a request, waiting out rate limits; statuses in ``allow`` are returned
        instead of raised (e.g. 404 for "no such pull request")."""
        secondary_hits = 0
        failures = 0
        reauthorized = False
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers={"Authorization": self._authorization()},
                )
            except httpx.HTTPError as exc:
                failures += 1
                if failures > self.throttle.max_retries:
                    raise GitHubError(
                        f"GitHub at {self.base_url} is unreachable ({method} {path}): "
                        f"{type(exc).__name__}"
                    ) from exc
                self._wait(min(2.0**failures, 30.0), method, path)
                continue
            status = response.status_code
            if status < 400 or status in allow:
                return response
            wait = self._rate_limit_wait(response, secondary_hits)
            if wait is not None:
                secondary_hits += 1
                if secondary_hits > self.throttle.max_retries:
                    raise RateLimited(
                        f"GitHub kept rate-limiting {method} {path}; try again in {wait:.0f} s.",
                        wait=wait,
                    )
                self._wait(wait, method, path)
                continue
            if status == 401 and self._on_unauthorized is not None and not reauthorized:
                reauthorized = True
                self._on_unauthorized()
                continue
            if status >= 500:
                failures += 1
                if failures <= self.throttle.max_retries:
                    self._wait(min(2.0**failures, 30.0), method, path)
                    continue
            raise GitHubError(
                f"GitHub refused {method} {path}: {status} {_message(response)}",
                http_status=status,
            )

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def graphql(self, query: str, variables: dict[str, Any]) -> Any:
        """A GraphQL call (what REST does not offer, such as resolving a review thread);
        GitHub answers 200 with ``errors`` when it refuses, which is raised here."""
        # github.com serves it at /graphql, an Enterprise Server at /api/graphql (its REST
        # API being /api/v3).
        path = (
            self.base_url[: -len("/v3")] + "/graphql"
            if self.base_url.endswith("/api/v3")
            else "/graphql"
        )
        body = self.json("POST", path, json={"query": query, "variables": variables})
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors or not isinstance(body, dict):
            detail = "; ".join(
                str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors or []
            )
            raise GitHubError(f"GitHub refused a GraphQL call: {detail or 'no data'}"[:500])
        return body.get("data")

    def paginate(self, path: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a list endpoint, page by page (``per_page=100``), following the
        ``Link: <…>; rel="next"`` header GitHub sends instead of page counts."""
        url: str | None = path
        query: dict[str, Any] | None = {"per_page": 100, **(params or {})}
        while url is not None:
            response = self.request("GET", url, params=query)
            items = response.json()
            if not isinstance(items, list):
                raise GitHubError(f"GitHub answered GET {path} with something not a list.")
            yield from items
            match = _NEXT_LINK.search(response.headers.get("link", ""))
            # The next link carries the whole query already.
            url, query = (match.group(1), None) if match else (None, None)

    # -- rate limits ----------------------------------------------------------------------

    def _rate_limit_wait(self, response: httpx.Response, secondary_hits: int) -> float | None:
        """Seconds to wait before trying again, or None when this is not a rate limit."""
        if response.status_code not in (403, 429):
            return None
        headers = response.headers
        retry_after = headers.get("retry-after")
        if retry_after is not None:
            try:
                return max(float(retry_after), 0.0)
            except ValueError:
                return SECONDARY_MINIMUM_WAIT
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            try:
                reset = float(headers["x-ratelimit-reset"])
            except ValueError:
                return SECONDARY_MINIMUM_WAIT
            # A second of slack: the reset time is whole seconds and clocks drift.
            return max(reset - self.throttle.clock(), 0.0) + 1.0
        if response.status_code == 429 or "rate limit" in _message(response).lower():
            # Secondary limit without a hint: at least a minute, doubling on each repeat.
            return SECONDARY_MINIMUM_WAIT * float(2**secondary_hits)
        return None  # a plain 403: permissions, not a limit

    def _wait(self, seconds: float, method: str, path: str) -> None:
        if seconds > self.throttle.max_wait:
            raise RateLimited(
                f"GitHub asks to wait {seconds:.0f} s before {method} {path}; more than "
                f"ERRANDS_GITHUB_MAX_WAIT ({self.throttle.max_wait:.0f} s). Try again later.",
                wait=seconds,
            )
        self.throttle.sleep(seconds)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        message = str(body.get("message", ""))
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            details = "; ".join(
                str(e.get("message") or e.get("code")) if isinstance(e, dict) else str(e)
                for e in errors
            )
            message = f"{message} ({details})"
        return message[:500]
    return str(body)[:200]
