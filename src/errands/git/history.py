"""Reading commit metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from errands.git.repo import check_rev
from errands.git.runner import git

# One field per line; only the body may span lines, so it comes last. Records are
# NUL-separated (-z): a commit message cannot contain NUL.
_FORMAT = "%H%n%P%n%an <%ae>%n%at%n%s%n%b"


@dataclass(frozen=True, slots=True)
class CommitInfo:
    sha: str
    parent: str | None
    subject: str
    body: str
    author: str
    timestamp: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_commits(repo: Path, base: str, tip: str) -> list[CommitInfo]:
    """Commits reachable from ``tip`` but not ``base``, oldest first."""
    revs = f"{check_rev(base)}..{check_rev(tip)}"
    out = git(
        "log", "-z", "--reverse", "--no-show-signature", f"--format={_FORMAT}", revs, "--", cwd=repo
    )
    return [_parse(record) for record in out.split("\0") if record.strip()]


def _parse(record: str) -> CommitInfo:
    sha, parents, author, timestamp, subject, body = record.split("\n", 5)
    return CommitInfo(
        sha=sha,
        # A task branch is linear; for a merge commit the first parent is its history.
        parent=parents.split()[0] if parents else None,
        subject=subject,
        body=body.strip("\n"),
        author=author,
        timestamp=int(timestamp),
    )
