"""Where a project's mirror and its workspaces live. Kept apart from the job context so the
CLI's quick commands (diff, comment, index) do not import the agent stack."""

from __future__ import annotations

from pathlib import Path

from errands.errors import GitError
from errands.forges.registry import forge_for_origin
from errands.git import Mirror, WorkspacePool
from errands.settings import Settings


def mirror_path(settings: Settings, project_id: int) -> Path:
    return settings.mirrors_dir / f"project-{project_id}.git"


def pool_for(settings: Settings, mirror: Mirror, project_id: int) -> WorkspacePool:
    return WorkspacePool(mirror, settings.workspaces_dir / f"project-{project_id}")


def open_mirror(settings: Settings, project_id: int, origin: str) -> Mirror:
    # A forge's repository (GitHub over HTTPS) gets its token through git's environment
    # (never in the remote URL or config); any other origin gets nothing.
    auth_env = forge_for_origin(settings, origin).git_env(origin)
    return Mirror.create(mirror_path(settings, project_id), origin, auth_env=auth_env)


def base_tip(mirror: Mirror, origin: str, branch: str) -> str:
    """The commit the base branch points at in the (freshly fetched) mirror."""
    sha = mirror.resolve(mirror.base_ref(branch))
    if sha is None:
        raise GitError(f"The base branch {branch!r} does not exist in {origin}.")
    return sha
