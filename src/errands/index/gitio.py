"""The few git reads the index needs: a tree listing, blobs in one stream, diffs, history.

Everything reads objects straight from the repository (bare or not) with ``--git-dir``; no
checkout is ever made. Failures become :class:`errands.errors.GitError`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from errands.errors import GitError, NotAGitRepository
from errands.index.overlay import Overlay

# Keep git predictable and pointed at the repository we name, whatever the caller's env.
_DROP_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_CONFIG")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update({"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"})
    return env


def _git(git_dir: Path, *args: str, input: bytes | None = None) -> bytes:
    cmd = ["git", f"--git-dir={git_dir}", "-c", "core.quotepath=off", *args]
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, env=_env(), check=False)
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        if "not a git repository" in err.lower():
            raise NotAGitRepository(f"{git_dir} is not a git repository")
        raise GitError(f"git {' '.join(args[:2])} failed: {err[:500]}")
    return proc.stdout


def resolve_git_dir(path: Path) -> Path:
    """The git directory for a work tree or a bare repository."""
    out = _git(path if (path / "HEAD").exists() else path / ".git", "rev-parse", "--git-dir")
    resolved = Path(out.decode().strip())
    return resolved if resolved.is_absolute() else (path / resolved).resolve()


def rev_parse(git_dir: Path, rev: str) -> str:
    return _git(git_dir, "rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()


@dataclass(frozen=True, slots=True)
class TreeEntry:
    path: str
    blob: str
    size: int


def ls_tree(git_dir: Path, commit: str) -> list[TreeEntry]:
    """Regular files (not symlinks, not submodules) at ``commit``, with blob ids and sizes."""
    out = _git(git_dir, "ls-tree", "-r", "-z", "--long", "--full-tree", commit)
    entries: list[TreeEntry] = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, kind, blob, size = meta.split()
        # Submodules, symlinks, and objects the repository lacks (a partial mirror) are skipped.
        if kind != b"blob" or mode == b"120000" or not size.isdigit():
            continue
        entries.append(TreeEntry(path.decode("utf-8", "surrogateescape"), blob.decode(), int(size)))
    return entries


class BlobReader:
    """Blobs on demand through one ``git cat-file --batch`` process: :meth:`request` ids,
    then :meth:`read` the answers in the same order. Keep few requests outstanding (tens,
    not thousands): git stops answering while we do not read, so a long run of requests
    could fill both pipes."""

    def __init__(self, git_dir: Path) -> None:
        cmd = ["git", f"--git-dir={git_dir}", "cat-file", "--batch"]
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=_env(),
            )
        except OSError as exc:
            raise GitError(f"cannot run git: {exc}") from exc
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin, self._stdout = self._proc.stdin, self._proc.stdout

    def request(self, blobs: list[str]) -> None:
        if not blobs:
            return
        try:
            self._stdin.write("".join(f"{b}\n" for b in blobs).encode())
            self._stdin.flush()
        except BrokenPipeError as exc:
            raise GitError("git cat-file ended early") from exc

    def read(self) -> bytes | None:
        """The next requested blob's contents; None if the repository lacks it (a partial
        mirror: index what is there)."""
        header = self._stdout.readline()
        if not header:
            raise GitError("git cat-file ended early")
        parts = header.split()
        if len(parts) == 2 and parts[1] == b"missing":
            return None
        if len(parts) < 3:
            raise GitError(f"git cat-file: {header.decode(errors='replace').strip()}")
        data = self._stdout.read(int(parts[2]))
        self._stdout.read(1)  # the newline after the contents
        return data

    def close(self) -> None:
        if not self._stdin.closed:
            self._stdin.close()
        self._stdout.close()
        self._proc.wait()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_blobs(git_dir: Path, blobs: list[str]) -> list[bytes | None]:
    """The contents of these blobs, in order (None where the repository lacks one)."""
    out: list[bytes | None] = []
    with BlobReader(git_dir) as reader:
        for i in range(0, len(blobs), 32):  # few requests outstanding (see BlobReader)
            group = blobs[i : i + 32]
            reader.request(group)
            out.extend(reader.read() for _ in group)
    return out


@dataclass(frozen=True, slots=True)
class Change:
    status: str  # A, M, D, T (renames are a delete and an add)
    path: str
    blob: str  # the new blob id (zeros when deleted)
    mode: str


def diff_raw(git_dir: Path, old: str, new: str) -> list[Change]:
    """Files changed between two commits, with their new blob ids (one process)."""
    out = _git(git_dir, "diff", "--raw", "-z", "--no-renames", "--no-abbrev", old, new, "--")
    parts = out.split(b"\0")
    changes: list[Change] = []
    for i in range(0, len(parts) - 1, 2):
        meta = parts[i].decode().lstrip(":").split()
        _old_mode, new_mode, _old_blob, new_blob, status = meta[:5]
        path = parts[i + 1].decode("utf-8", "surrogateescape")
        changes.append(Change(status[:1], path, new_blob, new_mode))
    return changes


class History:
    """The last commits of a revision and the files each one changed: ``git log
    --name-only`` over the window, run in the background while the caller reads blobs;
    :meth:`result` waits for it."""

    def __init__(self, git_dir: Path, rev: str, *, max_commits: int) -> None:
        cmd = ["git", f"--git-dir={git_dir}", "-c", "core.quotepath=off", "log"]
        cmd += [f"-n{max_commits}", *_LOG_ARGS, rev]
        # Into a file, not a pipe: a full pipe would stall git until we read.
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 - closed in result()
        try:
            self._proc = subprocess.Popen(
                cmd, stdout=self._out, stderr=subprocess.DEVNULL, env=_env()
            )
        except OSError as exc:
            self._out.close()
            raise GitError(f"cannot run git: {exc}") from exc

    def result(self) -> Window:
        code = self._proc.wait()
        with self._out:
            self._out.seek(0)
            out = self._out.read()
        # History is a weak prior: a repository without it (shallow, odd) just has none.
        return Window.parse(out) if code == 0 else Window((), {})


# Each commit as a NUL, its id and a newline, then the paths it changed (none for a merge:
# git log shows merges' files only when asked, so a merge counts for no file).
_LOG_ARGS = ("--no-renames", "--name-only", "--format=%x00%H")


@dataclass(frozen=True, slots=True)
class Window:
    """The last commits of a revision, newest first (git log's order), and the files each
    changed: what the history signals are computed from, a function of the revision alone."""

    commits: tuple[str, ...]
    changed: dict[str, tuple[str, ...]]  # commit → paths

    @classmethod
    def parse(cls, out: bytes) -> Window:
        commits: list[str] = []
        changed: dict[str, tuple[str, ...]] = {}
        for record in out.decode("utf-8", "surrogateescape").split("\0")[1:]:
            sha, _, names = record.partition("\n")
            commits.append(sha)
            changed[sha] = tuple(n for n in names.split("\n") if n)
        return cls(tuple(commits), changed)

    def moving_to(self, git_dir: Path, old: str, rev: str, *, max_commits: int) -> MovingWindow:
        """Start reading the window of ``rev`` (an index at ``old`` moving there) in the
        background; :meth:`MovingWindow.result` waits for it."""
        return MovingWindow(self, git_dir, old, rev, max_commits)

    def signals(self) -> tuple[Overlay[str, int], Overlay[str, str]]:
        """Commits per file, and the newest commit of the window that changed each file."""
        changed = [self.changed.get(sha, ()) for sha in self.commits]
        # In C, not a Python step per path: a root commit in the window lists every file.
        counts = Counter(chain.from_iterable(changed))
        last: dict[str, str] = {}
        for sha, paths in zip(reversed(self.commits), reversed(changed), strict=True):
            last.update(dict.fromkeys(paths, sha))  # oldest first, newer overwrite
        return Overlay(dict(counts)), Overlay(last)

    def signals_after(
        self, old: Window, churn: Overlay[str, int], last: Overlay[str, str]
    ) -> tuple[Overlay[str, int], Overlay[str, str]]:
        """:meth:`signals`, from ``old``'s (``churn`` and ``last``, left as they are):
        when this window is the old one moved on — commits entered at the front, the
        oldest left at the back — only those commits' files are counted again (the whole
        window took ~8 ms of a one-file update on a 50,000-file repository); otherwise, or
        when they are many, all of them afresh."""
        old_set = set(old.commits)
        entered = 0
        while entered < len(self.commits) and self.commits[entered] not in old_set:
            entered += 1
        kept = len(self.commits) - entered
        left = old.commits[kept:]
        # (A path counted once per commit listing it, as signals() counts.)
        moved = sum(len(self.changed.get(c, ())) for c in self.commits[:entered])
        moved += sum(len(old.changed.get(c, ())) for c in left)
        window = sum(map(len, self.changed.values()))
        if (
            self.commits[entered:] != old.commits[:kept]
            or any(self.changed.get(c) != old.changed.get(c) for c in self.commits[entered:])
            or moved > max(64, window // 16)
        ):
            return self.signals()
        churn, last = churn.fork(), last.fork()
        for sha in left:
            for path in old.changed.get(sha, ()):
                n = churn[path] - 1
                if n:
                    churn[path] = n
                else:
                    del churn[path]
                if last.get(path) == sha:  # (its older commits have left too)
                    del last[path]
        for sha in reversed(self.commits[:entered]):  # oldest first, newer overwrite
            for path in self.changed.get(sha, ()):
                churn[path] = churn.get(path, 0) + 1
                last[path] = sha
        return churn, last


class MovingWindow:
    """A window being moved: ``git rev-list`` lists the new window (the same walk as git
    log's, without diffs) while ``git log old..rev`` reads the files of the commits the old
    window cannot have; both run while the caller analyses files. Any other commit of the
    new window the old one lacks (a merge's side, a window that moved back) is read after."""

    def __init__(self, window: Window, git_dir: Path, old: str, rev: str, max_commits: int) -> None:
        self._window, self._git_dir = window, git_dir
        base = ["git", f"--git-dir={git_dir}", "-c", "core.quotepath=off"]
        try:
            self._listing = subprocess.Popen(
                [*base, "rev-list", f"-n{max_commits}", rev],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
            )  # fmt: skip
            self._new = subprocess.Popen(
                [*base, "log", f"-n{max_commits}", *_LOG_ARGS, f"{old}..{rev}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(),
            )  # fmt: skip
        except OSError as exc:
            raise GitError(f"cannot run git: {exc}") from exc

    def close(self) -> None:
        """Stop reading (the caller found it needs no window moved)."""
        for proc in (self._listing, self._new):
            if proc.poll() is None:
                proc.kill()
            proc.communicate()

    def result(self) -> Window:
        listed_out, err = self._listing.communicate()
        new_out, _ = self._new.communicate()
        if self._listing.returncode != 0:
            raise GitError(f"git rev-list failed: {err.decode('utf-8', 'replace')[:500]}")
        known = dict(self._window.changed)
        if self._new.returncode == 0:
            known.update(Window.parse(new_out).changed)
        listed = listed_out.decode().split()
        missing = [c for c in listed if c not in known]
        if missing:
            out = _git(
                self._git_dir, "log", "--no-walk=unsorted", "--stdin", *_LOG_ARGS,
                input="".join(f"{c}\n" for c in missing).encode(),
            )  # fmt: skip
            known.update(Window.parse(out).changed)
        return Window(tuple(listed), {c: known[c] for c in listed if c in known})
