"""Git for Errands: a mirror per project, a workspace per task, diffs, squash and land.

Everything runs the ``git`` CLI (see :mod:`errands.git.runner`); failures surface as
:class:`errands.errors.GitError` and its subclasses.
"""

from errands.git.diff import Detail, Diff, FileDiff, Hunk, Line, parse_diff
from errands.git.history import CommitInfo
from errands.git.mirror import Mirror
from errands.git.pool import WorkspacePool
from errands.git.repo import (
    TASK_BRANCH_PREFIX,
    current_branch,
    find_repository,
    slugify,
    task_branch,
)
from errands.git.runner import GitResult, git, run_git
from errands.git.workspace import Workspace

__all__ = [
    "TASK_BRANCH_PREFIX",
    "CommitInfo",
    "Detail",
    "Diff",
    "FileDiff",
    "GitResult",
    "Hunk",
    "Line",
    "Mirror",
    "Workspace",
    "WorkspacePool",
    "current_branch",
    "find_repository",
    "git",
    "parse_diff",
    "run_git",
    "slugify",
    "task_branch",
]
