"""Resource limits for a command's whole process tree: rlimits set on its first process before
it starts the command, and a pids cgroup where the host offers one.

Both are applied to the process we spawn (``bash`` or ``bwrap``) and inherited by everything
it starts, so a command cannot raise them: raising a hard rlimit or leaving a cgroup needs
privileges nothing in the tree has.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import logging
import os
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from errands.sandbox.policy import Limits

log = logging.getLogger(__name__)

_INFINITY = resource.RLIM_INFINITY
_names = itertools.count()


def tasks_of_user(uid: int) -> int:
    """Tasks (processes and their threads: what RLIMIT_NPROC counts) whose real uid is
    ``uid``, counted from /proc."""
    # Read as bytes with plain system calls and only the two fields looked at: this runs
    # before every command, and parsing each status file as text took 5-10x as long.
    count = 0
    wanted = b"%d" % uid
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/status", os.O_RDONLY)
        except OSError:  # exited meanwhile, or not ours to read
            continue
        try:
            status = os.read(fd, 1 << 16)
        except OSError:
            continue
        finally:
            os.close(fd)
        uid_at = status.find(b"\nUid:")
        if uid_at < 0 or status[uid_at + 5 :].split(None, 1)[0] != wanted:  # the real uid
            continue
        threads_at = status.find(b"\nThreads:")
        threads = int(status[threads_at + 9 :].split(None, 1)[0]) if threads_at >= 0 else 1
        count += max(threads, 1)
    return count


def rlimits_for(limits: Limits, *, extra_tasks: int = 0) -> list[tuple[int, tuple[int, int]]]:
    """The rlimits a command runs under, as ``(resource, (soft, hard))``, never above what
    this process may grant (an unprivileged process cannot raise a hard limit)."""
    # RLIMIT_NPROC is not "processes below this one": the kernel counts every task of the
    # *real uid* and refuses a fork once that count reaches the limit. So the budget is what
    # this user already runs plus what the command may add; concurrent commands of one worker
    # each see the others' processes in the count and so each still gets about their own
    # `processes` of headroom. It is only a backstop: a process with CAP_SYS_RESOURCE or
    # CAP_SYS_ADMIN ignores it, and so does anything whose real uid is the host's root (the
    # kernel exempts that user outright, even inside a user namespace where it is mapped to
    # an unprivileged uid and holds no capabilities: tested with bwrap as root here). A worker
    # running as a normal user gets the limit enforced, in the sandbox too. For a root worker
    # the pids cgroup below is what holds a fork bomb.
    nproc = tasks_of_user(os.getuid()) + limits.processes + extra_tasks
    # The CPU limit is per process: SIGXCPU at the soft limit, SIGKILL a second later for a
    # process that ignores it.
    wanted = [
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
        (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes),
        (resource.RLIMIT_NPROC, nproc, nproc),
    ]
    result = []
    for which, soft, hard in wanted:
        ceiling = resource.getrlimit(which)[1]
        if ceiling == _INFINITY:
            result.append((which, (soft, hard)))
        else:
            result.append((which, (min(soft, ceiling), min(hard, ceiling))))
    return result


_PR_SET_PDEATHSIG = 1


@functools.cache
def _libc_prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# The first thing the command's first process runs, before anything of the command: it moves
# itself into the cgroup ($1, when there is one), lowers its own rlimits (the ``ulimit``s
# spliced in), then becomes the command. Bash builtins only, so no Python runs in a forked
# child; ``bash -p`` reads no BASH_ENV and imports no functions or shell options from the
# environment it is given, and ``set +o posix`` keeps ``ulimit -f`` in KiB whatever that
# environment holds. Any step that fails ends it (125) with nothing of the command run. With
# $2 set the command gets an empty environment, without the PWD, SHLVL and _ bash adds.
_CONFINE = (
    'set +o posix; join=$1 clear=$2; shift 2; { [ -z "$join" ] || echo 0 > "$join"; } && '
    "ULIMITS || exit 125; "
    'if [ -n "$clear" ]; then exec -c "$@"; else exec "$@"; fi'
)
_CONFINE_NAME = "errands-start"  # $0 of that bash, as ps and its error messages show it
# Bash's ulimit flag for each rlimit, and its unit in bytes (ulimit -v and -f count KiB).
_ULIMIT_FLAGS = {
    resource.RLIMIT_CPU: ("t", 1),
    resource.RLIMIT_AS: ("v", 1024),
    resource.RLIMIT_FSIZE: ("f", 1024),
    resource.RLIMIT_NPROC: ("u", 1),
}


@functools.cache
def confine_programs() -> tuple[str, str] | None:
    """(setpriv, bash) from the system's directories when this setpriv sets a parent-death
    signal (util-linux 2.33+); None sends every start through ``child_setup`` instead."""
    setpriv = shutil.which("setpriv", path=os.defpath)
    bash = shutil.which("bash", path=os.defpath)
    if setpriv is None or bash is None:
        return None
    try:
        probe = subprocess.run(
            [setpriv, "--pdeathsig", "KILL", "--", bash, "-p", "-c", "ulimit -S -t 100000"],
            env={},
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (setpriv, bash) if probe.returncode == 0 else None


class LimitedStart:
    """How to start ``argv`` so that no process of it ever runs outside the cgroup or above
    the rlimits, and its first process dies with the worker thread that started it.

    A ``preexec_fn`` (``child_setup``) does it in the child, but makes Python fork() the worker:
    copying the page tables of a worker of a few hundred MB cost 5-60 ms per command. Here the
    child is started with vfork and exec only: ``setpriv`` sets the parent-death signal (kept
    across the execs that follow), then a bash running ``_CONFINE`` moves itself into the
    cgroup (``PidsCgroup.join_file``) and lowers its rlimits, and execs ``argv``. Everything
    ``argv`` forks inherits the cgroup and the rlimits.

    Start the process with ``argv`` and ``preexec_fn`` (and ``env``: ``empty_env`` says it is
    empty, so ``argv`` gets nothing of bash's either)."""

    def __init__(
        self,
        argv: Sequence[str],
        limits: Limits,
        cgroup: PidsCgroup | None,
        *,
        extra_tasks: int = 0,
        empty_env: bool = False,
    ) -> None:
        rlimits = rlimits_for(limits, extra_tasks=extra_tasks)
        programs = confine_programs()
        self.preexec_fn: Callable[[], None] | None = None
        if programs is None:
            self.argv = list(argv)
            self.preexec_fn = child_setup(rlimits, cgroup)
            return
        setpriv, bash = programs
        script = _CONFINE.replace("ULIMITS", " && ".join(_ulimits(rlimits)))
        join = str(cgroup.join_file) if cgroup is not None else ""
        self.argv = [
            *(setpriv, "--pdeathsig", "KILL", "--"),
            *(bash, "-p", "-c", script, _CONFINE_NAME, join, "clear" if empty_env else ""),
            *argv,
        ]


def _ulimits(rlimits: list[tuple[int, tuple[int, int]]]) -> list[str]:
    """``ulimit`` commands setting ``rlimits``: the soft limit first, so that the hard one is
    never below it; a limit that is not a whole unit is rounded down, never up."""
    commands = []
    for which, values in rlimits:
        flag, unit = _ULIMIT_FLAGS[which]
        soft, hard = ("unlimited" if value == _INFINITY else str(value // unit) for value in values)
        commands += [f"ulimit -S -{flag} {soft}", f"ulimit -H -{flag} {hard}"]
    return commands


def child_setup(
    rlimits: list[tuple[int, tuple[int, int]]], cgroup: PidsCgroup | None
) -> Callable[[], None]:
    """A ``preexec_fn`` doing what ``LimitedStart`` does, for a system without its programs:
    joins the cgroup and lowers the rlimits in the forked child, before it executes anything.

    Everything is computed in the parent; the function itself only makes system calls (no
    imports, no locks), which is what keeps ``preexec_fn`` safe in a threaded worker."""
    prctl = _libc_prctl()
    join = str(cgroup.join_file) if cgroup is not None else None

    def setup() -> None:
        # The command's first process dies with the worker thread that started it; what it
        # forked is still in the cgroup, which the next sweep empties (``_sweep``).
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if join is not None:
            fd = os.open(join, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # this process (its only thread: a fork has one)
            finally:
                os.close(fd)
        for which, values in rlimits:
            resource.setrlimit(which, values)

    return setup


class PidsCgroup:
    """A cgroup of its own for one command: ``pids.max`` caps how many tasks the tree may have
    at once (whoever owns them, root included), and its member list finds every process of the
    tree, even one that left the process group with ``setsid``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # How a process moves itself in: writing "0" to cgroup v1's ``tasks`` moves the
        # writing thread without the global lock a move of another process takes (a kernel
        # RCU grace period: 5-20 ms per command here); a command's first process is single-
        # threaded, so that is the whole process. cgroup v2 has only ``cgroup.procs``.
        tasks = path / "tasks"
        self.join_file = tasks if tasks.exists() else path / "cgroup.procs"

    @classmethod
    def create(cls, max_tasks: int) -> PidsCgroup | None:
        """A fresh cgroup, or None where the pids controller is not ours to use (no cgroup
        mounted, cgroup v2 without delegation, not root)."""
        parent = _pids_parent()
        if parent is None:
            return None
        path = parent / f"errands-{os.getpid()}-{next(_names)}"
        try:
            path.mkdir()
        except OSError as exc:
            log.debug("no pids cgroup for sandboxed commands: %s", exc)
            return None
        cgroup = cls(path)
        try:
            (path / "pids.max").write_text(str(max_tasks))
        except OSError:
            cgroup.remove()
            return None
        return cgroup

    def members(self) -> list[int]:
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def kill(self, *, within: float = 5.0) -> bool:
        """SIGKILL every member until none is left; False if some survive ``within`` seconds."""
        deadline = time.monotonic() + within
        kill_file = self.path / "cgroup.kill"  # cgroup v2 (Linux 5.14+): atomic, race-free
        # A killed process (or bwrap's pid namespace, torn down after its init) leaves the
        # cgroup within a millisecond or two: look again soon, then less and less often.
        pause = 0.0005
        while members := self.members():
            if kill_file.exists():
                with contextlib.suppress(OSError):
                    kill_file.write_text("1")
            else:
                # Repeated until empty: a member may fork between our read and our kill,
                # but pids.max bounds how many there can ever be.
                for pid in members:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        return True

    def remove(self) -> None:
        # A killed member leaves the cgroup a moment after it dies, so rmdir may say EBUSY
        # briefly; a cgroup left behind is removed by the next worker's sweep.
        deadline = time.monotonic() + 2
        pause = 0.0005
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    log.warning("could not remove the cgroup %s", self.path)
                    return
                time.sleep(pause)
                pause = min(pause * 2, 0.01)


def pids_cgroup_available() -> bool:
    return _pids_parent() is not None


def process_limit_holds() -> bool:
    """Whether ``Limits.processes`` is enforced here: by a pids cgroup, or by RLIMIT_NPROC
    for a worker that is not root."""
    return pids_cgroup_available() or os.getuid() != 0


@functools.cache
def warn_if_process_limit_does_not_hold() -> None:
    if not process_limit_holds():
        log.warning(
            "The sandbox cannot limit the number of processes: the worker runs as root and no "
            "pids cgroup is available to it, so a fork bomb is only stopped by the command's "
            "timeout. Run the worker as a normal user, or give it a pids cgroup."
        )


@functools.cache
def _pids_parent() -> Path | None:
    """Where this process may create pids cgroups: below its own cgroup in the pids hierarchy
    (cgroup v1), or in its cgroup v2 directory when the pids controller is delegated there."""
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    v1_path = v2_path = None
    for line in own:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            v1_path = path
        elif controllers == "":
            v2_path = path
    for line in mounts:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        fstype, _, options = rest.split()[:3]
        root, mountpoint = parts[3], parts[4].replace("\\040", " ")
        if fstype == "cgroup" and "pids" in options.split(",") and v1_path is not None:
            parent = _below(Path(mountpoint), root, v1_path)
        elif fstype == "cgroup2" and v1_path is None and v2_path is not None:
            parent = _below(Path(mountpoint), root, v2_path)
            try:
                delegated = "pids" in (parent / "cgroup.subtree_control").read_text().split()
            except OSError:
                delegated = False
            if not delegated:
                continue
        else:
            continue
        if os.access(parent, os.W_OK):
            _sweep(parent)
            return parent
    return None


def _below(mountpoint: Path, root: str, path: str) -> Path:
    relative = path[len(root) :] if path.startswith(root) else path
    return mountpoint / relative.lstrip("/")


def _sweep(parent: Path) -> int:
    """Kill what is left in the cgroups of workers that died (SIGKILL gives them no chance to
    clean up: a command they ran may still be running) and remove those cgroups. Returns how
    many cgroups were reaped."""
    reaped = 0
    for entry in parent.glob("errands-*-*"):
        owner = entry.name.split("-")[1]
        if owner.isdigit() and int(owner) != os.getpid() and not Path("/proc", owner).exists():
            orphan = PidsCgroup(entry)
            if orphan.members():
                log.warning("killing the commands a dead worker left running (%s)", entry.name)
                orphan.kill(within=2.0)
            orphan.remove()
            reaped += 1
    return reaped


def reap_orphaned_commands() -> int:
    """The periodic form of the start-up sweep (see ``_sweep``)."""
    parent = _pids_parent()
    return _sweep(parent) if parent is not None else 0
