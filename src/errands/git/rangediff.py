"""What changed between two versions of one commit, as ``git range-diff`` says it: a diff of
the two patches, so a change of the base underneath (an earlier subtask rewritten) is not
part of it, only what this commit itself does differently."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from errands.git.runner import git

Kind = Literal["section", "file", "hunk", "line"]

# One commit each side: pair them whatever their difference (git otherwise reports an old
# commit dropped and a new one added when a fix rewrote most of it).
CREATION_FACTOR = "--creation-factor=999"


@dataclass(frozen=True)
class RangeLine:
    """A line of the interdiff: ``outer`` is how it changed between the versions ('-' only
    in the old patch, '+' only in the new, ' ' in both); ``inner`` is the patch line itself
    (its own '+', '-' or ' ' first for a line of code)."""

    outer: str
    inner: str
    kind: Kind

    @property
    def title(self) -> str:
        """A section's heading without its '@@' ('g: def f():', 'Commit message')."""
        return self.inner.removeprefix("@").strip() if self.kind == "section" else self.inner

    def to_dict(self) -> dict[str, str]:
        return {"outer": self.outer, "inner": self.inner, "kind": self.kind}


@dataclass(frozen=True)
class RangeDiff:
    old: str
    new: str
    same: bool  # the two patches are identical (a rebase that changed nothing of it)
    lines: list[RangeLine]

    def text(self) -> str:
        """The body as git prints it (four spaces, the outer marker, the patch line)."""
        return "".join(f"    {line.outer}{line.inner}\n" for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "same": self.same,
            "lines": [line.to_dict() for line in self.lines],
        }


def _kind(outer: str, inner: str) -> Kind:
    if outer == "@":
        return "section"  # '@@ path: context' or '@@ Metadata' / '@@ Commit message'
    if inner.startswith(" ## "):
        return "file"
    if inner.startswith("@@"):
        return "hunk"
    return "line"


def parse_range_diff(old: str, new: str, output: str) -> RangeDiff:
    lines: list[RangeLine] = []
    same = False
    for raw in output.splitlines():
        if not raw.startswith("    "):
            # The pair's heading: '1:  abc = 1:  def subject' when the patches are equal.
            fields = raw.split()
            same = same or (len(fields) > 2 and fields[2] == "=")
            continue
        body = raw[4:]
        outer, inner = (body[:1] or " "), body[1:]
        lines.append(RangeLine(outer, inner, _kind(outer, inner)))
    return RangeDiff(old, new, same, lines)


def range_diff(repo: Path, old: str, new: str) -> RangeDiff:
    """Compare commit ``old`` with commit ``new`` (two versions of one subtask)."""
    output = git("range-diff", "--no-color", CREATION_FACTOR, f"{old}^!", f"{new}^!", cwd=repo)
    return parse_range_diff(old, new, output)


def file_patch(repo: Path, commit: str, path: str) -> str:
    """``commit``'s change to ``path`` without what depends on where the commit sits (blob
    ids, hunk line numbers): the same text for a change that only moved onto a new base."""
    out = git(
        "--literal-pathspecs",
        "diff-tree",
        "-p",
        "--no-color",
        f"{commit}^",
        commit,
        "--",
        path,
        cwd=repo,
    )
    kept = ("@@" if line.startswith("@@") else line for line in out.splitlines())
    return "\n".join(line for line in kept if not line.startswith("index "))
