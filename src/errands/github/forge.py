"""GitHub access built from the settings: which credentials, for which repository.

Only this module reads the GitHub settings. App identities are kept per process (keyed by API
URL and app id) so installation tokens are cached across jobs rather than fetched per job.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from errands.github.auth import GitHubApp, InstallationToken, RepoCredentials, StaticToken
from errands.github.client import GitHubClient, Throttle
from errands.github.errors import GitHubNotConfigured
from errands.github.gitauth import git_auth_env
from errands.github.rest import RepoAPI
from errands.settings import Settings

_apps: dict[tuple[str, str], GitHubApp] = {}
_apps_lock = threading.Lock()


def webhook_secret(settings: Settings) -> str:
    if settings.github_webhook_secret is None:
        raise GitHubNotConfigured(
            "GitHub webhooks are not configured: set ERRANDS_GITHUB_WEBHOOK_SECRET to the "
            "secret of the App's (or repository's) webhook."
        )
    return settings.github_webhook_secret.get_secret_value()


def throttle(settings: Settings) -> Throttle:
    return Throttle(max_wait=settings.github_max_wait)


def _private_key(settings: Settings) -> str:
    if settings.github_private_key is not None:
        return settings.github_private_key.get_secret_value()
    if settings.github_private_key_path is not None:
        try:
            return settings.github_private_key_path.read_text()
        except OSError as exc:
            raise GitHubNotConfigured(
                f"ERRANDS_GITHUB_PRIVATE_KEY_PATH ({settings.github_private_key_path}) cannot "
                f"be read: {exc.strerror}"
            ) from exc
    raise GitHubNotConfigured(
        "ERRANDS_GITHUB_APP_ID is set but the App's private key is not: set "
        "ERRANDS_GITHUB_PRIVATE_KEY or ERRANDS_GITHUB_PRIVATE_KEY_PATH."
    )


def app(settings: Settings) -> GitHubApp | None:
    """The process's GitHub App identity, or None when Errands uses a personal token."""
    if not settings.github_app_id:
        return None
    key = (settings.github_api_url, settings.github_app_id)
    with _apps_lock:
        found = _apps.get(key)
        if found is None:
            found = GitHubApp(
                settings.github_app_id,
                _private_key(settings),
                settings.github_api_url,
                throttle=throttle(settings),
            )
            _apps[key] = found
        return found


@dataclass
class RepoAccess:
    """Everything needed to work on one repository: REST calls and git credentials."""

    api: RepoAPI
    credentials: RepoCredentials
    installation_id: int | None

    def git_env(self, clone_url: str) -> dict[str, str]:
        return git_auth_env(clone_url, self.credentials.token())

    def close(self) -> None:
        self.api.client.close()

    def __enter__(self) -> RepoAccess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def repo_access(
    settings: Settings, full_name: str, installation_id: int | None = None
) -> RepoAccess:
    """Credentials and a client for ``full_name`` (owner/name): the App's installation token
    narrowed to that repository when an App is configured, else the personal token."""
    github_app = app(settings)
    credentials: RepoCredentials
    if github_app is not None:
        if installation_id is None:
            installation_id = github_app.installation_for(full_name)
        credentials = InstallationToken(github_app, installation_id, full_name.partition("/")[2])
    elif settings.github_token is not None:
        credentials = StaticToken(settings.github_token.get_secret_value())
    else:
        raise GitHubNotConfigured(
            "GitHub is not configured: set ERRANDS_GITHUB_APP_ID and ERRANDS_GITHUB_PRIVATE_KEY "
            "(a GitHub App) or ERRANDS_GITHUB_TOKEN (a fine-grained personal access token)."
        )
    client = GitHubClient(
        settings.github_api_url,
        lambda: f"Bearer {credentials.token()}",
        on_unauthorized=credentials.invalidate,
        throttle=throttle(settings),
    )
    return RepoAccess(RepoAPI(client, full_name), credentials, installation_id)
