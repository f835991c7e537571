"""The CLI's link to a remote Errands server: ``errands login URL`` keeps the server's
address and an API token in ``$ERRANDS_HOME/remote.toml`` (readable by the user only)."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    import httpx

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
    if response.status_code >= 400:
        raise _refused(remote, response.status_code, response.text)
    return response.json()


def post(remote: Remote, api_path: str, body: Any) -> Any:
    """:func:`call` for one JSON POST, through the standard library: `errands locate
    --remote` is a fresh process each time, and importing httpx (httpcore, and trio where
    it is installed) took ~0.1 s of its ~0.4 s."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        remote.url.rstrip("/") + api_path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {remote.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            text = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        with exc:
            raise _refused(remote, exc.code, exc.read().decode("utf-8", "replace")) from None
    except (urllib.error.URLError, OSError) as exc:
        raise RemoteError(f"Cannot reach {remote.url}: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RemoteError(f"{remote.url} answered what is not JSON: {text[:300]}") from exc


def locate(remote: Remote, project: str, text: str, limit: int) -> list[Any]:
    """The server's locate for ``project`` (its id or name): `errands locate --remote` and
    the MCP server's remote backend."""
    from urllib.parse import quote

    found: list[Any] = post(
        remote, f"/api/projects/{quote(project, safe='')}/locate", {"text": text, "limit": limit}
    )
    return found


def _refused(remote: Remote, status: int, text: str) -> ErrandsError:
    """The server's refusal as our error: its code and message, when it gave them."""
    if status == 401:
        return Unauthenticated(f"{remote.url} refused the token (revoked, or another server).")
    code = None
    try:
        error = json.loads(text)["error"]
        message, code = str(error["message"]), str(error["code"])
    except (ValueError, KeyError, TypeError):
        message = text[:300]
    failed = RemoteError(f"{remote.url} answered {status}: {message}")
    if code is not None:
        failed.code = code  # the server's own (not_found, conflict, …), for callers
    return failed


def login(settings: Settings, url: str, token: str) -> dict[str, Any]:
    """Check the token against the server, then keep both."""
    remote = Remote(url=url.rstrip("/"), token=token.strip())
    me: dict[str, Any] = call(remote, "GET", "/api/me")
    save(settings, remote)
    return me
