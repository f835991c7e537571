"""Errands' private copy of a project's repository, and everything done through it."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from errands.errors import BranchMoved, GitError
from errands.git import diffcache
from errands.git import land as landing
from errands.git.diff import DEFAULT_MAX_LINES_PER_FILE, Detail, Diff, parse_diff
from errands.git.history import CommitInfo, list_commits
from errands.git.lock import LOCK_NAME, LOCKS_DIR, locks_dir, remove_old_locks, repo_lock
from errands.git.lookup import resolve
from errands.git.repo import check_rev, local_repository, require_task_branch
from errands.git.runner import error_for, git, run_git
from errands.git.squash import squash_commit
from errands.git.workspace import Workspace
from errands.git.worktrees import add_worktree, remove_worktree

ORIGIN = "origin"


class Tracked(enum.Enum):
    """The value this mirror last fetched or pushed for a ref (its ``refs/remotes/origin``
    copy), as a compare-and-swap's expected value."""

    TRACKED = "tracked"


TRACKED = Tracked.TRACKED
_FETCH_REFSPEC = "+refs/heads/*:refs/remotes/origin/*"
# Bytes of `git diff` output read at most: past this, later files are left out (and the
# Diff says so) rather than a huge change eating the worker's memory.
DEFAULT_MAX_DIFF_BYTES = 8 * 1024 * 1024
DEFAULT_NETWORK_TIMEOUT = 30 * 60.0


# Caches that running a project's tests and tools leaves in the work tree. A repository that
# does not ignore them itself must still never get them committed by an agent's subtask
# (they also make every task conflict with every other). The mirror's info/exclude applies
# to all its workspaces and never touches the user's repository.
GENERATED_ARTEFACTS = (
    "__pycache__/",
    "*.py[cod]",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".hypothesis/",
)


def _config(repo: Path) -> dict[str, list[str]]:
    """The repository's own config (not the user's: see the runner), key → its values."""
    out = run_git("config", "--local", "--list", "-z", cwd=repo)
    found: dict[str, list[str]] = {}
    for entry in out.stdout.split("\0"):
        if entry:
            key, _, value = entry.partition("\n")
            found.setdefault(key, []).append(value)
    return found


def _write_excludes(path: Path) -> None:
    exclude = path / "info" / "exclude"
    exclude.parent.mkdir(exist_ok=True)
    exclude.write_text(
        "# Written by Errands: build and test caches are never part of a subtask.\n"
        + "".join(f"{pattern}\n" for pattern in GENERATED_ARTEFACTS)
    )


# remote.origin.url of each mirror, with the version of its config file it was read from.
_ORIGINS: dict[Path, tuple[tuple[int, int, int], str]] = {}


def _file_version(file: Path) -> tuple[int, int, int] | None:
    try:
        found = file.stat()
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


# The mirrors this process has made or checked, by (path, origin as given). Every job opens
# its project's mirror, and checking it again (about ten git processes) would find what it
# found: only Errands writes a mirror's config, and a changed origin is another key.
_READY: set[tuple[Path, str]] = set()
FETCHES_NAME = "errands-fetches"


@dataclass(frozen=True)
class _Fetches:
    """How many fetches of a mirror have begun, and the number of the last one that
    finished: "<begun> <finished>" in a file beside the lock (hidden from the sandbox with
    it: see errands.git.lock.LOCKS_DIR), written under the lock and
    replaced whole, so a reader without the lock sees one or the other. A fetch that died
    half-way is begun and never finished; anything unreadable reads as none at all, which
    only ever costs a fetch."""

    mirror: Path

    def read(self) -> tuple[int, int]:
        try:
            found = (self.mirror / LOCKS_DIR / FETCHES_NAME).read_text(encoding="ascii")
            begun, finished = found.split()
            return int(begun), int(finished)
        except (OSError, ValueError, UnicodeDecodeError):
            return 0, 0

    def write(self, begun: int, finished: int) -> None:
        path = locks_dir(self.mirror) / FETCHES_NAME
        temporary = path.with_name(f".{FETCHES_NAME}.tmp")
        temporary.write_text(f"{begun} {finished}\n", encoding="ascii")
        temporary.replace(path)


@dataclass(frozen=True)
class Mirror:
    """A bare repository in Errands' data dir, one per project.

    Task branches live here as ``refs/heads/errands/…`` and origin's branches as
    ``refs/remotes/origin/…``; workspaces are linked work trees of it. Nothing here ever
    writes to the user's repository except :meth:`publish`, :meth:`delete_remote_branch`
    and :meth:`land`.
    """

    path: Path
    # Extra environment for commands that talk to origin, e.g. GIT_CONFIG_COUNT/KEY/VALUE
    # carrying an http.extraHeader: credentials then never appear in argv, config or URLs.
    auth_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    network_timeout: float | None = DEFAULT_NETWORK_TIMEOUT

    @classmethod
    def create(
        cls,
        path: Path,
        origin: str,
        *,
        auth_env: Mapping[str, str] | None = None,
        network_timeout: float | None = DEFAULT_NETWORK_TIMEOUT,
    ) -> Mirror:
        """Create the mirror, or adopt the existing one, pointed at ``origin``.

        A new mirror is fetched at once; an existing one only when its origin changed:
        every stage fetches before it reads anyway, and a second fetch of a large remote
        repository is not free.
        """
        path = path.absolute()
        mirror = cls(path, auth_env=dict(auth_env or {}), network_timeout=network_timeout)
        ready = (path, origin)
        if ready in _READY and (path / "HEAD").is_file():
            return mirror
        local = local_repository(origin)
        path.mkdir(parents=True, exist_ok=True)
        with repo_lock(path):
            if mirror._init(str(local) if local is not None else origin):
                mirror._fetch()
        _READY.add(ready)
        return mirror

    def _init(self, origin: str) -> bool:
        """Make this a mirror of ``origin``; True when it needs a first fetch."""
        found = run_git("rev-parse", "--is-bare-repository", "--absolute-git-dir", cwd=self.path)
        # Compare the git dir too: an empty directory inside some other repository would
        # otherwise pass for that repository.
        if found.stdout.splitlines() != ["true", str(self.path.resolve())]:
            # The lock taken for this (and an earlier version's) is all a new mirror may hold.
            if any(p.name not in (LOCKS_DIR, LOCK_NAME) for p in self.path.iterdir()):
                raise GitError(f"{self.path} exists and is not an Errands mirror")
            # No template: hooks from the host's init.templateDir have no place in a cache.
            git("init", "--bare", "--quiet", "--template=", cwd=self.path)
        # Read once, written only where it differs: every job opens its project's mirror,
        # and a git process per key cost five of them per job for nothing.
        config = _config(self.path)
        previous = (config.get(f"remote.{ORIGIN}.url") or [""])[-1]
        wanted = {
            f"remote.{ORIGIN}.url": origin,
            f"remote.{ORIGIN}.fetch": _FETCH_REFSPEC,
            # land() fetches the (unreferenced) squash commit from here into a local origin.
            "uploadpack.allowanysha1inwant": "true",
            # Work trees' indexes (made new per tree) in version 4: paths prefix-compressed, a
            # third smaller on a large repository, so each command reading and rewriting one
            # spends less on it. Errands' own indexes and the copies the sandbox gets alike.
            "index.version": "4",
        }
        # Set one key at a time, so re-running after a crash half-way finishes the job.
        for key, value in wanted.items():
            if config.get(key) != [value]:
                git("config", "--replace-all", key, value, cwd=self.path)
        _write_excludes(self.path)
        remove_old_locks(self.path)
        has_refs = git("for-each-ref", "--count=1", f"refs/remotes/{ORIGIN}/", cwd=self.path)
        return previous != origin or not has_refs.strip()

    @property
    def origin(self) -> str:
        # Asked at every publish and land: remembered per version of the config file. git
        # rewrites that file whole (a new inode) at every change, so the same inode, size
        # and mtime is the same content; only Errands writes it (no sandbox can).
        before = _file_version(self.path / "config")
        known = _ORIGINS.get(self.path)
        if before is not None and known is not None and known[0] == before:
            return known[1]
        url = git("config", f"remote.{ORIGIN}.url", cwd=self.path).strip()
        if before is not None and _file_version(self.path / "config") == before:
            _ORIGINS[self.path] = (before, url)
        return url

    def fetch(self) -> None:
        """Bring ``refs/remotes/origin/*`` up to date with origin's branches, as they were
        at some moment after this call began.

        Jobs of one project that start together (16 tasks at once) each ask for a fetch and
        queue on the mirror's lock: a fetch that *began* after this call did, and has
        finished by the time the lock is ours, already brought what this one would, so it
        is not run again. Fetches are numbered as they begin (see :class:`_Fetches`);
        one begun after we read the count has a higher number than the count we read."""
        started = _Fetches(self.path).read()[0]
        with repo_lock(self.path):
            if _Fetches(self.path).read()[1] > started:
                return
            self._fetch()

    def _fetch(self) -> None:
        """Fetch (the caller holds the lock)."""
        fetches = _Fetches(self.path)
        begun, finished = fetches.read()
        number = begun + 1
        fetches.write(number, finished)
        self._network(
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--no-recurse-submodules",
            ORIGIN,
            _FETCH_REFSPEC,
        )
        fetches.write(number, number)

    def resolve(self, ref: str) -> str | None:
        return resolve(self.path, ref)

    def base_ref(self, branch: str) -> str:
        return f"refs/remotes/{ORIGIN}/{branch}"

    def default_branch(self) -> str:
        """Origin's HEAD branch; else main, master, or the only branch there is."""
        result = run_git(
            "ls-remote",
            "--symref",
            ORIGIN,
            "HEAD",
            cwd=self.path,
            env=self.auth_env,
            timeout=self.network_timeout,
        )
        if result.ok:
            for line in result.stdout.splitlines():
                target, _, name = line.partition("\t")
                if name == "HEAD" and target.startswith("ref: refs/heads/"):
                    return target.removeprefix("ref: refs/heads/")
        for candidate in ("main", "master"):
            if self.resolve(self.base_ref(candidate)):
                return candidate
        remote_branches = git(
            "for-each-ref", "--format=%(refname:lstrip=3)", f"refs/remotes/{ORIGIN}/", cwd=self.path
        ).split()
        if len(remote_branches) == 1:
            return remote_branches[0]
        return "main"

    def add_workspace(self, path: Path, branch: str, start_point: str) -> Workspace:
        with repo_lock(self.path):
            tree, git_dir = add_worktree(self.path, path, branch, start_point)
        return Workspace(path=tree, branch=branch, git_dir=git_dir)

    def remove_workspace(self, path: Path) -> None:
        with repo_lock(self.path):
            remove_worktree(self.path, path)

    def commits(self, base: str, tip: str) -> list[CommitInfo]:
        base_commit = self.resolve(base)
        if base_commit is not None and base_commit == self.resolve(tip):
            return []  # a branch still at its base (a job's first look at it): no process
        return list_commits(self.path, base, tip)

    def diff(
        self,
        old: str | None,
        new: str,
        *,
        max_lines_per_file: int = DEFAULT_MAX_LINES_PER_FILE,
        max_bytes: int = DEFAULT_MAX_DIFF_BYTES,
        detail: Detail | None = None,
    ) -> Diff:
        """What changed from ``old`` (None: the empty tree, for a root commit) to ``new``
        (every file's hunks, or only those ``detail`` picks)."""
        old_rev = check_rev(old) if old is not None else self._empty_tree()
        key = diffcache.key_of(str(self.path), old_rev, check_rev(new), max_bytes)
        found = diffcache.get(key) if key is not None else None
        if found is None:
            result = run_git(
                "diff",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--find-renames",
                # Pin everything a user's diff.* config could change about the format we parse.
                "--src-prefix=a/",
                "--dst-prefix=b/",
                "--no-relative",
                "--submodule=short",
                old_rev,
                new,
                "--",
                cwd=self.path,
                max_output=max_bytes,
            )
            if not result.ok:
                raise error_for(result)
            found = (result.stdout, result.truncated)
            if key is not None:
                diffcache.put(key, *found)
        return parse_diff(
            found[0],
            max_lines_per_file=max_lines_per_file,
            truncated=found[1],
            detail=detail,
        )

    def _empty_tree(self) -> str:
        # Asked of git rather than hard-coded: the id differs in SHA-256 repositories.
        return git("hash-object", "-t", "tree", "--stdin", cwd=self.path, input="").strip()

    def squash(self, branch: str, onto: str, message: str) -> str:
        return squash_commit(self.path, branch, onto, message)

    def find_trailer(self, since: str, tip: str, trailer: str) -> str | None:
        """The newest commit in ``since..tip`` whose message has the line ``trailer``, e.g.
        to recognise a squash an interrupted merge already landed."""
        check_rev(since)
        check_rev(tip)
        found = git(
            "log",
            "--format=%H",
            "--fixed-strings",
            f"--grep={trailer}",
            f"{since}..{tip}",
            cwd=self.path,
        )
        for sha in found.split():
            message = git("log", "-1", "--format=%B", sha, cwd=self.path)
            if trailer in message.splitlines():
                return sha
        return None

    def publish(
        self, branch: str, *, commit: str | None = None, expected: str | Tracked | None = TRACKED
    ) -> str:
        """Move origin's copy of a task branch to ``commit`` (default: the local branch's
        tip) and return it, as a compare-and-swap: only from ``expected`` (None: the branch
        must not exist there yet; by default the value this mirror last fetched or pushed).
        Raises :class:`BranchMoved` when origin's copy is elsewhere: whoever moved it (a
        newer attempt of the job) is never overwritten. History may be rewritten (an
        attempt that resumed from a diverged copy), so no fast-forward is required."""
        require_task_branch(branch)
        ref = f"refs/heads/{branch}"
        # The push, a network round trip, without the mirror's lock: every task of the
        # project publishes after each subtask (16 tasks at once queued 57 pushes, 4.7 s,
        # on it). Origin's compare-and-swap is what keeps two attempts apart. Pushed to the
        # URL, so git leaves the remote-tracking ref alone (a fetch updating it meanwhile
        # would fail on it); it is moved after, under the lock, as a compare-and-swap too.
        new = resolve(self.path, check_rev(commit) if commit else ref)
        if new is None:
            raise GitError(f"cannot publish {branch}: no such commit {commit or ref}")
        old = self.resolve(self.base_ref(branch)) if expected is TRACKED else expected
        assert not isinstance(old, Tracked)
        if not landing.push_with_lease(
            self.path,
            new,
            ref,
            old,
            env=self.auth_env,
            timeout=self.network_timeout,
            to=self.origin,
        ):
            raise BranchMoved(
                f"{branch} moved on origin (from {str(old)[:10]}); another attempt of "
                "the job published it"
            )
        with repo_lock(self.path):
            # Only from the value pushed over: a fetch since may have brought a newer one.
            run_git("update-ref", self.base_ref(branch), new, old or "", cwd=self.path)
        return new

    def contains(self, tip: str, commit: str) -> bool:
        """Whether ``commit`` is ``tip`` or an ancestor of it."""
        check_rev(tip)
        check_rev(commit)
        return run_git("merge-base", "--is-ancestor", commit, tip, cwd=self.path).ok

    def adopt_published(self, branch: str, base: str, marker: str) -> str | None:
        """Bring the local task branch up to origin's copy, which a worker on another machine
        may have moved (every subtask commit is published before it is recorded). Call
        after :meth:`fetch`. Origin's copy is taken only if every commit on it since
        ``base`` carries the line ``marker`` (this task's key: a same-named branch of
        another Errands install is not ours). A local branch ahead of origin keeps its
        commits (this machine's unpublished work, found again by its trailers); one that
        diverged yields to origin, the copy the records refer to. Returns the tip, if any."""
        require_task_branch(branch)
        check_rev(base)
        ref = f"refs/heads/{branch}"
        with repo_lock(self.path):
            published = self.resolve(self.base_ref(branch))
            local = self.resolve(ref)
            if published is None or published == local:
                return local
            if (
                local is not None
                and run_git("merge-base", "--is-ancestor", published, local, cwd=self.path).ok
            ):
                return local
            bodies = git("log", "--format=%B%x00", f"{base}..{published}", cwd=self.path)
            commits = [body for body in bodies.split("\0") if body.strip()]
            if not commits or any(marker not in body.splitlines() for body in commits):
                return local
            git("update-ref", ref, published, *([local] if local else []), cwd=self.path)
            return published

    def delete_remote_branch(
        self, branch: str, *, expected: str | Tracked | None = TRACKED
    ) -> None:
        """Delete origin's copy of a task branch, only if it is at ``expected`` (by default
        what this mirror last fetched or pushed); raises :class:`BranchMoved` otherwise."""
        require_task_branch(branch)
        ref = f"refs/heads/{branch}"
        with repo_lock(self.path):
            listed = self._network("ls-remote", "--heads", ORIGIN, ref)
            if not listed.strip():
                return
            old = self.resolve(self.base_ref(branch)) if expected is TRACKED else expected
            assert not isinstance(old, Tracked)
            if not landing.push_with_lease(
                self.path, "", ref, old, env=self.auth_env, timeout=self.network_timeout
            ):
                raise BranchMoved(f"{branch} moved on origin; not deleting it")

    def land(self, commit: str, base_branch: str, expected_base: str) -> None:
        """Move origin's ``base_branch`` from ``expected_base`` to ``commit``.

        Raises :class:`BaseMoved` if it is no longer at ``expected_base`` and
        :class:`DirtyWorkingTree` if the user's checkout of it has uncommitted changes in
        the way.
        """
        with repo_lock(self.path):
            landing.land(
                self.path,
                self.origin,
                commit,
                base_branch,
                expected_base,
                env=self.auth_env,
                timeout=self.network_timeout,
            )

    def _network(self, *args: str) -> str:
        return git(*args, cwd=self.path, env=self.auth_env, timeout=self.network_timeout)
