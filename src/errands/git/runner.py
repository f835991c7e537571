"""Run the ``git`` CLI with a fixed, predictable environment."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from errands.errors import GitError

# Commits Errands makes carry this identity via the environment, so nothing depends on the
# host's (often absent) global git identity.
ERRANDS_IDENTITY: Mapping[str, str] = {
    "GIT_AUTHOR_NAME": "Errands",
    "GIT_AUTHOR_EMAIL": "errands@localhost",
    "GIT_COMMITTER_NAME": "Errands",
    "GIT_COMMITTER_EMAIL": "errands@localhost",
}

# Variables that point git at a different repository, index or config. They leak in when
# Errands itself runs from a git hook and would silently redirect every command we run.
# (The list is `git rev-parse --local-env-vars`.)
_REPO_LOCAL_ENV = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_OBJECT_DIRECTORY",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_GRAFT_FILE",
        "GIT_INDEX_FILE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_REPLACE_REF_BASE",
        "GIT_PREFIX",
        "GIT_INTERNAL_SUPER_PREFIX",
        "GIT_SHALLOW_FILE",
        "GIT_COMMON_DIR",
    }
)

_FIXED_ENV: Mapping[str, str] = {
    "LC_ALL": "C",
    "LANGUAGE": "C",
    # A background worker has nobody to answer a prompt; fail instead of hanging.
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "GIT_EDITOR": ":",
    "GIT_MERGE_AUTOEDIT": "no",
    # `git status` otherwise rewrites the index to refresh stat data; in the user's
    # repository that would be a write we promised never to make.
    "GIT_OPTIONAL_LOCKS": "0",
}

# Every git command Errands runs is immune to what a repository can say about running a
# program: agents write work trees, their nested repositories and, through the sandbox, their
# work tree's private git directory, and these commands run on the host with the worker's
# keys. Given on the command line these win over every config file, and git hands them down
# to any git it starts (GIT_CONFIG_PARAMETERS), a nested repository's included.
_HARDENED_CONFIG = (
    "core.fsmonitor=false",  # a program run by status, diff, add, reset, checkout …
    "core.hooksPath=/dev/null",  # no hook runs; our commits and checkouts are ours alone
    "core.pager=cat",
    "submodule.recurse=false",
    # A nested repository is never entered: its config is whoever made it's.
    "diff.ignoreSubmodules=all",
    "status.submoduleSummary=false",
    "fetch.recurseSubmodules=false",
)
# Over a work tree (``--work-tree`` or ``git worktree``), the tree's own .gitattributes can
# name filter, diff and merge drivers; drivers are config, and with only the repository's
# own config (Errands' mirror, which no agent can write) there are none to name. So these
# commands read no system or global config at all, and talk to no remote.
_SEALED_CONFIG = ("protocol.allow=never", "core.attributesFile=/dev/null")
_SEALED_ENV: Mapping[str, str] = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ATTR_NOSYSTEM": "1",
}
# .gitmodules (the agent's) can set submodule.<name>.ignore and so override
# diff.ignoreSubmodules; only the command-line option wins over it. diff.external and
# textconv drivers (an empty diff.external would be run as the command "") are off by option.
_NO_DRIVERS = ("--no-ext-diff", "--no-textconv")
_SUBCOMMAND_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "status": ("--ignore-submodules=all",),
    "diff": ("--ignore-submodules=all", *_NO_DRIVERS),
    "log": _NO_DRIVERS,
    "show": _NO_DRIVERS,
    "diff-index": ("--ignore-submodules=all",),
    "diff-files": ("--ignore-submodules=all",),
}

_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_SECRET_CONFIG = re.compile(r"^(?P<key>[^=]*(?:header|token|password|auth)[^=]*)=.*$", re.I)
_MAX_STDERR_IN_MESSAGE = 2000


@dataclass(frozen=True, slots=True)
class GitResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    # True when stdout was cut at ``max_output`` bytes and git was stopped early.
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def redact(text: str) -> str:
    """Remove credentials embedded in URLs (``https://user:token@host``)."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)


def _redact_arg(arg: str) -> str:
    match = _SECRET_CONFIG.match(arg)
    if match:
        return f"{match['key']}=***"
    return redact(arg)


def format_command(args: Sequence[str]) -> str:
    return " ".join(["git", *(_redact_arg(a) for a in args)])


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # Errands' own settings carry LLM keys; hooks git runs have no business seeing them.
        if key not in _REPO_LOCAL_ENV
        and not key.startswith("ERRANDS_")
        and not key.endswith("_API_KEY")
    }
    env.update(_FIXED_ENV)
    if extra:
        env.update(extra)
    return env


def hardened(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The argv and extra environment that run git ``args`` immune to repository content:
    the one place that builds a git invocation (see the constants above for why each)."""
    argv = ["git", "--no-pager", "-c", "core.quotepath=off", "-c", "color.ui=false"]
    for setting in _HARDENED_CONFIG:
        argv += ["-c", setting]
    at = _subcommand_at(args)
    subcommand = args[at] if at is not None else None
    sealed = subcommand == "worktree" or any(a.startswith("--work-tree") for a in args[:at])
    env: dict[str, str] = {}
    if sealed:
        for setting in _SEALED_CONFIG:
            argv += ["-c", setting]
        env.update(_SEALED_ENV)
    if at is None:
        return [*argv, *args], env
    options = _SUBCOMMAND_OPTIONS.get(args[at], ())
    return [*argv, *args[: at + 1], *options, *args[at + 1 :]], env


def _subcommand_at(args: Sequence[str]) -> int | None:
    """Index of the subcommand in ``args`` (after global options such as ``-c x=y``)."""
    at = 0
    while at < len(args):
        if args[at] in ("-c", "-C"):
            at += 2
        elif args[at].startswith("-"):
            at += 1
        else:
            return at
    return None


def run_git(
    *args: str,
    cwd: Path,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    max_output: int | None = None,
) -> GitResult:
    """Run git and return its result whatever the exit status.

    Raises :class:`GitError` only when git could not be run at all (missing binary,
    missing ``cwd``, timeout). ``max_output`` caps how many bytes of stdout are kept;
    git is stopped once it is exceeded (see :attr:`GitResult.truncated`).
    """
    if not cwd.is_dir():
        raise GitError(f"cannot run {format_command(args)}: {cwd} is not a directory")
    if max_output is not None and input is not None:
        raise ValueError("max_output cannot be combined with input")
    argv, sealed_env = hardened(args)
    # stderr goes to a file, not a pipe: a chatty stderr can then never block git while we
    # are still reading a capped stdout.
    with tempfile.TemporaryFile() as err_file:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=_child_env({**sealed_env, **(env or {})}),
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err_file,
                # Own session: no controlling terminal, so ssh and credential helpers
                # cannot prompt on /dev/tty, and a timeout can kill git's helpers too.
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise GitError("git is not installed or not on PATH") from exc
        with proc:
            try:
                stdout, truncated = _collect(proc, input, timeout, max_output)
            except subprocess.TimeoutExpired as exc:
                _kill_group(proc)
                raise GitError(f"{format_command(args)} timed out after {timeout} s") from exc
        err_file.seek(0)
        stderr = err_file.read(256 * 1024).decode(errors="replace")
    return GitResult(
        args=args,
        # Stopping git early is our choice, not git's failure.
        returncode=0 if truncated else proc.returncode,
        stdout=stdout.decode(errors="replace"),
        stderr=stderr,
        truncated=truncated,
    )


def start_git(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    """Start a long-lived git (``cat-file --batch-check``) that reads requests on its stdin
    and answers on its stdout, hardened like every other (see :func:`hardened`); stderr is
    dropped, so a request git complains about can never fill a pipe nobody reads."""
    argv, sealed_env = hardened(args)
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=_child_env(sealed_env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH") from exc


def _collect(
    proc: subprocess.Popen[bytes],
    input: str | None,
    timeout: float | None,
    max_output: int | None,
) -> tuple[bytes, bool]:
    if max_output is None:
        stdout, _ = proc.communicate(input.encode() if input is not None else None, timeout)
        return stdout, False
    assert proc.stdout is not None
    data = proc.stdout.read(max_output + 1)
    if len(data) > max_output:
        _kill_group(proc)
        proc.wait()
        return data[:max_output], True
    proc.wait(timeout)
    return data, False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def error_for(result: GitResult, *, include_stdout: bool = False) -> GitError:
    """The :class:`GitError` describing a failed ``result``, credentials removed."""
    output = result.stderr.strip()
    if include_stdout:
        output = f"{result.stdout.strip()}\n{output}".strip()
    stderr = redact(output)
    if len(stderr) > _MAX_STDERR_IN_MESSAGE:
        stderr = "…" + stderr[-_MAX_STDERR_IN_MESSAGE:]
    message = f"{format_command(result.args)} failed (exit {result.returncode})"
    return GitError(f"{message}: {stderr}" if stderr else message)


def git(
    *args: str,
    cwd: Path,
    input: str | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run git and return its stdout; raise :class:`GitError` on failure when ``check``."""
    result = run_git(*args, cwd=cwd, input=input, env=env, timeout=timeout)
    if check and not result.ok:
        raise error_for(result)
    return result.stdout
