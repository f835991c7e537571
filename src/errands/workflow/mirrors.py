"""Where a project's mirror lives. Kept apart from the job context so the CLI's quick commands
(diff, comment) do not import the agent stack."""

from __future__ import annotations

from pathlib import Path

from errands.errors import GitError
from errands.git import Mirror
from errands.settings import Settings


def mirror_path(settings: Settings, project_id: int) -> Path:
    return settings.mirrors_dir / f"project-{project_id}.git"


def open_mirror(settings: Settings, project_id: int, origin: str) -> Mirror:
    # A GitHub repository over HTTPS gets its token through git's environment (never in
    # the remote URL or config); any other origin gets nothing. Imported here: the GitHub
    # client's libraries (httpx, jwt) take longer to import than a quick CLI command runs.
    from errands.github import hooks as github_hooks

    auth_env = github_hooks.git_env(settings, origin)
    return Mirror.create(mirror_path(settings, project_id), origin, auth_env=auth_env)


def base_tip(mirror: Mirror, origin: str, branch: str) -> str:
    """The commit the base branch points at in the (freshly fetched) mirror."""
    sha = mirror.resolve(mirror.base_ref(branch))
    if sha is None:
        raise GitError(f"The base branch {branch!r} does not exist in {origin}.")
    return sha
