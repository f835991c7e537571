"""GitHub as a forge: a project imported from a GitHub repository. Its pull request is where
the task is reviewed and merged, its issue where questions are asked; the ``github`` job
(:mod:`errands.github.sync`) carries both directions.

The GitHub client's libraries (httpx, jwt) are imported where used: the CLI's quick commands
consult the forges too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from errands.domain import JobKind
from errands.errors import GitError
from errands.forges.base import Emit, Forge, Merged, PendingMerge, Stage
from errands.git import Mirror
from errands.settings import Settings
from errands.store import Project, Task


def github_host(settings: Settings) -> str:
    """The git host of the configured API: api.github.com → github.com; an Enterprise
    Server's https://HOST/api/v3 → HOST."""
    host = urlsplit(settings.github_api_url).hostname or ""
    return "github.com" if host == "api.github.com" else host


def configured(settings: Settings) -> bool:
    return bool(settings.github_token or settings.github_app_id)


class GitHubForge:
    name = "github"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def claims(self, project: Project) -> bool:
        return project.github_repo is not None

    def claims_origin(self, origin: str) -> bool:
        parts = urlsplit(origin)
        return (
            parts.scheme == "https"
            and configured(self.settings)
            and parts.hostname == github_host(self.settings)
        )

    def git_env(self, origin: str) -> dict[str, str]:
        """Credentials (see :mod:`errands.github.gitauth`) when ``origin`` is an HTTPS
        repository on the configured GitHub."""
        if not self.claims_origin(origin):
            return {}
        full_name = urlsplit(origin).path.strip("/").removesuffix(".git")
        if full_name.count("/") != 1:
            return {}
        from errands.github.forge import repo_access

        with repo_access(self.settings, full_name) as access:
            return access.git_env(origin)

    def nudge(self, session: Session, project: Project) -> None:
        if project.github_repo is not None:
            from errands.github.intake import request_sync

            request_sync(session, self.settings, project.id)

    def pending_merge(self, task: Task, message: str) -> PendingMerge | None:
        project = task.project
        if project.github_repo is None or task.github_pr is None:
            return None
        single = PullRequestMerge(
            settings=self.settings,
            task_id=task.id,
            full_name=project.github_repo,
            installation=project.github_installation_id,
            number=task.github_pr,
            branch=task.branch,
            base_branch=task.base_branch,
            title=f"{task.title} (#{task.github_pr})",
            message=message,
        )
        if task.github_stack is None:
            return single
        # Each lower pull request must still hold the subtask commit that was reviewed.
        layers = tuple(
            (s.github_pr, s.commit_sha)
            for s in task.subtasks
            if s.github_pr is not None and s.commit_sha and s.github_pr != task.github_pr
        )
        same: dict[str, Any] = {f.name: getattr(single, f.name) for f in fields(single)}
        return StackMerge(**same, layers=layers)

    def stages(self) -> Mapping[JobKind, Stage]:
        from errands.github import sync

        return {JobKind.GITHUB: sync.run}


@dataclass(frozen=True)
class PullRequestMerge:
    """Squash-merge the task's pull request through the API.

    The merge names the head commit that was reviewed: if someone pushed to the branch on
    GitHub since, GitHub refuses (409) and the task stays in review saying so.
    """

    settings: Settings
    task_id: int
    full_name: str
    installation: int | None
    number: int
    branch: str | None
    base_branch: str
    title: str
    message: str

    def _head(self, mirror: Mirror) -> str:
        """The reviewed head of the task branch, which the merge names."""
        from errands.github.errors import GitHubError

        head = mirror.resolve(f"refs/heads/{self.branch}") if self.branch else None
        if head is None:
            raise GitHubError(f"Task {self.task_id} has no branch to merge.")
        return head

    def _merged_already(self, pull: dict[str, Any]) -> str | None:
        """The merge commit of a pull request merged before a crash or on GitHub; None for
        an open one; a closed one is refused."""
        from errands.github.errors import PullNotMergeable

        if pull.get("merged"):
            return str(pull["merge_commit_sha"])
        if pull.get("state") != "open":
            raise PullNotMergeable(f"Pull request #{self.number} was closed on GitHub.", files=[])
        return None

    def perform(self, mirror: Mirror, emit: Emit) -> Merged:
        from errands.github.forge import repo_access

        head = self._head(mirror)
        with repo_access(self.settings, self.full_name, self.installation) as access:
            commit = self._merged_already(access.api.pull(self.number))
            if commit is None:
                commit = access.api.squash_merge(
                    self.number, sha=head, title=self.title, message=self.message
                )
        _fetch_new_base(mirror, emit)
        return Merged(
            commit,
            f"Squash-merged pull request #{self.number} on GitHub as {commit[:10]}",
            {"base_branch": self.base_branch, "pull_request": self.number},
        )


@dataclass(frozen=True)
class StackMerge(PullRequestMerge):
    """Land a task published as stacked pull requests: its pull request is the top of the
    stack, and GitHub's stack merge (the asynchronous merge API; the only one that merges a
    stack) lands every pull request of the stack, bottom-up, each squashed, atomically. The
    merge names the reviewed head of the top pull request, and each lower pull request's head
    is checked against the subtask commit that was reviewed before the merge is asked for (a
    push to a layer's branch on GitHub would otherwise land unreviewed); the base branch then
    holds one commit per subtask."""

    layers: tuple[tuple[int, str], ...] = ()  # (pull request, reviewed commit) below the top

    def perform(self, mirror: Mirror, emit: Emit) -> Merged:
        from errands.github.errors import PullNotMergeable
        from errands.github.forge import repo_access
        from errands.github.stacks import merge_stack, stack_of

        head = self._head(mirror)
        with repo_access(self.settings, self.full_name, self.installation) as access:
            pull = access.api.pull(self.number)
            stack = stack_of(access.api, self.number)
            pulls = [int(p["number"]) for p in (stack or {}).get("pull_requests", [])]
            commit = self._merged_already(pull)
            if commit is None:
                heads = {
                    int(p["number"]): str(p.get("head", {}).get("sha"))
                    for p in (stack or {}).get("pull_requests", [])
                    if p.get("merged_at") is None
                }
                moved = [n for n, sha in self.layers if n in heads and heads[n] != sha]
                if moved:
                    raise PullNotMergeable(
                        "Not merged: the head of pull request(s) "
                        + ", ".join(f"#{n}" for n in moved)
                        + " moved on GitHub since review (a push to a layer's branch); "
                        "the next sync puts the reviewed commits back",
                        files=[],
                    )
                commit = merge_stack(
                    access.api, self.number, sha=head, title=self.title, message=self.message
                )
        _fetch_new_base(mirror, emit)
        return Merged(
            commit,
            f"Landed the stack of pull requests {', '.join(f'#{n}' for n in pulls)} on GitHub, "
            f"bottom-up through GitHub's stack merge; {self.base_branch} is at {commit[:10]}",
            {"base_branch": self.base_branch, "pull_request": self.number, "stack": pulls},
        )


def _fetch_new_base(mirror: Mirror, emit: Emit) -> None:
    """Bring the merged base into the mirror; the merge stands whether or not this works."""
    try:
        mirror.fetch()
    except GitError as exc:
        emit("github.fetch_failed", f"Merged, but fetching the new base failed: {exc}")


def forge(settings: Settings) -> Forge:
    return GitHubForge(settings)
