"""What the workflow stages call so GitHub projects behave as GitHub users expect. Each is a
no-op for a project that is not on GitHub."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from errands.errors import GitError
from errands.github import forge
from errands.github.errors import GitHubError, PullNotMergeable
from errands.github.intake import request_sync
from errands.settings import Settings
from errands.store import Project, Task

if TYPE_CHECKING:
    # The job context pulls in the agent stack; the CLI's quick commands import this module.
    from errands.workflow.context import JobContext


def nudge(session: Session, settings: Settings, project: Project) -> None:
    """Something GitHub should hear about happened (questions asked, a branch ready for
    review, a review comment): queue the project's github job in the same transaction."""
    if project.github_repo is not None:
        request_sync(session, settings, project.id)


def github_host(settings: Settings) -> str:
    """The git host of the configured API: api.github.com → github.com; an Enterprise
    Server's https://HOST/api/v3 → HOST."""
    host = urlsplit(settings.github_api_url).hostname or ""
    return "github.com" if host == "api.github.com" else host


def git_env(settings: Settings, origin: str) -> dict[str, str]:
    """Credentials (as environment, see :mod:`errands.github.gitauth`) for git commands
    against ``origin`` when it is an HTTPS repository on the configured GitHub."""
    parts = urlsplit(origin)
    if parts.scheme != "https" or not forge.configured(settings):
        return {}
    if parts.hostname != github_host(settings):
        return {}
    full_name = parts.path.strip("/").removesuffix(".git")
    if full_name.count("/") != 1:
        return {}
    with forge.repo_access(settings, full_name) as access:
        return access.git_env(origin)


def merge_pull_request(ctx: JobContext) -> bool:
    """Squash-merge the task's pull request through the API; False when it has none.

    The merge names the head commit that was reviewed: if someone pushed to the branch on
    GitHub since, GitHub refuses (409) and the task stays in review saying so.
    """
    from errands.workflow.merge import record_merged, squash_message

    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        project = task.project
        if project.github_repo is None or task.github_pr is None:
            return False
        full_name, installation = project.github_repo, project.github_installation_id
        number, branch, origin = task.github_pr, task.branch, project.origin
        base_branch = task.base_branch
        title, message = f"{task.title} (#{number})", squash_message(task)
    mirror = ctx.mirror(origin)
    head = mirror.resolve(f"refs/heads/{branch}") if branch else None
    if head is None:
        raise GitHubError(f"Task {ctx.task_id} has no branch to merge.")
    with forge.repo_access(ctx.settings, full_name, installation) as access:
        pull = access.api.pull(number)
        if pull.get("merged"):
            commit = str(pull["merge_commit_sha"])  # merged before a crash, or on GitHub
        elif pull.get("state") != "open":
            raise PullNotMergeable(f"Pull request #{number} was closed on GitHub.", files=[])
        else:
            commit = access.api.squash_merge(number, sha=head, title=title, message=message)
    try:
        mirror.fetch()
    except GitError as exc:
        ctx.emit("github.fetch_failed", f"Merged, but fetching the new base failed: {exc}")
    record_merged(
        ctx,
        commit,
        f"Squash-merged pull request #{number} on GitHub as {commit[:10]}",
        base_branch=base_branch,
        pull_request=number,
    )
    return True
