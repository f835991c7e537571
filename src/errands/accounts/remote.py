"""The CLI's link to a remote Errands server: ``errands login URL`` keeps the server's
address and an API token in ``$ERRANDS_HOME/remote.toml`` (readable by the user only)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from errands.accounts.errors import Unauthenticated
from errands.errors import ConfigError, ErrandsError

if TYPE_CHECKING:  # `errands locate --remote` finds the file without Settings (pydantic)
    from errands.settings import Settings

TIMEOUT = 30


class RemoteError(ErrandsError):
    code = "remote_error"
    status = 502


@dataclass(frozen=True)
class Remote:
    url: str
    token: str


def path(settings: Settings) -> Path:
    return path_in(settings.home)


def path_in(home: Path) -> Path:
    return home / "remote.toml"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def save(settings: Settings, remote: Remote) -> Path:
    target = path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Created private: the token signs in as the user.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"url = {_quote(remote.url)}\ntoken = {_quote(remote.token)}\n")
    os.chmod(target, 0o600)
    return target


def load(settings: Settings) -> Remote:
    return load_from(settings.home)


def load_from(home: Path) -> Remote:
    """:func:`load` from the data directory ``home``."""
    target = path_in(home)
    if not target.exists():
        raise ConfigError("Not logged in to a remote server: run `errands login URL` first.")
    data = tomllib.loads(target.read_text())
    return Remote(url=str(data["url"]), token=str(data["token"]))


def forget(settings: Settings) -> bool:
    target = path(settings)
    existed = target.exists()
    target.unlink(missing_ok=True)
    return existed


def call(remote: Remote, method: str, api_path: str, **kwargs: Any) -> Any:
    """One request to the remote API with the stored token; our errors, never httpx's."""
    try:
        response = httpx.request(
            method,
            remote.url.rstrip("/") + api_path,
            headers={"Authorization": f"Bearer {remote.token}"},
            timeout=TIMEOUT,
            **kwargs,
        )
    except httpx.HTTPError as exc:
        raise RemoteError(f"Cannot reach {remote.url}: {exc}") from exc
    if response.status_code == 401:
        raise Unauthenticated(f"{remote.url} refused the token (revoked, or another server).")
    if response.status_code >= 400:
        code = None
        try:
            error = response.json()["error"]
            message, code = str(error["message"]), str(error["code"])
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        failed = RemoteError(f"{remote.url} answered {response.status_code}: {message}")
        if code is not None:
            failed.code = code  # the server's own (not_found, conflict, …), for callers
        raise failed
    return response.json()


def login(settings: Settings, url: str, token: str) -> dict[str, Any]:
    """Check the token against the server, then keep both."""
    remote = Remote(url=url.rstrip("/"), token=token.strip())
    me: dict[str, Any] = call(remote, "GET", "/api/me")
    save(settings, remote)
    return me
