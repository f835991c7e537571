"""Who Errands is on GitHub: a GitHub App (JWT → installation tokens) or a personal token.

An App signs a short JWT (RS256, ``iss`` = app id) with its private key and trades it for an
installation token, which lasts an hour. Tokens are cached per installation and repository
and replaced ``refresh_margin`` seconds before they expire, so a push or merge never starts
with a token about to lapse. Each token is narrowed to the one repository being worked on
(``repositories`` in the request), so a task's credentials cannot touch the installation's
other repositories.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx
import jwt

from errands.github.client import GitHubClient, Throttle
from errands.github.errors import GitHubError, GitHubNotConfigured

JWT_LIFETIME = 540  # seconds; GitHub accepts at most ten minutes
JWT_BACKDATE = 60  # allow for clock drift between us and GitHub
DEFAULT_REFRESH_MARGIN = 300.0


class RepoCredentials(Protocol):
    """A token for one repository, refreshed as needed."""

    def token(self) -> str: ...

    def invalidate(self) -> None: ...


@dataclass(frozen=True)
class StaticToken:
    """A fine-grained personal access token: one token, no refresh."""

    value: str

    def token(self) -> str:
        return self.value

    def invalidate(self) -> None:
        # Nothing to refresh: a rejected personal token stays rejected.
        return None


@dataclass
class _Cached:
    token: str
    expires_at: float


class GitHubApp:
    """A GitHub App's identity; hands out cached installation tokens, thread-safely."""

    def __init__(
        self,
        app_id: str,
        private_key: str,
        api_url: str,
        *,
        throttle: Throttle | None = None,
        transport: httpx.BaseTransport | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self._private_key = private_key
        self.api_url = api_url
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple[int, str | None], _Cached] = {}
        self._client = GitHubClient(
            api_url, self._bearer_jwt, throttle=throttle, transport=transport
        )

    def jwt(self) -> str:
        # Wall-clock time, always: GitHub checks iat/exp against its own clock.
        now = int(time.time())
        claims = {"iat": now - JWT_BACKDATE, "exp": now + JWT_LIFETIME, "iss": self.app_id}
        try:
            return jwt.encode(claims, self._private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            # Never echo the key itself: only what is wrong with it.
            raise GitHubNotConfigured(
                "ERRANDS_GITHUB_PRIVATE_KEY is not a usable RSA private key (PEM): "
                f"{type(exc).__name__}"
            ) from exc

    def _bearer_jwt(self) -> str:
        return f"Bearer {self.jwt()}"

    def installation_for(self, full_name: str) -> int:
        """The installation of this App on a repository (404 → not installed there)."""
        response = self._client.request("GET", f"/repos/{full_name}/installation", allow=(404,))
        if response.status_code == 404:
            raise GitHubError(
                f"The GitHub App is not installed on {full_name}; install it there first.",
                http_status=404,
            )
        return int(response.json()["id"])

    def installation_token(self, installation_id: int, repository: str | None = None) -> str:
        """A token for the installation, narrowed to ``repository`` (its name, not owner/name)
        when given; fetched anew when the cached one is within ``refresh_margin`` of expiry."""
        key = (installation_id, repository)
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.expires_at - self._clock() > self.refresh_margin:
                return cached.token
            body = {"repositories": [repository]} if repository else None
            data = self._client.json(
                "POST", f"/app/installations/{installation_id}/access_tokens", json=body
            )
            token, expires = str(data["token"]), _epoch(str(data["expires_at"]))
            self._tokens[key] = _Cached(token, expires)
            return token

    def forget(self, installation_id: int, repository: str | None = None) -> None:
        with self._lock:
            self._tokens.pop((installation_id, repository), None)

    def close(self) -> None:
        self._client.close()


@dataclass
class InstallationToken:
    """:class:`RepoCredentials` of an App installation for one repository."""

    app: GitHubApp
    installation_id: int
    repository: str | None

    def token(self) -> str:
        return self.app.installation_token(self.installation_id, self.repository)

    def invalidate(self) -> None:
        self.app.forget(self.installation_id, self.repository)


def _epoch(timestamp: str) -> float:
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise GitHubError(f"GitHub sent an unreadable token expiry {timestamp!r}.") from exc
