"""A workspace on a large repository: project creation, the first job's workspace and reuse.

Generates (deterministically, with ``git fast-import``, as ``bench/workspace.py`` does) a
repository of ``--files`` files (100,000 by default) and measures, for Errands' code in this
checkout and, with ``--against``, another copy of it (main's, say) side by side in one run:

- **project creation**, the index job's work, off any job's path: ``Mirror.create`` (which
  fetches everything), an up-to-date ``Mirror.fetch`` and ``WorkspacePool.prewarm`` (a full
  checkout, parked) — what ``errands.workflow.index.index_project`` runs when a project is
  added (``store_project`` queues that job);
- **the first job's workspace**: ``WorkspacePool.acquire`` once prewarm has parked a tree;
- **reuse**, ``--rounds`` times: the job commits a change on its task branch and leaves an
  untracked file and a ``__pycache__``; the base branch moves by one commit; then ``fetch``,
  ``release`` (scrub + park) and the next job's ``acquire`` on a new branch at the new base,
  each timed (median and p95);
- **peak memory** (``ru_maxrss``) of each phase's Python process and of the largest git it
  ran, every phase in a process of its own;
- ``git clone --no-local`` of the same repository, interleaved with the rounds, and its peak.

Each copy of the code runs in processes of its own (``python bench/workspace_large.py
--child …``), with its own mirror and pool; the copies take turns on each step, so both see
the same load. Usage (from the repository root)::

    git archive main src | tar -x -C /tmp/main-src     # the code to compare with
    python bench/workspace_large.py --against /tmp/main-src/src [--files 100000] [--rounds 10]

Timings are printed, never asserted. The targets (issue 22, item 2): the first workspace
≤ 1 s, reuse (the next job's acquire) ≤ 0.1 s on 100,000 files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
BRANCH = "main"
FIRST_TARGET = 1.0
REUSE_TARGET = 0.1


# -- a child: one copy of Errands' code, one phase -----------------------------------------------


def child(args: argparse.Namespace) -> None:
    if args.child == "origin":
        origin_child(args)
        return
    # The copy of the code under test, before anything imports errands.
    sys.path.insert(0, str(Path(args.src).resolve()))
    from errands.git import Mirror, WorkspacePool

    data = Path(args.data)
    root = data / "workspaces" / "project-1"
    if args.child == "setup":
        started = time.perf_counter()
        mirror = Mirror.create(data / "mirror.git", args.origin)
        created = time.perf_counter() - started
        started = time.perf_counter()
        mirror.fetch()
        fetched = time.perf_counter() - started
        os.sync()
        started = time.perf_counter()
        WorkspacePool(mirror, root).prewarm(mirror.base_ref(BRANCH))
        prewarmed = time.perf_counter() - started
        reply({"create": created, "fetch": fetched, "prewarm": prewarmed, **peaks()})
        return

    mirror = Mirror.create(data / "mirror.git", args.origin)  # adopts the existing one
    pool = WorkspacePool(mirror, root)
    base = mirror.base_ref(BRANCH)
    workspace = None
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "first":
            os.sync()
            started = time.perf_counter()
            workspace = pool.acquire("job-0", "errands/0-first", base)
            took = time.perf_counter() - started
            check(workspace.head() == mirror.resolve(base), "the first workspace is not at base")
            reply({"acquire": took})
        elif command == "round" and workspace is not None:
            n = int(arg)
            # What a job leaves: a commit on its task branch, an untracked file, and the
            # caches its tests wrote (ignored through the mirror's info/exclude).
            edited = workspace.path / "README.md"
            edited.write_text(edited.read_text() + f"job {n - 1} was here\n")
            check(workspace.commit_all(f"job {n - 1}") is not None, "the job's commit failed")
            (workspace.path / "job-output.txt").write_text("a previous job's leftovers\n")
            (workspace.path / "src" / "__pycache__").mkdir(exist_ok=True)
            (workspace.path / "src" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
            os.sync()
            timings = {}
            started = time.perf_counter()
            mirror.fetch()
            timings["fetch"] = time.perf_counter() - started
            os.sync()
            started = time.perf_counter()
            pool.release(workspace)
            timings["release"] = time.perf_counter() - started
            os.sync()
            started = time.perf_counter()
            workspace = pool.acquire(f"job-{n}", f"errands/{n}-next", base)
            timings["acquire"] = time.perf_counter() - started
            check(workspace.head() == mirror.resolve(base), f"round {n}: not at the new base")
            check(workspace.changed_files() == [], f"round {n}: leftovers in the workspace")
            check(not (workspace.path / "src" / "__pycache__").exists(), f"round {n}: caches")
            reply(timings)
        elif command == "end":
            if workspace is not None:
                pool.release(workspace)
            reply(peaks())
            return
        else:
            raise SystemExit(f"unknown command {line!r}")


def origin_child(args: argparse.Namespace) -> None:
    """Generates the repository, then writes one small commit on its base branch per
    request: the history's text stays in this process, so the processes measured are not
    forked from a large one (a child's ru_maxrss starts at its parent's size)."""
    sys.path.insert(0, str(ROOT))
    from bench.workspace import encode, generate

    started = time.perf_counter()
    history = generate(Path(args.origin), args.files, args.commits)
    checkout = sum(len(encode(v)) for v in history.files.values())
    reply({"generated": time.perf_counter() - started, "checkout_mb": checkout / 1e6})
    for line in sys.stdin:
        if line.strip() != "commit":
            return
        history.write(history.small_changes(1), first=False)
        reply({})


def peaks() -> dict[str, float]:
    """Peak resident memory in MB: this process, and the largest child it waited for."""
    return {
        "rss_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_git": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def reply(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


def check(ok: bool, problem: str) -> None:
    """Not a timing assertion: a benchmark of a wrong workspace would mean nothing."""
    if not ok:
        raise SystemExit(f"broken: {problem}")


# -- the parent: the repository, the turns, the table -------------------------------------------


class Copy:
    """One copy of Errands' code under test, with its own data directory."""

    def __init__(self, label: str, src: Path, work: Path, origin: Path) -> None:
        self.label = label
        self.src = src
        self.work = work
        self.data = work / f"data-{label}"
        self.origin = origin
        self.setups: list[dict[str, float]] = []
        self.first = 0.0
        self.rounds: dict[str, list[float]] = {"fetch": [], "release": [], "acquire": []}
        self.jobs_peaks: dict[str, float] = {}
        self.proc: subprocess.Popen[str] | None = None

    def argv(self, phase: str) -> list[str]:
        return [
            sys.executable, str(Path(__file__).resolve()), "--child", phase, "--src",
            str(self.src), "--data", str(self.data), "--origin", str(self.origin),
        ]  # fmt: skip

    def run_setup(self) -> None:
        """A project's creation, in a data directory of its own; the jobs use the last.

        Nothing is deleted until the end: deleting 100,000 files (discards on this disk)
        slowed whichever step came next, and a copy's turn would pay for the other's."""
        self.data = self.work / f"data-{self.label}-{len(self.setups)}"
        out = subprocess.run(self.argv("setup"), capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"{self.label}: setup failed: {out.stderr}")
        self.setups.append(json.loads(out.stdout.splitlines()[-1]))

    def setup(self, key: str) -> float:
        return statistics.median(s[key] for s in self.setups)

    def start_jobs(self) -> None:
        self.proc = subprocess.Popen(
            self.argv("jobs"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, command: str) -> dict[str, float]:
        assert self.proc is not None
        stdin: IO[str] | None = self.proc.stdin
        stdout: IO[str] | None = self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(command + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise SystemExit(f"{self.label}: the jobs process died on {command!r}")
        data: dict[str, float] = json.loads(line)
        return data

    def finish(self) -> None:
        self.jobs_peaks = self.ask("end")
        assert self.proc is not None
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tmp", type=Path, default=None, help="where to work (default: $TMPDIR)")
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clones", type=int, default=3)
    parser.add_argument("--setups", type=int, default=2, help="project creations per copy")
    parser.add_argument(
        "--against", type=Path, default=None, help="another copy of Errands' src/ to compare"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--child", choices=["origin", "setup", "jobs"], help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--origin", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="errands-bench-wsl-", dir=args.tmp)).resolve()
    try:
        bench(work, args)
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def bench(work: Path, args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.workspace import du, filesystem, p95, run

    origin = work / "origin.git"
    maker = subprocess.Popen(
        [
            sys.executable, str(Path(__file__).resolve()), "--child", "origin", "--origin",
            str(origin), "--files", str(args.files), "--commits", str(args.commits),
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert maker.stdin is not None and maker.stdout is not None
    made = json.loads(maker.stdout.readline() or "null")
    check(made is not None, "generating the repository failed")

    def new_base_commit() -> None:
        assert maker.stdin is not None and maker.stdout is not None
        maker.stdin.write("commit\n")
        maker.stdin.flush()
        check(maker.stdout.readline() != "", "writing a commit failed")

    tracked = len(run(origin, "git", "ls-tree", "-r", "--name-only", BRANCH).splitlines())

    copies = [Copy("this", ROOT / "src", work, origin)]
    if args.against is not None:
        copies.append(Copy("against", args.against.resolve(), work, origin))

    print("conditions")
    packed, checked_out = du(origin) / 1e6, made["checkout_mb"]
    print(f"  repository     {tracked:,} files, {args.commits:,} commits, {packed:.1f} MB packed")
    print(f"  checkout size  {checked_out:.1f} MB")
    print(f"  generated in   {made['generated']:.1f} s (git fast-import)")
    for copy in copies:
        print(f"  code '{copy.label}'{' ' * (8 - len(copy.label))} {copy.src}")
    print(f"  temp dir       {work} on {filesystem(work)}")
    print(f"  cpus           {os.cpu_count()} ({platform.machine()}), {platform.platform()}")
    print(f"  load average   {' '.join(f'{x:.1f}' for x in os.getloadavg())} (at the start)")
    print(f"  git            {run(work, 'git', '--version').strip()}")
    print("  page cache     warm (nothing dropped); sync before each timed step")
    print("  turns          the copies alternate on every step (setup, first, each round)")
    sys.stdout.flush()

    clones: list[float] = []
    clone_rss: list[float] = []
    clone_at = {round(i * args.rounds / max(1, args.clones - 1)) for i in range(args.clones)}

    def plain_clone() -> None:
        target = work / "clone"
        os.sync()
        started = time.perf_counter()
        proc = subprocess.Popen(
            ["git", "clone", "--quiet", "--no-local", str(origin), str(target)],
            env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull},
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        clones.append(time.perf_counter() - started)
        clone_rss.append(usage.ru_maxrss / 1024)
        check(proc.returncode == 0, "git clone failed")
        target.rename(work / f"clone-{len(clones)}")  # deleted at the end, see run_setup

    if 0 in clone_at:
        plain_clone()
    # ABBA…: each copy goes first as often as last.
    for i in range(args.setups):
        for copy in copies if i % 2 == 0 else reversed(copies):
            copy.run_setup()
    for copy in copies:
        copy.start_jobs()
        copy.first = copy.ask("first")["acquire"]
    for n in range(1, args.rounds + 1):
        new_base_commit()
        for copy in copies if n % 2 else reversed(copies):
            for key, value in copy.ask(f"round {n}").items():
                copy.rounds[key].append(value)
        if n in clone_at:
            plain_clone()
    for copy in copies:
        copy.finish()
    maker.stdin.close()
    maker.wait()

    report(copies, clones, clone_rss, p95)


def report(copies: list[Copy], clones: list[float], clone_rss: list[float], p95: Any) -> None:
    labels = [c.label for c in copies]
    width = 17

    def row(label: str, values: list[str], note: str = "") -> None:
        cells = "".join(f"{v:>{width}}" for v in values)
        print(f"  {label:34}{cells}  {note}".rstrip())

    def mp(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} / {p95(values):.3f}"

    def peak(peaks: dict[str, float]) -> str:
        return f"{peaks['rss_self']:.0f} MB / {peaks['rss_git']:.0f} MB"

    setups = len(copies[0].setups)
    print("\nproject creation: the index job, once per project, off any job's path")
    print(f"(median of {setups} per copy, taking turns; seconds)")
    row("", labels)
    row("Mirror.create (+ first fetch)", [f"{c.setup('create'):.3f}" for c in copies])
    row("Mirror.fetch, up to date", [f"{c.setup('fetch'):.3f}" for c in copies])
    row("prewarm (full checkout, parked)", [f"{c.setup('prewarm'):.3f}" for c in copies])
    each = [" ".join(f"{s['prewarm']:.1f}" for s in c.setups) for c in copies]
    row("  each prewarm, in turn", each)
    total = [c.setup("create") + c.setup("fetch") + c.setup("prewarm") for c in copies]
    row("total", [f"{t:.3f}" for t in total])
    highest = [{k: max(s[k] for s in c.setups) for k in ("rss_self", "rss_git")} for c in copies]
    row("peak RSS: python / largest git", [peak(h) for h in highest])

    print("\nthe first job's workspace (acquire after prewarm; one each, seconds)")
    row("", labels)
    row("first acquire", [f"{c.first:.3f}" for c in copies], f"target <= {FIRST_TARGET} s")

    rounds = len(copies[0].rounds["acquire"])
    print(f"\nreuse: the base moved 1 commit, the job committed 1 (median / p95 of {rounds}, s)")
    row("", labels)
    row("fetch", [mp(c.rounds["fetch"]) for c in copies])
    row("release (scrub + park)", [mp(c.rounds["release"]) for c in copies])
    acquires = [mp(c.rounds["acquire"]) for c in copies]
    row("acquire (the next job's wait)", acquires, f"target <= {REUSE_TARGET} s")
    cycles = [
        [r + a for r, a in zip(c.rounds["release"], c.rounds["acquire"], strict=True)]
        for c in copies
    ]
    row("release + acquire", [mp(cycle) for cycle in cycles])
    row("peak RSS: python / largest git", [peak(c.jobs_peaks) for c in copies])

    clone = statistics.median(clones)
    print("\ngit clone --no-local of the same repository, interleaved")
    print(f"  median / max of {len(clones)}            {clone:.3f} / {max(clones):.3f} s,"
          f" peak RSS {max(clone_rss):.0f} MB")  # fmt: skip

    print("\nagainst the targets and each other")
    for copy, cycle in zip(copies, cycles, strict=True):
        acquire = statistics.median(copy.rounds["acquire"])
        print(f"  {copy.label}: first workspace {copy.first:.3f} s "
              f"({'met' if copy.first <= FIRST_TARGET else 'NOT met'}), reuse {acquire:.3f} s "
              f"({'met' if acquire <= REUSE_TARGET else 'NOT met'}); clone / first "
              f"{clone / copy.first:.0f}x, clone / reuse {clone / acquire:.0f}x, "
              f"clone / (release + acquire) {clone / statistics.median(cycle):.0f}x")  # fmt: skip
    if len(copies) == 2:
        this, other = copies
        for key in ("release", "acquire"):
            ratio = statistics.median(other.rounds[key]) / statistics.median(this.rounds[key])
            print(f"  {key}: '{other.label}' / '{this.label}' = {ratio:.1f}x")
        ratio = other.first / this.first
        print(f"  first acquire: '{other.label}' / '{this.label}' = {ratio:.1f}x")


if __name__ == "__main__":
    main()
