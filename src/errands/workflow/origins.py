"""Which repository a new project may be attached to, and under which name it is stored.

A project's origin is where Errands fetches from, pushes task branches to and, on approve,
lands the merge: whoever attaches a repository can read it and move its base branch. So:

- A local path or ``file://`` URL is a repository on the server's own disk. The machine's
  user (the CLI, which writes straight into the store, or the server while no account exists)
  may attach any; once accounts exist, a request through the server may attach only those
  inside a directory the administrator lists in ``ERRANDS_LOCAL_ORIGINS`` (none by default).
- Nothing inside ``$ERRANDS_HOME`` (other projects' mirrors, workspaces, the database) ever.
- A repository is compared by its canonical identity (the real path of its git directory,
  symlinks, ``..``, trailing slashes, ``file://`` and linked work trees resolved), and one
  organization's repository cannot be attached by another.
- A repository on the configured GitHub over HTTPS would be fetched and pushed with the
  server's own GitHub credentials: through the server, it is added as a GitHub project
  (``POST /api/github/projects``), which checks the organization's access to it.

Every refusal is the user's mistake or a policy, never a server error: 4xx naming it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from errands.accounts.errors import Forbidden
from errands.errors import Conflict, GitError, InvalidInput, NotAGitRepository
from errands.forges.registry import forge_for_origin
from errands.git import current_branch, find_repository, git
from errands.git.repo import local_repository
from errands.settings import Settings
from errands.store import Project

MAX_ORIGIN = 2_000  # characters; a path or URL longer than this is a mistake
LS_REMOTE_TIMEOUT = 60.0  # seconds to reach a remote while the user waits for an answer
_URL = re.compile(r"^(https?|ssh|git)://|^[\w.-]+@[\w.-]+:")


@dataclass(frozen=True)
class CheckedOrigin:
    origin: str  # what the project stores: a canonical path, or the URL as given
    default_branch: str
    default_name: str


def check_origin(
    session: Session, settings: Settings, origin: str, *, org_id: int | None, trusted: bool
) -> CheckedOrigin:
    """``origin`` if a project of organization ``org_id`` may use it (``trusted``: the
    machine's own user, see the module's docstring), else a 4xx error naming why."""
    origin = origin.strip()
    if not origin:
        raise InvalidInput("A project needs a local path or a git URL.")
    if len(origin) > MAX_ORIGIN or any(ord(c) < 32 for c in origin):
        raise InvalidInput(
            f"A project's origin is a path or git URL of at most {MAX_ORIGIN:,} characters, "
            "without control characters."
        )
    if origin.startswith("file:"):
        return _local(session, settings, _file_url_path(origin), org_id=org_id, trusted=trusted)
    if _URL.match(origin):
        return _remote(settings, origin, trusted=trusted)
    return _local(session, settings, origin, org_id=org_id, trusted=trusted)


def _file_url_path(origin: str) -> str:
    parts = urlsplit(origin)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise InvalidInput(f"{origin} is not a file:// URL of a repository on this machine.")
    return unquote(parts.path)


def _remote(settings: Settings, origin: str, *, trusted: bool) -> CheckedOrigin:
    forge = forge_for_origin(settings, origin)
    if not trusted and forge.claims_origin(origin):
        raise Forbidden(
            f"{origin} is on {forge.name}, which Errands reaches with this server's credentials: "
            f"add it as a {forge.name} project (POST /api/{forge.name}/projects), which checks "
            "your access."
        )
    try:
        heads = git(
            "ls-remote", "--symref", origin, "HEAD", cwd=Path.cwd(), timeout=LS_REMOTE_TIMEOUT
        )
    except GitError as exc:
        raise InvalidInput(f"Could not read the git repository at {origin}: {exc.message}") from exc
    match = re.search(r"ref: refs/heads/(\S+)\s+HEAD", heads)
    name = origin.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return CheckedOrigin(origin, match.group(1) if match else "main", name or "project")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _check_place(settings: Settings, path: Path, given: str, *, trusted: bool) -> None:
    """Refused inside the data directory always, and outside the allowed directories for
    a caller that is not the machine's user."""
    if _inside(path, _real(settings.home)):
        raise Forbidden(f"{given} is inside Errands' own data directory; it cannot be a project.")
    if trusted:
        return
    if not any(_inside(path, _real(d.expanduser())) for d in settings.local_origins):
        raise Forbidden(
            f"{given} is a path on the server: repositories on the server's disk may be "
            "attached only inside the directories the administrator allows "
            "(ERRANDS_LOCAL_ORIGINS), and it is not inside one."
        )


def repository_identity(repo: Path) -> Path:
    """The real path of the repository's git directory: every spelling of a repository (and
    each linked work tree of it) has the same one."""
    common = git("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=repo).strip()
    return _real(Path(common))


def _local(
    session: Session, settings: Settings, given: str, *, org_id: int | None, trusted: bool
) -> CheckedOrigin:
    try:
        # Checked before git looks at it: a caller may not probe what exists elsewhere.
        _check_place(settings, _real(Path(given).expanduser().absolute()), given, trusted=trusted)
        repo = _real(find_repository(Path(given).expanduser().absolute()))
        identity = repository_identity(repo)
    except OSError as exc:
        raise InvalidInput(f"{given} is not a usable path: {exc.strerror or exc}.") from exc
    except NotAGitRepository:
        raise
    except GitError as exc:  # e.g. "detected dubious ownership": git's words say what
        raise InvalidInput(exc.message) from exc
    # git found the repository from the path: it may lie above it, or (a linked work tree)
    # keep its objects elsewhere. Both must be allowed places too.
    for place in (repo, identity):
        _check_place(settings, place, given, trusted=trusted)
    _check_not_anothers(session, identity, given, org_id)
    return CheckedOrigin(str(repo), current_branch(repo) or "main", repo.name.removesuffix(".git"))


def _check_not_anothers(session: Session, identity: Path, given: str, org_id: int | None) -> None:
    """A repository on this machine belongs to the organization that attached it first."""
    from errands.accounts import service  # argon2 and cryptography: slow to import

    mine = org_id if org_id is not None else service.first_org_id(session)
    for project in session.scalars(select(Project)):
        if service.project_org_id(session, project) == mine:
            continue
        try:
            theirs = local_repository(project.origin)
            if theirs is not None and repository_identity(theirs) == identity:
                raise Conflict(f"{given} is already a project of another organization.")
        except (OSError, GitError):
            continue  # their repository is gone or unreadable: nothing to take
