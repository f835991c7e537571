"""Finding repositories and naming branches."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

from errands.errors import GitError, InvalidInput, NotAGitRepository
from errands.git.runner import error_for, run_git

TASK_BRANCH_PREFIX = "errands/"

_NON_SLUG = re.compile(r"[^a-z0-9]+")


def find_repository(path: Path) -> Path:
    """The top level of the work tree containing ``path``, or the bare repository itself."""
    path = path.expanduser()
    if not path.is_dir():
        raise NotAGitRepository(f"{path} is not a git repository (no such directory)")
    result = run_git("rev-parse", "--is-bare-repository", "--is-inside-work-tree", cwd=path)
    if not result.ok:
        if "not a git repository" in result.stderr:
            raise NotAGitRepository(f"{path} is not a git repository")
        # e.g. "detected dubious ownership": the message git gives is the useful part.
        raise error_for(result)
    is_bare, inside_work_tree = result.stdout.split()
    if is_bare == "true":
        return Path(run_git_checked("rev-parse", "--absolute-git-dir", cwd=path))
    if inside_work_tree != "true":
        raise NotAGitRepository(f"{path} is not a git repository (it is inside a .git directory)")
    return Path(run_git_checked("rev-parse", "--show-toplevel", cwd=path))


def local_repository(origin: str) -> Path | None:
    """The repository ``origin`` names when it is on this machine, else None."""
    if origin.startswith("file://"):
        return find_repository(Path(unquote(urlsplit(origin).path)))
    if "://" in origin:
        return None
    candidate = Path(origin).expanduser()
    if candidate.is_absolute() or origin.startswith((".", "~")) or candidate.exists():
        return find_repository(candidate.absolute())
    # Anything else ("git@host:owner/repo") is a remote git reaches over a transport.
    return None


def run_git_checked(*args: str, cwd: Path) -> str:
    result = run_git(*args, cwd=cwd)
    if not result.ok:
        raise error_for(result)
    return result.stdout.strip()


def current_branch(repo: Path) -> str | None:
    """The branch HEAD points at (even if it has no commits yet), or None when detached."""
    result = run_git("symbolic-ref", "--quiet", "HEAD", cwd=repo)
    if result.returncode == 1:
        return None
    if not result.ok:
        raise error_for(result)
    ref = result.stdout.strip()
    return ref.removeprefix("refs/heads/")


def slugify(title: str, max_len: int = 40) -> str:
    """A lowercase ASCII slug usable in a branch name; never empty."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = _NON_SLUG.sub("-", ascii_title.lower()).strip("-")
    if len(slug) > max_len:
        cut = slug[:max_len]
        # Prefer ending on a whole word unless that would throw most of the slug away.
        boundary = cut.rfind("-")
        slug = cut[:boundary] if boundary >= max_len // 2 else cut
        slug = slug.strip("-")
    return slug or "task"


def task_branch(task_id: int, title: str) -> str:
    return f"{TASK_BRANCH_PREFIX}{task_id}-{slugify(title)}"


# What git's check-ref-format refuses anywhere in a name (refs.c, check_refname_component):
# control characters, space, ~ ^ : ? * [ and backslash.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def check_branch_name(name: str) -> str:
    """Return ``name`` if it is a valid branch name; raise :class:`InvalidInput` otherwise.

    git's own rules for ``refs/heads/<name>`` (``git check-ref-format``), in Python: this runs
    several times per job, and a git process per call cost more than the rest of the check.
    ``tests/git/test_git_repo.py`` holds it equal to git on generated names. One stricter
    rule: ``@`` alone, which git takes as a branch but which revisions read as HEAD."""
    # A leading dash would be read by git as an option; refs/ would name another namespace.
    if not name or name.startswith("-") or name.startswith("refs/"):
        raise InvalidInput(f"invalid branch name: {name!r}")
    try:
        name.encode("utf-8")  # a lone surrogate cannot reach git's argv
    except UnicodeEncodeError:
        raise InvalidInput(f"invalid branch name: {name!r}") from None
    if (
        _REF_FORBIDDEN.search(name)
        or ".." in name
        or "@{" in name
        or name == "@"
        or name.endswith(".")
        or any(
            not part or part.startswith(".") or part.endswith(".lock") for part in name.split("/")
        )
    ):
        raise InvalidInput(f"invalid branch name: {name!r}")
    return name


def check_rev(rev: str) -> str:
    """Refuse revisions git would parse as options (``--output=…``)."""
    if not rev or rev.startswith("-"):
        raise InvalidInput(f"invalid revision: {rev!r}")
    return rev


def require_task_branch(branch: str) -> str:
    """Errands only ever writes branches it owns, under ``errands/``."""
    check_branch_name(branch)
    if not branch.startswith(TASK_BRANCH_PREFIX):
        raise GitError(f"refusing to write branch {branch!r}: not under {TASK_BRANCH_PREFIX}")
    return branch


def resolve(repo: Path, rev: str) -> str | None:
    """The commit ``rev`` names, or None when it names none."""
    result = run_git("rev-parse", "--verify", "--quiet", f"{check_rev(rev)}^{{commit}}", cwd=repo)
    return result.stdout.strip() if result.ok else None
