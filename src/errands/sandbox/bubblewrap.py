"""Backend "bubblewrap": each command in fresh Linux namespaces built by ``bwrap``.

What the command sees: the system directories and /etc read-only (with secrets masked), the
policy's readable paths read-only, the workspace and the policy's writable paths read-write,
an empty /tmp and HOME, its own /proc (its own processes only), a minimal /dev, and nothing
else of the host: no home directory, no data directory, no /run or /var (so no docker or
podman socket), no network unless the call asks for it. The worker's well-known credential
files (``policy.HOME_SECRETS``) are masked even inside a readable path. It runs as uid 1000 without
capabilities and cannot create further user namespaces.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from errands.errors import CommandError, ConfigError
from errands.sandbox.base import CommandResult, Launch
from errands.sandbox.policy import SandboxPolicy, home_secrets
from errands.sandbox.process import run_process

SANDBOX_UID = 1000  # not root inside: tools behave as for a normal user
HOME = "/tmp/home"

# Spelled out rather than --unshare-all: that one only *tries* the user and cgroup namespaces
# and silently goes on without them; here a missing namespace is an error.
_NAMESPACES = (
    "--unshare-user",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup",
)
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# Secrets in /etc, masked whatever their mode on this host.
_ETC_SECRETS = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/sudoers",
    "/etc/sudoers.d",
)
_BWRAP_HELPERS = 2  # bwrap itself and the init of the pid namespace
# The egress forwarder (errands.egress.forwarder) inside: the system's Python runs it, with
# nothing of the workspace or the environment on its import path (-I), no site (-S).
FORWARDER_PYTHON = "/usr/bin/python3"
EGRESS_DIR = "/run/errands"
_EGRESS_SOCKET = f"{EGRESS_DIR}/egress.sock"
_EGRESS_FORWARDER = f"{EGRESS_DIR}/forwarder.py"
# Started before the command, which runs only once the forwarder listens ($1 is the command).
_EGRESS_WRAPPER = (
    f"{FORWARDER_PYTHON} -I -S {_EGRESS_FORWARDER} {_EGRESS_SOCKET} {{port}} || "
    "{{ echo 'errands: the egress forwarder did not start' >&2; exit 125; }}\n"
    'exec bash -c "$1"'
)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot sandbox commands on this machine, or None when it can. Probed
    once per process, with the very command line every command gets."""
    path = bwrap_path()
    if path is None:
        return "bwrap is not installed"
    with tempfile.TemporaryDirectory(prefix="errands-probe-") as workspace:
        probe = BubblewrapSandbox(SandboxPolicy(workspace=Path(workspace), env={}), bwrap=path)
        try:
            done = subprocess.run(
                probe.argv("true"), env={}, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{path} does not run: {exc}"
    if done.returncode != 0:
        detail = done.stderr.strip() or f"exit code {done.returncode}"
        return f"{path} cannot create a sandbox here ({detail})"
    return None


def bwrap_usable() -> bool:
    return bwrap_problem() is None


class BubblewrapSandbox:
    name = "bubblewrap"

    def __init__(self, policy: SandboxPolicy, *, bwrap: str | None = None) -> None:
        path = bwrap or bwrap_path()
        if path is None:
            raise ConfigError(
                "The bubblewrap sandbox needs bwrap: install it (apt-get install bubblewrap)."
            )
        if policy.egress is not None and not os.access(FORWARDER_PYTHON, os.X_OK):
            raise ConfigError(
                f"The sandbox's egress forwarder runs on {FORWARDER_PYTHON}, which is missing: "
                "install it (apt-get install python3-minimal)."
            )
        self.bwrap = path
        self.policy = policy
        # Computed once per sandbox (one job's), not per command: the system directories and
        # /etc are read-only to every command, so no command can change what they hold.
        # Only the host can (a package installed mid-job); the next job's sandbox sees it.
        self.etc_masks = etc_masks()
        self._system = _system_mounts(self.etc_masks)
        self._system_shown = [Path(os.path.realpath(name)) for name in (*_SYSTEM_DIRS, "/etc")]

    def run(
        self,
        command: str,
        *,
        timeout: float,
        cancel: threading.Event | None = None,
        network: bool = False,
        on_output: Callable[[str], None] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult:
        workspace = self.policy.workspace
        if not workspace.is_dir():
            raise CommandError(f"Cannot start {command!r} in {workspace}: no such directory")
        return run_process(
            # The policy is the ceiling: a call can ask for the network only where the policy
            # (a project's setup commands) allows it.
            self.argv(command, network=network and self.policy.network),
            command=command,
            # bwrap's own environment is what /proc/1/environ shows inside (bwrap is the pid
            # namespace's init): give it nothing at all.
            env={},
            cwd=workspace,
            limits=self.policy.limits,
            timeout=timeout,
            cancel=cancel,
            # The egress forwarder's process and its threads (two per connection) come on top.
            helper_tasks=_BWRAP_HELPERS + (64 if self.policy.egress is not None else 0),
            on_output=on_output,
            on_line=on_line,
        )

    def launch(self, command: str) -> Launch:
        workspace = self.policy.workspace
        if not workspace.is_dir():
            raise CommandError(f"Cannot start {command!r} in {workspace}: no such directory")
        return Launch(
            command=command,
            argv=self.argv(command),
            env={},  # as in run: bwrap's own environment shows inside as /proc/1/environ
            cwd=workspace,
            limits=self.policy.limits,
            helper_tasks=_BWRAP_HELPERS + (64 if self.policy.egress is not None else 0),
        )

    def environment(self, *, network: bool = False) -> dict[str, str]:
        """The complete environment of a command inside."""
        egress = self.policy.egress
        return {
            **self.policy.env,
            **(egress.env if egress is not None and not network else {}),
            "HOME": HOME,
            "TMPDIR": "/tmp",
            "PYTHONDONTWRITEBYTECODE": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "CI": "true",
        }

    def argv(self, command: str, *, network: bool = False) -> list[str]:
        """The bwrap command line for ``command``. Mounts apply in order, each on top of the
        ones before, so the order below is the policy."""
        policy = self.policy
        tmp_size = str(policy.limits.file_bytes)
        args = [self.bwrap, *_NAMESPACES]
        if not network:
            args.append("--unshare-net")  # only a loopback of its own: no route anywhere
        args += ["--disable-userns", "--cap-drop", "ALL"]
        args += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox"]
        # --die-with-parent: if the worker dies, the sandbox dies with it (its pid namespace
        # with its init). --new-session: no controlling terminal to inject keystrokes into.
        args += ["--die-with-parent", "--new-session", "--clearenv"]
        for name, value in self.environment(network=network).items():
            args += ["--setenv", name, value]
        args += ["--proc", "/proc", "--dev", "/dev", "--size", tmp_size, "--tmpfs", "/dev/shm"]
        system_args, read_only_tmpfs = self._system
        args += system_args
        read_only_tmpfs = ["/dev", *read_only_tmpfs]
        if network:
            args += _resolver_args()
        egress = None if network else policy.egress
        if egress is not None:
            args += ["--ro-bind", str(egress.socket), _EGRESS_SOCKET]
            args += ["--ro-bind", str(egress.forwarder), _EGRESS_FORWARDER]
        args += ["--size", tmp_size, "--tmpfs", "/tmp", "--dir", HOME]

        shown = list(self._system_shown)
        grants = [(0, "--ro-bind", _real(path)) for path in policy.readable]
        grants += [(1, "--bind", _real(path)) for path in (*policy.writable, policy.workspace)]
        grants = [grant for grant in grants if grant[2].exists()]
        grants += [(0, "--ro-bind", pin) for pin in _git_pointers(grants)]
        shown += [path for _, _, path in grants]
        # The worker's well-known credential files are hidden under every policy, so no grant
        # (a toolchain's directory in the home) can show one.
        # Looked up for every command: a command may have made a credential file appear
        # (or a toolchain may have written one) since the last.
        hidden = (*policy.hidden, *home_secrets(Path.home()))
        for path in map(_real, filter(os.path.lexists, hidden)):
            # Only what is visible needs covering; anything else is absent already, and a
            # mount point made for it would only show its name. (A name that does not exist
            # even as a dangling link cannot exist under its real path either: skipped
            # before resolving it, the costly part.)
            if path.exists() and any(path == root or root in path.parents for root in shown):
                grants.append((2, "hide", path))
        # Outer paths first, so a deeper path always lands on top: a readable toolchain inside
        # a hidden home shows through; a hidden data directory inside a readable tree covers
        # it, and the workspace inside that hidden data directory shows through again. At the
        # same depth, hiding wins.
        grants.sort(key=lambda grant: (len(grant[2].parts), grant[0]))
        for _, kind, path in grants:
            if kind != "hide":
                args += [kind, str(path), str(path)]
            elif path.is_dir():
                args += ["--size", "4096", "--tmpfs", str(path)]
                read_only_tmpfs.append(str(path))
            else:
                args += ["--ro-bind", "/dev/null", str(path)]

        # Read-only last: bwrap makes the mount points for later mounts inside these first.
        for path_name in read_only_tmpfs:
            args += ["--remount-ro", path_name]
        args += ["--remount-ro", "/"]
        args += ["--chdir", str(_real(policy.workspace)), "--", "bash", "-c"]
        if egress is not None:
            return [*args, _EGRESS_WRAPPER.format(port=egress.port), "errands-egress", command]
        return [*args, command]


def _system_mounts(masks: tuple[tuple[str, bool], ...]) -> tuple[list[str], list[str]]:
    """The system directories and /etc read-only, with /etc's secrets masked: (bwrap
    arguments, tmpfs masks to remount read-only)."""
    args: list[str] = []
    read_only_tmpfs: list[str] = []
    for name in _SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():  # /bin -> usr/bin on merged-/usr systems
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    args += ["--ro-bind", "/etc", "/etc"]
    for masked, is_dir in masks:
        if is_dir:
            args += ["--size", "4096", "--tmpfs", masked]
            read_only_tmpfs.append(masked)
        else:
            args += ["--ro-bind", "/dev/null", masked]
    return args, read_only_tmpfs


def _git_pointers(grants: list[tuple[int, str, Path]]) -> list[Path]:
    """The files in writable trees that tell git where a repository is, pinned read-only.

    A worktree's ``.git`` file and its private git directory's ``commondir`` name the
    repository whose config git reads. Rewritten by a command to point at a directory it
    made, with a ``core.fsmonitor`` or ``core.hooksPath`` of its choosing, the next git
    command the worker runs in that workspace (outside the sandbox) would run the attacker's
    program. A file that is a mount point can be neither written, replaced nor removed."""
    pins = []
    for _, kind, path in grants:
        if kind != "--bind":
            continue
        for name in (".git", "commondir", "gitdir"):
            pointer = path / name
            if pointer.is_file() and not pointer.is_symlink():
                pins.append(pointer)
    return pins


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def etc_masks() -> tuple[tuple[str, bool], ...]:
    """Entries of /etc to mask: the known secrets, and everything not world-readable.

    Why not trust the file modes: inside the user namespace the worker's uid is mapped to the
    sandbox user. A worker running as root makes every root-owned file *owned by the sandbox
    user* (and the root group its group), so an owner-only file such as /etc/shadow, a host
    SSH key or a database's password file becomes readable. Whatever the host keeps from
    "others" stays masked."""
    found: dict[str, bool] = {}
    for name in _ETC_SECRETS:
        if os.path.lexists(name) and not os.path.islink(name):
            found[name] = os.path.isdir(name)
    # scandir with the entries' own lstat: half the time of os.walk plus an lstat per name.
    pending = ["/etc"]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode
                except OSError:
                    continue
                path = entry.path
                if stat.S_ISDIR(mode):
                    if (mode & 0o005) != 0o005:
                        found[path] = True
                    if path not in found:  # a masked directory's contents go with it
                        pending.append(path)
                elif not stat.S_ISLNK(mode) and not mode & 0o004:
                    found[path] = False
    return tuple(
        (path, is_dir)
        for path, is_dir in sorted(found.items())
        if not any(parent in found for parent in _parents(path))
    )


def _parents(path: str) -> list[str]:
    return [str(parent) for parent in Path(path).parents]


def _resolver_args() -> list[str]:
    """With the network on, DNS must work: when /etc/resolv.conf links outside /etc (e.g. to
    systemd-resolved's file under /run, which is not mounted), show the file it points to."""
    real = os.path.realpath("/etc/resolv.conf")
    if real.startswith(("/etc/", "/usr/")) or not os.path.isfile(real):
        return []
    return ["--ro-bind", real, real]
