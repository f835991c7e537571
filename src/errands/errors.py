"""Errands' own exception tree.

Lower-layer errors (git, SQLAlchemy, HTTP, the LLM SDKs) are translated into these at the
boundary with ``raise ... from exc``, so callers and users only ever see these types. Each
carries an HTTP status and a stable machine-readable ``code`` so the API and the CLI can
report them the same way.
"""

from __future__ import annotations


class Paused(Exception):
    """A stage stopped on purpose, its task waiting for people (questions asked during
    execution): the job ends successfully, with nothing to retry."""


class ErrandsError(Exception):
    """Base of every error Errands raises on purpose."""

    code: str = "error"
    status: int = 400
    # Worth running the job again later (a rate limit, an outage, a network blip), as
    # opposed to terminal (bad input, a bug, a refusal): the job ledger retries these with
    # exponential backoff until the job's attempts are used up.
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries (say, Retry-After)."""
        return {}


class NotFound(ErrandsError):
    code = "not_found"
    status = 404


class InvalidInput(ErrandsError):
    code = "invalid_input"
    status = 422


class Conflict(ErrandsError):
    """The request is valid but the thing it targets is not in a state that allows it."""

    code = "conflict"
    status = 409


class IllegalTransition(Conflict):
    code = "illegal_transition"


class ConfigError(ErrandsError):
    """A setting is missing or wrong; the message names the setting to set."""

    code = "config_error"
    status = 400


class GitError(ErrandsError):
    code = "git_error"
    status = 500


class NotAGitRepository(GitError):
    code = "not_a_git_repository"
    status = 422


class MergeConflict(GitError):
    """Squashing the task branch onto the base branch conflicts."""

    code = "merge_conflict"
    status = 409

    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


class NestedRepository(GitError):
    """The work tree holds a git repository or a gitlink the agent made: Errands never
    commits one (its config and hooks are the agent's, and host-side git would enter it)."""

    code = "nested_repository"
    status = 422

    def __init__(self, paths: list[str]) -> None:
        super().__init__(nested_message(paths))
        self.paths = paths


def nested_message(paths: list[str]) -> str:
    shown = ", ".join(paths[:20]) + (f" and {len(paths) - 20} more" if len(paths) > 20 else "")
    return (
        f"nested git repositories or gitlinks in the workspace: {shown}. Errands never "
        "commits a repository inside the repository, a submodule or a gitlink; remove them "
        "(e.g. `rm -rf <path>` for a directory you ran `git init` or `git clone` in, "
        "`git rm --cached <path>` for a gitlink), or keep the files without their .git "
        "directory."
    )


class BaseMoved(GitError):
    """The base branch moved while we were landing a merge (a compare-and-swap lost)."""

    code = "base_moved"
    status = 409


class NothingToMerge(GitError):
    """The task's branch changes nothing on the base branch: merging it would land an empty
    commit and call the task done. (Cancel the task, or request changes to get a change.)"""

    code = "nothing_to_merge"
    status = 409


class BranchMoved(GitError):
    """A task branch on origin is no longer where this job last saw it (a compare-and-swap
    push lost): another attempt of the job published meanwhile. Retried: the next attempt
    starts from origin's copy."""

    code = "branch_moved"
    status = 409
    retryable = True


class DirtyWorkingTree(GitError):
    """Landing the merge would overwrite uncommitted work in the user's checkout."""

    code = "dirty_working_tree"
    status = 409


class LLMError(ErrandsError):
    """The model endpoint failed (HTTP errors after retries, refused connections)."""

    code = "llm_error"
    status = 502


class LLMUnavailable(LLMError):
    """The model endpoint is rate-limiting, overloaded or unreachable: try again later."""

    code = "llm_unavailable"
    retryable = True


class AgentOutputError(LLMError):
    """The model kept returning output that does not validate."""

    code = "agent_output_error"


class VerificationFailed(ErrandsError):
    code = "verification_failed"
    status = 409


class Cancelled(ErrandsError):
    code = "cancelled"
    status = 409


class LeaseLost(ErrandsError):
    """This worker no longer holds the job's lease (it stalled past it): stop, commit nothing."""

    code = "lease_lost"
    status = 409


class CommandError(ErrandsError):
    """A command could not be run at all (not: it ran and exited non-zero)."""

    code = "command_error"
    status = 500
