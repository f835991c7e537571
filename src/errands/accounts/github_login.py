"""Sign in with GitHub (OAuth web flow), when an OAuth App is configured.

The ``state`` sent to GitHub is random; only its hash is kept, in a short-lived HttpOnly,
SameSite=Lax cookie of the browser that started, and it works once. GitHub's access token is
used for two requests (the user and their emails) and then dropped: never stored, logged or
put into an event.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from errands.accounts import crypto, mail
from errands.errors import ErrandsError, NotFound
from errands.settings import Settings

STATE_COOKIE = "errands_github_state"
STATE_SECONDS = 600
SCOPE = "read:user user:email"
TIMEOUT = 20.0
CALLBACK_PATH = "/login/github/callback"


class GitHubSignInFailed(ErrandsError):
    """The sign-in could not be completed (state, or GitHub refused): nobody is signed in."""

    code = "github_sign_in_failed"
    status = 400


class GitHubRefused(ErrandsError):
    """GitHub answered the code exchange or a user request with an error."""

    code = "github_refused"
    status = 502


@dataclass(frozen=True)
class GitHubIdentity:
    id: int
    login: str
    name: str
    email: str | None  # the verified primary address, if any


def require_configured(settings: Settings) -> None:
    if not settings.github_oauth_configured:
        raise NotFound(
            "GitHub sign-in is not configured: set ERRANDS_GITHUB_OAUTH_CLIENT_ID and "
            "ERRANDS_GITHUB_OAUTH_CLIENT_SECRET."
        )


def redirect_uri(settings: Settings) -> str:
    return mail.public_url(settings) + CALLBACK_PATH


def authorize_url(settings: Settings, state: str) -> str:
    query = urlencode(
        {
            "client_id": settings.github_oauth_client_id or "",
            "redirect_uri": redirect_uri(settings),
            "state": state,
            "scope": SCOPE,
        }
    )
    return f"{settings.github_web_url.rstrip('/')}/login/oauth/authorize?{query}"


class UsedStates:
    """Hashes of states already used (until they would have expired anyway): a state works
    once even if its cookie were replayed."""

    def __init__(self) -> None:
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def consume(self, hashed: str) -> bool:
        moment = time.monotonic()
        with self._lock:
            self._used = {h: t for h, t in self._used.items() if t > moment}
            if hashed in self._used:
                return False
            self._used[hashed] = moment + STATE_SECONDS
            return True


def new_state() -> tuple[str, str]:
    """A random state and the hash the cookie keeps."""
    raw = crypto.new_token()
    return raw, crypto.digest(raw)


def check_state(state: str, cookie: str | None, used: UsedStates) -> None:
    if not state or not cookie:
        raise GitHubSignInFailed(
            "The GitHub sign-in lacks its state (or it expired): start again from the sign-in page."
        )
    if not hmac.compare_digest(crypto.digest(state), cookie) or not used.consume(cookie):
        raise GitHubSignInFailed(
            "The GitHub sign-in's state does not match this browser's, or was used already: "
            "start again from the sign-in page."
        )


def _json(response: httpx.Response, what: str) -> Any:
    try:
        body = response.json()
    except ValueError as exc:
        raise GitHubRefused(f"GitHub answered {what} with HTTP {response.status_code}.") from exc
    if response.status_code >= 400:
        message = body.get("message") if isinstance(body, dict) else None
        raise GitHubRefused(
            f"GitHub refused {what} (HTTP {response.status_code}: {message or 'no message'})."
        )
    return body


def identify(settings: Settings, code: str) -> GitHubIdentity:
    """Exchange the code for a token, ask GitHub who it is, and forget the token."""
    if not code:
        raise GitHubSignInFailed("GitHub sent no code back: start again from the sign-in page.")
    secret = settings.github_oauth_client_secret
    assert secret is not None and settings.github_oauth_client_id
    web = settings.github_web_url.rstrip("/")
    api = settings.github_api_url.rstrip("/")
    with httpx.Client(timeout=TIMEOUT) as client:
        try:
            exchanged = _json(
                client.post(
                    f"{web}/login/oauth/access_token",
                    data={
                        "client_id": settings.github_oauth_client_id,
                        "client_secret": secret.get_secret_value(),
                        "code": code,
                        "redirect_uri": redirect_uri(settings),
                    },
                    headers={"Accept": "application/json"},
                ),
                "the sign-in code",
            )
            if not isinstance(exchanged, dict) or not exchanged.get("access_token"):
                error = exchanged.get("error") if isinstance(exchanged, dict) else None
                detail = exchanged.get("error_description") if isinstance(exchanged, dict) else None
                raise GitHubRefused(
                    f"GitHub refused the sign-in ({error or 'no token'}: "
                    f"{detail or 'no description'}). Nobody was signed in."
                )
            headers = {
                "Authorization": f"Bearer {exchanged['access_token']}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
            user = _json(client.get(f"{api}/user", headers=headers), "the user request")
            emails = _json(client.get(f"{api}/user/emails", headers=headers), "the emails request")
        except httpx.HTTPError as exc:
            raise GitHubRefused(f"GitHub could not be reached ({type(exc).__name__}).") from exc
    primary = next(
        (
            e["email"]
            for e in emails
            if isinstance(e, dict) and e.get("primary") and e.get("verified") and e.get("email")
        ),
        None,
    )
    return GitHubIdentity(
        id=int(user["id"]),
        login=str(user["login"]),
        name=str(user.get("name") or ""),
        email=str(primary) if primary else None,
    )
