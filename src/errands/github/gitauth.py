"""Credentials for git over HTTPS, through the environment only.

git reads extra configuration from ``GIT_CONFIG_COUNT`` / ``GIT_CONFIG_KEY_n`` /
``GIT_CONFIG_VALUE_n``; an ``http.<url>.extraHeader`` set that way sends
``Authorization: Basic base64(x-access-token:TOKEN)`` (what actions/checkout does) without the
token ever being in argv (visible in ``ps``), in ``.git/config``, in a remote URL or in a
reflog. The header is scoped to the one host, so a redirect elsewhere does not carry it.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from errands.github.errors import GitHubNotConfigured

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def basic_header(token: str) -> str:
    encoded = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return f"Authorization: Basic {encoded}"


def git_auth_env(clone_url: str, token: str) -> dict[str, str]:
    """Environment for git commands that talk to ``clone_url`` with ``token``."""
    parts = urlsplit(clone_url)
    # Plain HTTP only to this machine (a local test server or proxy): the token never
    # crosses a network unencrypted.
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    )
    if not secure or not parts.hostname:
        raise GitHubNotConfigured(
            f"Refusing to send a GitHub token to {parts.scheme or 'a local'} remote "
            f"{parts.hostname or clone_url!r}: tokens only travel over HTTPS."
        )
    if parts.username or parts.password:
        raise GitHubNotConfigured("The clone URL must not carry credentials itself.")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.{parts.scheme}://{host}/.extraHeader",
        "GIT_CONFIG_VALUE_0": basic_header(token),
    }
