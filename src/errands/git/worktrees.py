"""Listing, adding and removing linked work trees."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from errands.errors import GitError
from errands.git.lookup import resolve
from errands.git.repo import check_branch_name, check_rev
from errands.git.runner import GitResult, error_for, git, run_git

# Errands' own index of each linked work tree, one file per admin dir, in the mirror (see
# private_index); the sandbox sees neither the directory nor what is in it.
INDEX_DIR = "errands-index"
# The two forms git writes a HEAD file in: a symbolic ref, or the commit it is detached at.
# Read without git only when it is exactly one of them (see head_of).
log = logging.getLogger(__name__)
_HEAD_FORMS = re.compile(rb"ref: (refs/[!-~]+)\n|([0-9a-f]{40}|[0-9a-f]{64})\n")
_SMALL_FILE = 4096


@dataclass(frozen=True, slots=True)
class Worktree:
    path: Path
    head: str | None
    branch: str | None  # without refs/heads/; None when detached or bare
    bare: bool = False
    # Registered, but its directory is gone: nothing is really checked out there.
    prunable: bool = False


def list_worktrees(repo: Path) -> list[Worktree]:
    """Every work tree of ``repo``: the main one (possibly bare) first, then linked ones."""
    mend_registrations(repo)
    out = git("worktree", "list", "--porcelain", "-z", cwd=repo)
    trees: list[Worktree] = []
    for record in out.split("\0\0"):
        attrs: dict[str, str] = {}
        for field in record.split("\0"):
            if field:
                key, _, value = field.partition(" ")
                attrs[key] = value
        if "worktree" not in attrs:
            continue
        branch = attrs.get("branch")
        trees.append(
            Worktree(
                path=Path(attrs["worktree"]),
                head=attrs.get("HEAD"),
                branch=branch.removeprefix("refs/heads/") if branch else None,
                bare="bare" in attrs,
                prunable="prunable" in attrs,
            )
        )
    return trees


def add_worktree(repo: Path, path: Path, branch: str, start_point: str) -> tuple[Path, Path]:
    """Check ``branch`` out at ``path``, creating it at ``start_point`` if it does not exist.

    An existing branch is checked out as is: a resumed or revising job continues from the
    commits already made. Leftovers of a dead job, at ``path`` or anywhere else on
    ``branch``, are removed first: one job per task runs at a time, so another work tree
    on the same branch can only be one whose worker died. Returns the work tree and its
    administrative directory inside ``repo``, an Errands mirror (see
    :mod:`errands.git.lookup`).
    """
    check_branch_name(branch)
    path = path.absolute()
    _clear_leftover(repo, path)
    clear_branch(repo, branch)
    path.parent.mkdir(parents=True, exist_ok=True)
    # --no-checkout: the files are written below, with Errands' own index (what `worktree
    # add` does itself, with the index the sandbox can write).
    if resolve(repo, f"refs/heads/{branch}") is not None:
        git("worktree", "add", "--quiet", "--no-checkout", str(path), branch, cwd=repo)
    else:
        start = resolve(repo, check_rev(start_point))
        if start is None:
            raise GitError(f"cannot start branch {branch}: {start_point} does not name a commit")
        # --no-track: an upstream pointing at the base would only invite `git pull` there.
        git(
            "worktree", "add", "--quiet", "--no-checkout", "--no-track", "-b", branch,
            str(path), start, cwd=repo,
        )  # fmt: skip
    git_dir = admin_dir(repo, path)
    fresh_index(git_dir)
    tree_git(path, git_dir, "reset", "--hard", "--quiet")
    share_index(git_dir)
    return path, git_dir


def private_index(git_dir: Path) -> Path:
    """Errands' index for the work tree whose admin dir is ``git_dir``.

    Not ``git_dir/index``: the sandbox can write ``git_dir`` (so the agent and the project's
    tools can run git), and an index vouches for files. An assume-unchanged or skip-worktree
    bit, or stat data matching an edited file, and status and ``add --all`` pass over an
    edit: a subtask comes back empty though its edit is on disk, or its commit lacks a change
    its verification ran with. Even a harmless ``git status`` there (pytest-benchmark runs
    ``git describe --dirty``) rewrites the index seeing the files under another uid, which
    defeats git's racy-timestamp check: a same-size edit in the second of the checkout then
    looked unchanged. Only Errands writes this one, so git's own checks hold.

    Kept in the mirror (``<mirror>/errands-index/<admin dir's name>``), which the sandbox
    reads but cannot write, and hidden there too (see workflow.workspaces.policies).
    """
    return git_dir.parent.parent / INDEX_DIR / git_dir.name


def index_env(git_dir: Path) -> dict[str, str]:
    """The environment for a git command on the work tree of ``git_dir``, with our index.

    Optional locks on: status may then write the stat data it refreshed into this index,
    which is ours alone (the runner turns them off for the user's repositories)."""
    return {"GIT_INDEX_FILE": str(private_index(git_dir)), "GIT_OPTIONAL_LOCKS": "1"}


def tree_git(
    path: Path,
    git_dir: Path,
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run git on the work tree ``path`` with Errands' index; its stdout (GitError when it
    fails). ``env`` adds to the environment (an identity for a commit)."""
    result = run_tree_git(path, git_dir, *args, input=input, env=env)
    if not result.ok:
        raise error_for(result)
    return result.stdout


def run_tree_git(
    path: Path,
    git_dir: Path,
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> GitResult:
    """Run git on the work tree ``path`` with Errands' index, whatever its exit status: the
    one place that builds such a command.

    ``--git-dir`` explicitly, never ``path/.git``: whoever edits the work tree can point
    that file at a repository whose config runs a program of their choosing. GitError, and
    no git, when the admin dir holds what would block git (see :func:`registration_problem`)."""
    problem = registration_problem(git_dir)
    if problem is not None:
        raise GitError(f"{path}: its git directory {problem}; it is not used again")
    ensure_index(path, git_dir)
    return run_git(
        f"--git-dir={git_dir}",
        f"--work-tree={path}",
        *args,
        cwd=path,
        input=input,
        env={**index_env(git_dir), **(env or {})},
        timeout=timeout,
    )


def ensure_index(path: Path, git_dir: Path) -> None:
    """Make Errands' index of a tree from before Errands kept its own: HEAD's, without stat
    data, so git compares each file's content once (status then records the stat data)."""
    index = private_index(git_dir)
    if index.exists():
        return
    index.parent.mkdir(exist_ok=True)
    git(
        f"--git-dir={git_dir}", f"--work-tree={path}", "read-tree", "HEAD", cwd=path,
        env=index_env(git_dir),
    )  # fmt: skip


def share_index(git_dir: Path) -> None:
    """Copy Errands' index to ``git_dir/index``, for git in the sandbox.

    Only a courtesy: the agent's ``git status`` and ``git diff`` then show what it changed
    since the last commit, not every file as deleted. Nothing reads it back. The copy keeps
    the original's mtime, so git's racy-timestamp check holds there too; it lands by rename,
    so a link the sandbox left at ``git_dir/index`` is replaced, never followed."""
    index = private_index(git_dir)
    if not index.exists():
        return
    handle, temporary = tempfile.mkstemp(dir=git_dir, prefix="errands-index-")
    os.close(handle)
    try:
        shutil.copy2(index, temporary)
        os.replace(temporary, git_dir / "index")
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def fresh_index(git_dir: Path) -> None:
    """Forget any index kept for an earlier work tree whose admin dir had this name (git
    reuses names); the next command starts an empty one."""
    index = private_index(git_dir)
    index.parent.mkdir(exist_ok=True)
    index.unlink(missing_ok=True)


# What git reads in a registration when it lists or prunes work trees.
_READ_BY_GIT = ("gitdir", "HEAD", "locked", "commondir")


def mend_registrations(repo: Path) -> list[Path]:
    """Remove every registration (admin dir) of ``repo`` that git could not list or prune
    without blocking (see :func:`registration_problem`), and return them: the job whose
    registration it was loses its git directory and fails."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(_common_dir(repo) / "worktrees"))
    except OSError:
        return removed
    for entry in entries:
        admin = Path(entry.path)
        is_dir = entry.is_dir(follow_symlinks=False)
        problem = registration_problem(admin) if is_dir else "is not a directory"
        if problem is None:
            continue
        log.warning("removing the work tree registration %s: it %s", admin, problem)
        if is_dir:
            shutil.rmtree(admin, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(admin)
        removed.append(admin)
    return removed


def registration_problem(admin: Path) -> str | None:
    """Why git would block reading the admin dir ``admin``, or None.

    A job's sandbox can write its own admin dir. A FIFO (or a link to one) where git reads
    ``gitdir``, ``HEAD`` or ``locked``, or a HEAD naming a per-work-tree ref that is one,
    and git waits forever: in ``worktree list`` or ``prune``, under the mirror's lock,
    every job of the project with it. What git merely finds broken (a missing file, odd
    content, a link to a plain file, which the commit path mends) is not a problem here."""
    for name in _READ_BY_GIT:
        if _blocks(admin / name):
            return f"has something other than a plain file at {name}"
    head = _read_small(admin / "HEAD", follow=True)
    if head is not None and head.startswith(b"ref:"):
        ref = head[4:].strip().decode(errors="replace")
        # A ref outside refs/heads/ may be a per-work-tree one, kept in the admin dir.
        if not ref.startswith("refs/heads/") and (".." in ref or _blocks(admin / ref)):
            return f"has a HEAD naming {ref!r}, which git cannot read"
    return None


def _blocks(path: Path) -> bool:
    """Whether opening ``path`` to read (following links, as git does) could block: it is
    there and not a plain file."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    except OSError:
        return True


def prune_worktrees(repo: Path) -> None:
    """``git worktree prune``, after :func:`mend_registrations`."""
    mend_registrations(repo)
    git("worktree", "prune", cwd=repo)


def clear_branch(repo: Path, branch: str, *, keep: Path | None = None) -> None:
    """Remove every linked work tree of ``repo`` that has ``branch`` checked out but ``keep``.

    One job per task runs at a time, so another work tree on the task's branch can only be
    one whose worker died; git would refuse to check the branch out anywhere else while it
    stays there.
    """
    kept = keep.resolve() if keep is not None else None
    prune_worktrees(repo)
    for tree in list_worktrees(repo)[1:]:
        if tree.branch == branch and tree.path.resolve() != kept:
            _clear_leftover(repo, tree.path)
    prune_worktrees(repo)


def admin_dir(repo: Path, path: Path) -> Path:
    """The directory in ``repo`` where git keeps the HEAD and index of work tree ``path``.

    Found from ``repo``'s side (each admin dir names its work tree in a ``gitdir`` file),
    never by reading ``path/.git``, which whoever edits the work tree can rewrite.
    """
    found = admin_dirs(repo).get(path.resolve())
    if found is None:
        raise GitError(f"{path} is not a work tree of {repo}")
    return found


def admin_dirs(repo: Path) -> dict[Path, Path]:
    """Every linked work tree registered in ``repo`` (resolved path) → its admin dir.

    Read from ``repo``'s side only (see :func:`admin_dir`); a registration whose work tree
    is gone is included, its path simply does not exist. A ``gitdir`` that is not a small
    plain file (a link, a FIFO a sandbox made in its admin dir) names no work tree.
    """
    found: dict[Path, Path] = {}
    for candidate in sorted((_common_dir(repo) / "worktrees").glob("*/gitdir")):
        content = _read_small(candidate)
        if content is None:
            continue
        dot_git = Path(content.decode(errors="replace").strip())
        if dot_git.name == ".git":
            found.setdefault(dot_git.parent.resolve(), candidate.parent)
    return found


def _read_small(file: Path, *, follow: bool = False) -> bytes | None:
    """The content of ``file`` if it is a plain file of at most a few kB; None otherwise.

    For files in admin dirs, which a sandbox may have written: a link is not followed
    (unless ``follow``: to read what git would read), a FIFO does not block, a huge file
    is not read."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(file, flags)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, _SMALL_FILE + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) <= _SMALL_FILE else None


def head_of(git_dir: Path) -> tuple[str, str] | None:
    """What the HEAD file of admin dir ``git_dir`` says, read without git: ``("ref", name)``
    or ``("detached", commit)``. None when it is anything but a plain file in exactly one of
    the forms git writes (a link, odd spacing, a missing file): only git judges those."""
    content = _read_small(git_dir / "HEAD")
    found = _HEAD_FORMS.fullmatch(content) if content is not None else None
    if found is None:
        return None
    if found[1] is not None:
        return "ref", found[1].decode()
    return "detached", found[2].decode()


def write_head(git_dir: Path, target: str) -> None:
    """Point the HEAD of admin dir ``git_dir`` at ``target``, a ref (``refs/heads/…``) or a
    commit: what ``git symbolic-ref`` or ``update-ref --no-deref`` write, without a process.
    Only for a tree nothing runs in (a parked or just-claimed one)."""
    content = f"ref: {target}\n" if target.startswith("refs/") else f"{target}\n"
    _replace_file(git_dir, "HEAD", content)


def register_path(git_dir: Path, path: Path) -> None:
    """Point the registration ``git_dir`` at the work tree now at ``path`` (after a rename,
    its ``.git`` file already naming ``git_dir``): the ``gitdir`` file ``git worktree repair
    <path>`` writes, written without a process."""
    _replace_file(git_dir, "gitdir", f"{os.path.realpath(path / '.git')}\n")


def _replace_file(directory: Path, name: str, content: str) -> None:
    """Write ``directory/name`` whole, by rename: a reader never sees half of it, and a link
    a sandbox left there is replaced, never followed. Mode as git's own (0666 less umask),
    so git in the sandbox, under another uid, still reads it."""
    temporary = directory / f"{name}.errands-{secrets.token_hex(6)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.replace(temporary, directory / name)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def branch_elsewhere(repo: Path, branch: str, git_dir: Path) -> bool | None:
    """Whether a linked work tree of ``repo`` other than the one of admin dir ``git_dir`` has
    ``branch`` checked out, from the admin dirs' HEAD files; None when one of those is not
    read here (:func:`head_of`): then ask git (:func:`list_worktrees`)."""
    worktrees = _common_dir(repo) / "worktrees"
    ref = f"refs/heads/{branch}"
    try:
        entries = sorted(worktrees.iterdir())
    except OSError:
        return None
    for entry in entries:
        if entry == git_dir:
            continue
        head = head_of(entry)
        if head is None:
            return None
        if head == ("ref", ref):
            return True
    return False


def prune_needed(repo: Path) -> bool:
    """Whether ``git worktree prune`` could find something to do in ``repo``: a registration
    that is not a directory, lacks a readable ``gitdir``, names a work tree that is gone or
    the same one as another; an empty ``worktrees`` directory. True on anything odd (git
    then decides); False lets a caller skip a process that would change nothing."""
    worktrees = _common_dir(repo) / "worktrees"
    try:
        entries = list(os.scandir(worktrees))
    except FileNotFoundError:
        return False
    except OSError:
        return True
    if not entries:
        return True
    seen: set[str] = set()
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            return True
        if os.path.lexists(os.path.join(entry.path, "locked")):
            continue  # git never prunes a locked registration
        content = _read_small(Path(entry.path, "gitdir"))
        target = content.decode(errors="replace").strip() if content is not None else ""
        if not os.path.isabs(target) or not os.path.lexists(target):
            return True
        real = os.path.realpath(target)
        if real in seen:
            return True
        seen.add(real)
    return False


@functools.lru_cache(maxsize=256)
def _common_dir(repo: Path) -> Path:
    # Cached: a repository's common dir does not move, and acquiring a workspace asks for
    # it on every claim (one git process less on the job's path).
    out = git("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=repo)
    return Path(out.strip()).resolve()


def remove_worktree(repo: Path, path: Path) -> None:
    """Remove the work tree at ``path`` and its registration; fine if it is already gone."""
    path = path.absolute()
    _clear_leftover(repo, path)
    prune_worktrees(repo)
    _sweep_indexes(repo)


def _sweep_indexes(repo: Path) -> None:
    """Delete the indexes kept for admin dirs git has pruned."""
    common = _common_dir(repo)
    indexes = common / INDEX_DIR
    if not indexes.is_dir():
        return
    for index in indexes.iterdir():
        if not (common / "worktrees" / index.name.removesuffix(".lock")).is_dir():
            index.unlink(missing_ok=True)


def _clear_leftover(repo: Path, path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        path.rmdir()
        return
    if not _belongs_to(repo, path):
        # Never delete a directory we cannot prove is ours: the caller may have passed the
        # wrong path, even the user's own checkout.
        raise GitError(f"{path} exists and is not a workspace of {repo}; not removing it")
    # Twice --force: also removes a worktree that is locked or has local changes.
    run_git("worktree", "remove", "--force", "--force", str(path), cwd=repo)
    if path.exists():
        shutil.rmtree(path)


def _belongs_to(repo: Path, path: Path) -> bool:
    common_dir = _common_dir(repo)
    # [1:]: the main work tree is never a workspace, even when `repo` is not bare.
    if any(t.path.resolve() == path.resolve() for t in list_worktrees(repo)[1:]):
        return True
    dot_git = path / ".git"
    if not dot_git.is_file():
        return False
    # A worktree's .git file is "gitdir: <common dir>/worktrees/<name>". Registration may
    # be missing after a crash half-way through `worktree add`, but this file is written first.
    content = dot_git.read_text(errors="replace").strip()
    if not content.startswith("gitdir: "):
        return False
    gitdir = (path / content.removeprefix("gitdir: ")).resolve()
    return gitdir.parent == common_dir / "worktrees"
