"""Where an instance's repository comes from, and the origin its Errands project works on.

A repository is found in a local mirror directory (``owner__name``, ``owner/name`` or
``name``, bare or not) or cloned once from its URL into the run's cache. Each attempt at an
instance gets its own bare origin holding a single branch, ``main``, at the base commit:
it borrows the source's objects (git alternates), so making one costs nothing, and the
task branches Errands pushes land there, never in the source.
"""

from __future__ import annotations

import threading
from pathlib import Path

from errands.errors import GitError
from errands.git import git
from errands.git.repo import resolve

BASE_BRANCH = "main"


class EnvironmentFailure(Exception):
    """The instance's environment (repository, base commit, setup) could not be built:
    reported as such, not as a failure of the agent."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Repositories:
    def __init__(self, cache: Path, *, mirrors: Path | None, url_template: str) -> None:
        self.cache = cache
        self.mirrors = mirrors
        self.url_template = url_template
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def source(self, repo: str) -> Path:
        """A local git directory holding ``repo``'s history."""
        safe = repo.replace("/", "__")
        if self.mirrors is not None:
            owner_name = repo.split("/")
            for candidate in (safe, repo, owner_name[-1]):
                for path in (self.mirrors / candidate, self.mirrors / f"{candidate}.git"):
                    found = _git_dir(path)
                    if found is not None:
                        return found
        clone = self.cache / f"{safe}.git"
        with self._lock(repo):
            if _git_dir(clone) is None:
                url = self.url_template.format(repo=repo)
                self.cache.mkdir(parents=True, exist_ok=True)
                partial = self.cache / f".{safe}.cloning"
                try:
                    _remove(partial)  # a clone a crash cut short
                    git("clone", "--bare", "--quiet", url, str(partial), cwd=self.cache)
                    partial.rename(clone)
                except GitError as exc:
                    raise EnvironmentFailure(f"Could not clone {url}: {exc.message}") from exc
        return clone

    def origin(self, source: Path, base_commit: str, path: Path) -> Path:
        """A bare repository at ``path`` whose ``main`` is ``base_commit`` of ``source``."""
        if resolve(source, base_commit) is None:
            raise EnvironmentFailure(
                f"The base commit {base_commit} is not in {source} (an older mirror? fetch it)."
            )
        objects = Path(git("rev-parse", "--git-path", "objects", cwd=source).strip())
        if not objects.is_absolute():
            objects = source / objects
        if path.exists():
            _remove(path)
        path.mkdir(parents=True)
        git("init", "--bare", "--quiet", "-b", BASE_BRANCH, str(path), cwd=path)
        (path / "objects" / "info" / "alternates").write_text(f"{objects.resolve()}\n")
        git("update-ref", f"refs/heads/{BASE_BRANCH}", base_commit, cwd=path)
        return path

    def _lock(self, repo: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(repo, threading.Lock())


def _git_dir(path: Path) -> Path | None:
    if not path.is_dir():
        return None
    try:
        found = git("rev-parse", "--absolute-git-dir", cwd=path).strip()
    except GitError:
        return None
    # A directory inside some other repository is not a mirror of this one.
    if Path(found) not in (path.resolve(), (path / ".git").resolve()):
        return None
    return path


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
