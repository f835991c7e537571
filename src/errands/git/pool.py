"""A warm pool of work trees per project: a job's workspace in milliseconds, not seconds.

Creating the files of a large repository dominates the cost of a fresh work tree (about 5 s
for 5,000 files on ext4). So a finished job's work tree is not deleted: it is scrubbed back
to its last commit, detached and *parked* under ``root/.idle-…``. The next job renames a
parked tree into place and checks its branch out there with ``checkout --force``, which
writes only the files that differ between the two commits. Only when no tree is parked
does a job pay for a full checkout (:meth:`Mirror.add_workspace`).

A parked tree is *known clean*: Errands scrubbed it (or checked it out afresh) and verified
it against its own index before parking it, and nothing has run in it since (a sandboxed
command's processes die with it; no sandbox is granted a parked tree). Its idle name records
the commit it was left at, so claiming it costs only the files that differ between that
commit and the job's: no walk over the whole tree. On 100,000 files that is the difference
between about a second and a tenth of one (``bench/workspace_large.py``).

Layout under ``root`` (one per project): ``root/<name>`` is the workspace of the live job
``name``; ``root/.idle-<time>-<random>-<commit>`` are parked trees, oldest first by name, and
``root/.warming-…`` one being filled by :meth:`WorkspacePool.prewarm`. All state
is on disk and every claim or park happens under the mirror's lock (:func:`repo_lock`), so
any number of threads and worker processes can share a pool.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Collection
from pathlib import Path

from errands.errors import GitError, InvalidInput
from errands.git.lock import repo_lock
from errands.git.lookup import resolve
from errands.git.mirror import Mirror
from errands.git.repo import check_branch_name, check_rev
from errands.git.runner import git
from errands.git.workspace import Workspace
from errands.git.worktrees import (
    admin_dirs,
    branch_elsewhere,
    clear_branch,
    fresh_index,
    head_of,
    list_worktrees,
    private_index,
    prune_needed,
    prune_worktrees,
    register_path,
    remove_worktree,
    run_tree_git,
    share_index,
    tree_git,
    write_head,
)

log = logging.getLogger(__name__)

IDLE_PREFIX = ".idle-"
WARMING_PREFIX = ".warming-"
# A claimed tree moves to its job's commit by restoring just the paths that differ, when few
# do: git matches every index entry against every path given, so past this many a checkout
# of the whole tree (which compares each file's stat data instead) is the cheaper way.
MAX_PATHS_RESTORED = 100
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class WorkspacePool:
    """Per-job work trees of ``mirror`` under ``root``, reused rather than re-created.

    At most ``keep`` parked trees are kept; each costs the disk space of one checkout.
    """

    def __init__(self, mirror: Mirror, root: Path, *, keep: int = 4) -> None:
        if keep < 0:
            raise ValueError("keep must be >= 0")
        self.mirror = mirror
        self.root = root.absolute()
        self.keep = keep

    # -- the API ---------------------------------------------------------------------------

    def acquire(self, name: str, branch: str, start_point: str) -> Workspace:
        """A clean work tree at ``root/name`` with ``branch`` checked out.

        ``branch`` is created at ``start_point`` unless it exists; an existing branch is
        checked out as it is (a resumed or revising job continues from its commits), the
        same rule as :meth:`Mirror.add_workspace`.
        """
        path = self._path(name)
        check_branch_name(branch)
        # The branch's tip if it exists, else the start point: checked before anything moves.
        target = resolve(self.mirror.path, f"refs/heads/{branch}") or resolve(
            self.mirror.path, check_rev(start_point)
        )
        if target is None:
            raise GitError(f"cannot start branch {branch}: {start_point} does not name a commit")
        if path.exists() or path.is_symlink():
            # A dead job's workspace under the same name (its retry): park it like any
            # other, so it is the one reused just below.
            self._park_or_remove(path)
        claimed = self._claim(path)
        if claimed is None:
            # Nothing parked: a full checkout (the first job of a project, or a busy one).
            return self.mirror.add_workspace(path, branch, start_point)
        git_dir, parked_at = claimed
        try:
            self._switch(path, git_dir, branch, target, parked_at)
        except BaseException:
            # Leave nothing half-switched at root/name; the tree itself is still good.
            with contextlib.suppress(GitError, OSError):
                self._park_or_remove(path)
            raise
        share_index(git_dir)
        return Workspace(path=path, branch=branch, git_dir=git_dir)

    def release(self, workspace: Workspace, *, untouched: bool = False) -> None:
        """Scrub ``workspace``, free its branch and park it (or remove it past ``keep``).

        Fine if the workspace is already gone. A tree that cannot be scrubbed is removed.
        ``untouched``: nothing but Errands' own reads ran in the tree since :meth:`acquire`
        (no command, no sandbox, no write: a research job), so it is exactly the checkout
        acquire made, and is parked without the scrub's three walks over the whole tree.
        """
        self._park_or_remove(workspace.path.absolute(), untouched=untouched)
        self._trim()

    def prewarm(self, start_point: str) -> bool:
        """Park a full checkout of ``start_point`` now, unless some tree is parked already.

        For a project's first job: call it off the job's path (after the mirror's first
        fetch, e.g. while indexing) and that job's :meth:`acquire` is a reuse too. Returns
        whether a tree was made.
        """
        if self._idle():
            return False
        commit = resolve(self.mirror.path, check_rev(start_point))
        if commit is None:
            raise GitError(f"cannot prewarm: {start_point} does not name a commit")
        self.root.mkdir(parents=True, exist_ok=True)
        # Not under an idle name until complete, so no acquire can claim it half-written;
        # a sweep treats it like a dead job's leftover if this process dies meanwhile.
        warming = self.root / f"{WARMING_PREFIX}{time.time_ns():020d}-{secrets.token_hex(4)}"
        with repo_lock(self.mirror.path):
            git(
                "worktree", "add", "--quiet", "--detach", "--no-checkout", str(warming), commit,
                cwd=self.mirror.path,
            )  # fmt: skip
            git_dir = admin_dirs(self.mirror.path)[warming.resolve()]
            fresh_index(git_dir)
        try:
            # The slow part, outside the lock: write every file.
            tree_git(warming, git_dir, "reset", "--hard", "--quiet")
            share_index(git_dir)  # a parked tree is clean in every view of it
            with repo_lock(self.mirror.path):
                self._move(warming, self._idle_name(commit), git_dir)
        except BaseException:
            with contextlib.suppress(GitError, OSError):
                self.mirror.remove_workspace(warming)
            raise
        self._trim()
        return True

    def sweep(self, live_names: Collection[str], *, min_age: float = 0.0) -> int:
        """Clean up after dead workers; returns how many workspaces were cleaned.

        Every workspace under ``root`` whose name is not in ``live_names`` is parked (or
        removed if it cannot be scrubbed), registrations of vanished ones are pruned and
        parked trees past ``keep`` removed. Workspaces claimed less than ``min_age`` seconds
        ago are left alone: pass a grace period when ``live_names`` may be older than a job
        that is starting right now.
        """
        live = set(live_names)
        with repo_lock(self.mirror.path):
            vanished = [
                path
                for path in admin_dirs(self.mirror.path)
                if path.parent == self.root.resolve() and not path.exists()
            ]
            if vanished or prune_needed(self.mirror.path):
                prune_worktrees(self.mirror.path)
            # Parked trees git does not know: a worker died between rename and repair.
            # Decided under the lock, as a tree parked a moment ago is registered by then.
            registered = admin_dirs(self.mirror.path)
            for entry in self._idle():
                if entry.resolve() not in registered:
                    try:
                        remove_worktree(self.mirror.path, entry)
                        vanished.append(entry)
                    except (GitError, OSError) as exc:
                        log.warning("sweep: cannot remove %s: %s", entry, exc)
        cleaned = len(vanished)
        if not self.root.is_dir():
            return cleaned
        for entry in sorted(self.root.iterdir()):
            if entry.name in live or entry.name.startswith(IDLE_PREFIX):
                continue
            if min_age > 0 and _age(entry, registered.get(entry.resolve())) < min_age:
                continue
            try:
                self._park_or_remove(entry)
                cleaned += 1
            except (GitError, OSError) as exc:
                log.warning("sweep: cannot clean %s: %s", entry, exc)
        self._trim()
        return cleaned

    # -- the parts -------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        if (
            not name
            or name.startswith(".")
            or "/" in name
            or "\0" in name
            or Path(name).name != name
        ):
            raise InvalidInput(f"invalid workspace name: {name!r}")
        return self.root / name

    def _idle_name(self, commit: str) -> Path:
        """The name a tree Errands left clean at ``commit`` is parked under.

        Sorts by age; never reused, so a stale name cannot point at a newer tree. Only
        Errands renames trees in ``root`` (no sandbox is granted it), so the commit in the
        name is a record of Errands' own scrub, not something the job could have written."""
        return self.root / f"{IDLE_PREFIX}{time.time_ns():020d}-{secrets.token_hex(4)}-{commit}"

    def _idle(self) -> list[Path]:
        """Parked trees, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.name.startswith(IDLE_PREFIX))

    def _claim(self, path: Path) -> tuple[Path, str | None] | None:
        """Move the most recently parked tree to ``path``: its admin dir and the commit it
        was left clean at (None for a name without one); None if nothing is parked."""
        with repo_lock(self.mirror.path):
            idle = self._idle()
            if not idle:
                return None
            registered = admin_dirs(self.mirror.path)
            for candidate in reversed(idle):
                git_dir = registered.get(candidate.resolve())
                if git_dir is None or not git_dir.is_dir():
                    continue  # not a registered tree: the sweep removes it
                self._move(candidate, path, git_dir)
                return git_dir, _parked_at(candidate)
        return None

    def _move(self, source: Path, target: Path, git_dir: Path) -> None:
        """Rename a work tree and tell git; the caller holds the mirror's lock.

        Under the lock because a `git worktree prune` between the rename and the repair
        would see the registration point nowhere and delete it.
        """
        # Rewrite .git from our side first: the agent could have pointed it elsewhere.
        _restore_gitfile(source, git_dir)
        os.rename(source, target)
        # What `git worktree repair <target>` would do, without a process: both halves of
        # the link between tree and registration are known here.
        register_path(git_dir, target)

    def _switch(
        self, path: Path, git_dir: Path, branch: str, target: str, parked_at: str | None
    ) -> None:
        """Check ``branch`` out in the claimed tree: at its tip, or new at ``target``."""
        mirror = self.mirror.path
        # The expensive part runs outside the lock: only this tree's own HEAD and index
        # change.
        try:
            if parked_at is None:
                raise GitError("parked without a record of its commit (by an older Errands)")
            _move_clean_tree(mirror, path, git_dir, parked_at, target)
        except GitError as exc:
            log.info("checking %s out in full: %s", path, exc)
            # --force writes just the files that differ, comparing each file to the index;
            # -x and -ff: ignored files (.venv, build caches) and nested repositories go too.
            tree_git(path, git_dir, "checkout", "--quiet", "--force", "--detach", target)
            tree_git(path, git_dir, "clean", "-ffdx", "--quiet")
            _remove_nested_git(path)  # parked by an older Errands' scrub, which left them
        with repo_lock(mirror):
            elsewhere = branch_elsewhere(mirror, branch, git_dir)
            if elsewhere is None:  # some tree's HEAD is for git to read
                here = path.resolve()
                trees = list_worktrees(mirror)[1:]
                elsewhere = any(t.branch == branch and t.path.resolve() != here for t in trees)
            if elsewhere:
                clear_branch(mirror, branch, keep=path)  # a dead job's, elsewhere
            # The tree and the index are already at the commit wanted, and clean: attaching
            # HEAD to the branch is all that is left, and plumbing does it without touching a
            # file.
            tip = resolve(mirror, f"refs/heads/{branch}")
            if tip is None:
                # Empty old value: create it, fail if it exists.
                git("update-ref", f"refs/heads/{branch}", target, "", cwd=mirror)
            elif tip != target:
                # The branch moved since acquire looked (not supposed to happen): be exact.
                tree_git(path, git_dir, "checkout", "--quiet", "--force", branch)
                tree_git(path, git_dir, "clean", "-ffdx", "--quiet")
            # `symbolic-ref HEAD`, written directly: nothing runs in this tree yet.
            write_head(git_dir, f"refs/heads/{branch}")

    def _park_or_remove(self, path: Path, *, untouched: bool = False) -> None:
        """Scrub the work tree at ``path`` and park it; remove it if that fails."""
        if not path.exists() and not path.is_symlink():
            self.mirror.remove_workspace(path)  # prunes a stale registration, if any
            return
        git_dir = admin_dirs(self.mirror.path).get(path.resolve())
        if git_dir is None or path.is_symlink():
            # Not (or no longer) registered: remove_workspace removes it only if ours.
            self.mirror.remove_workspace(path)
            return
        try:
            commit = (_detach(path, git_dir) if untouched else None) or _scrub(path, git_dir)
            with repo_lock(self.mirror.path):
                self._move(path, self._idle_name(commit), git_dir)
        except (GitError, OSError) as exc:
            log.info("not parking %s, removing it: %s", path, exc)
            self.mirror.remove_workspace(path)

    def _trim(self) -> None:
        """Remove the oldest parked trees beyond ``keep``."""
        with repo_lock(self.mirror.path):
            idle = self._idle()
            extra = idle[: max(0, len(idle) - self.keep)]
        # Outside the lock (deleting a checkout takes a while): a tree claimed meanwhile
        # is simply no longer at its idle path, and idle names are never reused.
        for path in extra:
            self.mirror.remove_workspace(path)


def _scrub(path: Path, git_dir: Path) -> str:
    """Back to the last commit exactly, detached, so the task branch is free elsewhere;
    returns that commit. Raises GitError when the tree cannot be made spotless.

    Nothing the job could have written is taken on trust: the work tree is compared, file by
    file, to Errands' own index (see :func:`errands.git.worktrees.private_index`), which
    only Errands writes. One walk over the whole tree removes what is not tracked and one
    verifies; the tracked files are only rewritten when that walk finds one changed."""
    _restore_gitfile(path, git_dir)
    index = private_index(git_dir)
    if index.with_name(f"{index.name}.lock").exists():
        # A git command of ours died half-way: every later write of the index would fail.
        raise GitError(f"{path}: the index is locked by a command that never finished")
    _detach(path, git_dir)
    # -x: ignored files too; -ff: nested repositories too; -d: empty directories, which
    # the survey below does not list. See WorkspacePool._switch.
    tree_git(path, git_dir, "clean", "-ffdx", "--quiet")
    _remove_nested_git(path)
    commit, tracked, untracked = _survey(path, git_dir)
    if tracked and not untracked:
        tree_git(path, git_dir, "reset", "--hard", "--quiet")
        tree_git(path, git_dir, "clean", "-ffdx", "--quiet")  # what a typechange left
        commit, tracked, untracked = _survey(path, git_dir)
    # git clean only warns about what it could not delete (a directory the job made
    # unreadable): a tree that is not spotless is never parked.
    if tracked or untracked:
        raise GitError(f"{path} could not be cleaned: {', '.join((tracked + untracked)[:20])}")
    share_index(git_dir)  # a parked tree is clean in every view of it
    return commit


def _detach(path: Path, git_dir: Path) -> str | None:
    """Detach HEAD where it is (same commit, nothing to compare), so the branch is free
    elsewhere, and return that commit; None when HEAD is then anything but a plain file
    holding one (the caller scrubs the tree, or its survey finds the commit).

    Nothing runs in the tree any more: when HEAD is a plain symbolic ref to a branch, the
    branch's commit is looked up in the mirror and written in its place, as ``update-ref
    --no-deref HEAD HEAD`` would, without a process; anything else is git's to read."""
    _restore_gitfile(path, git_dir)
    head = head_of(git_dir)
    if head is not None and head[0] == "ref" and head[1].startswith("refs/heads/"):
        try:
            check_branch_name(head[1].removeprefix("refs/heads/"))
        except InvalidInput:
            pass
        else:
            # The mirror is git_dir's grandparent (see private_index).
            commit = resolve(git_dir.parent.parent, head[1])
            if commit is not None:
                write_head(git_dir, commit)
                return commit
    if head is None or head[0] != "detached":
        tree_git(path, git_dir, "update-ref", "--no-deref", "HEAD", "HEAD")
        head = head_of(git_dir)
    return head[1] if head is not None and head[0] == "detached" else None


def _remove_nested_git(path: Path) -> None:
    """Delete every entry named ``.git`` below the top of the work tree.

    Git's walks never list one (``clean -ffdx`` removes a nested repository only where a
    directory is untracked), so a repository the job planted inside a *tracked* directory,
    ``src/.git`` with its own fsmonitor and hooks, would otherwise survive the scrub and be
    what the next task's git under ``src/`` works in. One walk more per release, never
    following a link (a link named ``.git`` is removed, not entered); GitError when one
    cannot be removed."""
    pending = [path]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue  # unreadable: the survey that follows refuses to park the tree
        for entry in entries:
            if entry.name == ".git" and directory != path:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                except OSError as exc:  # never parked with it: the tree is removed instead
                    raise GitError(f"{path} could not be cleaned: {entry.path}: {exc}") from exc
            elif entry.is_dir(follow_symlinks=False) and entry.name != ".git":
                pending.append(Path(entry.path))


def _survey(path: Path, git_dir: Path) -> tuple[str, list[str], list[str]]:
    """(HEAD's commit, tracked paths that differ from it, untracked and ignored paths), by
    one ``git status`` against Errands' index. Anything it cannot read counts as dirty."""
    status = run_tree_git(
        path,
        git_dir,
        "status",
        "--porcelain=v2",
        "-z",
        "--branch",
        "--ignored",
        "--untracked-files=all",
        "--no-renames",
    )
    if not status.ok:
        raise GitError(f"{path} could not be cleaned: {status.stderr.strip()[:500]}")
    commit = ""
    tracked: list[str] = []
    untracked: list[str] = []
    for entry in status.stdout.split("\0"):
        if entry.startswith("# branch.oid "):
            commit = entry.removeprefix("# branch.oid ")
        elif entry.startswith(("? ", "! ")):
            untracked.append(entry[2:])
        elif entry and not entry.startswith("# "):
            tracked.append(entry)
    if not _COMMIT.fullmatch(commit):
        raise GitError(f"{path} could not be cleaned: HEAD is {commit or 'unknown'}")
    return commit, tracked, untracked


def _move_clean_tree(mirror: Path, path: Path, git_dir: Path, parked_at: str, target: str) -> None:
    """Move a known-clean tree (and Errands' index) from ``parked_at`` to ``target``, writing
    only what differs between the two commits: no walk over the tree, no clean. HEAD is left
    for the caller to attach to the task branch (the full checkout sets it, detached)."""
    paths: list[str] = []
    if parked_at != target:
        # In the mirror, without the work tree: diff-tree reads the index (for attributes),
        # and the work tree's holds every path of a large repository.
        listed = git(
            "diff-tree", "-r", "-z", "--name-only", "--no-renames", parked_at, target,
            cwd=mirror,
        )  # fmt: skip
        paths = [p for p in listed.split("\0") if p]
        # A file that becomes a directory or the other way round: restore matches its
        # paths against the index once the new entries are in, and the old ones are gone.
        directories = {p[:i] for p in paths for i, c in enumerate(p) if c == "/"}
        if len(paths) > MAX_PATHS_RESTORED or directories.intersection(paths):
            tree_git(path, git_dir, "checkout", "--quiet", "--force", "--detach", target)
            return
    if paths:
        # Literal pathspecs: a path named '*' or ':(glob)…' is that path, nothing else.
        # --no-overlay: a path target lacks is deleted, from the index and the tree.
        tree_git(
            path, git_dir, "--literal-pathspecs", "restore", "--quiet", "--no-overlay",
            f"--source={target}", "--staged", "--worktree", "--pathspec-from-file=-",
            "--pathspec-file-nul", input="\0".join(paths),
        )  # fmt: skip


def _parked_at(path: Path) -> str | None:
    """The commit a parked tree was left clean at, from its idle name (see _idle_name)."""
    commit = path.name.removeprefix(IDLE_PREFIX).rpartition("-")[2]
    return commit if _COMMIT.fullmatch(commit) else None


def _restore_gitfile(path: Path, git_dir: Path) -> None:
    dot_git = path / ".git"
    if dot_git.is_dir() and not dot_git.is_symlink():
        shutil.rmtree(dot_git)
    elif dot_git.exists() or dot_git.is_symlink():
        dot_git.unlink()
    dot_git.write_text(f"gitdir: {git_dir}\n")


def _age(path: Path, git_dir: Path | None) -> float:
    """Seconds since ``path`` was claimed: its registration's ``gitdir`` is rewritten then."""
    marker = git_dir / "gitdir" if git_dir is not None else path
    try:
        return time.time() - marker.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
