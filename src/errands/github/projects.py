"""Projects from GitHub repositories."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from errands.accounts.errors import Forbidden
from errands.errors import Conflict, InvalidInput
from errands.github import forge
from errands.github.intake import request_sync
from errands.settings import Settings
from errands.store import GitHubInstallation, Project, User
from errands.workflow import actions


@dataclass(frozen=True)
class RepoInfo:
    full_name: str
    clone_url: str
    default_branch: str
    installation_id: int | None


def known_installation(session: Session, full_name: str) -> int | None:
    """The installation an installation webhook told us reaches ``full_name``."""
    for row in session.scalars(select(GitHubInstallation).where(GitHubInstallation.active)):
        if full_name in row.repositories:
            return row.id
    return None


def describe(
    settings: Settings,
    full_name: str,
    installation_id: int | None,
    *,
    writer: str | None = None,
) -> RepoInfo:
    """Ask GitHub about the repository (network: call outside any transaction).

    ``writer``: the GitHub login of the person adding it, when accounts exist. The server's
    credentials reach every repository its App is installed on (or its token reaches); an
    organization is entitled only to those its member may write to on GitHub itself."""
    if full_name.count("/") != 1 or not all(full_name.split("/")):
        raise InvalidInput(f"{full_name!r} is not a repository name like owner/name.")
    with forge.repo_access(settings, full_name, installation_id) as access:
        repo = access.api.repository()
        if writer is not None and not access.api.can_write(writer):
            raise Forbidden(
                f"Your GitHub account @{writer} has no write access to {full_name}: only "
                "people who may push to a repository can make it a project."
            )
        return RepoInfo(
            full_name=str(repo["full_name"]),
            clone_url=str(repo["clone_url"]),
            default_branch=str(repo["default_branch"]),
            installation_id=access.installation_id,
        )


def writer_of(session: Session, user_id: int | None) -> str:
    """The GitHub login linked to the account adding a repository (Sign in with GitHub)."""
    user = session.get(User, user_id) if user_id is not None else None
    if user is None or not user.github_login:
        raise Forbidden(
            "Adding a GitHub repository needs your GitHub account linked (Sign in with GitHub), "
            "so Errands can check that you have write access to it."
        )
    return user.github_login


def add_project(
    session: Session, settings: Settings, info: RepoInfo, *, name: str | None = None
) -> Project:
    """A project on the repository: indexed, then its open issues imported."""
    name = actions.check_project_name(
        session, name or info.full_name.split("/")[1], "pass another name"
    )
    if session.scalars(select(Project).where(Project.github_repo == info.full_name)).first():
        raise Conflict(f"{info.full_name} already is a project.")
    project = Project(
        name=name,
        origin=info.clone_url,
        base_branch=info.default_branch,
        github_repo=info.full_name,
        github_installation_id=info.installation_id,
    )
    actions.store_project(
        session, settings, project, f"Project {name} added from GitHub repository {info.full_name}"
    )
    request_sync(session, settings, project.id)  # imports the open issues
    return project


def reimport(session: Session, settings: Settings, project: Project) -> None:
    if project.github_repo is None:
        raise Conflict(f"Project {project.name} is not on GitHub.")
    project.github_imported_at = None
    request_sync(session, settings, project.id)
