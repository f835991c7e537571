"""Git processes Errands starts per task, by phase, subcommand and call site.

Runs ``bench/overhead.py`` in this process with ``subprocess.Popen`` wrapped, so every git
Errands starts (not those git starts itself, nor the benchmark's own set-up) is counted
where it was started from. Phases are the benchmark's (research → answer, execute,
revise, merge); "project" is creating and indexing the project, done once per task there.

Usage (from the repository root)::

    python bench/git_processes.py [--tasks 1] [--sites 40] [overhead.py's options]

Counts are printed, never asserted.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import overhead  # noqa: E402

# Frames of these functions say nothing about who wanted the process: skipped for the site.
PLUMBING = (
    "git/runner.py",
    "git/worktrees.py:tree_git",
    "git/worktrees.py:run_tree_git",
    "git/workspace.py:_git",
    "git/workspace.py:_run",
    "git/lookup.py",
)


class Counter:
    def __init__(self) -> None:
        self.phase = "set-up"
        self.seen: collections.Counter[tuple[str, str, str]] = collections.Counter()
        # wall seconds from start to exit being reaped, summed per key
        self.seconds: collections.defaultdict[tuple[str, str, str], float] = (
            collections.defaultdict(float)
        )
        self.lock = threading.Lock()

    def record(self, argv: Sequence[str]) -> tuple[str, str, str] | None:
        frames = [
            f"{frame.filename.split('/src/errands/')[-1]}:{frame.name}"
            for frame in traceback.extract_stack()[:-2]
            if "/src/errands/" in frame.filename
        ]
        if not frames:
            return None  # the benchmark's own git (generating and cloning the repository)
        sites = [f for f in frames if not f.startswith(PLUMBING)]
        key = (self.phase, _subcommand(argv), " < ".join(reversed(sites[-3:])))
        with self.lock:
            self.seen[key] += 1
        return key

    def took(self, key: tuple[str, str, str], seconds: float) -> None:
        with self.lock:
            self.seconds[key] += seconds


def _subcommand(argv: Sequence[str]) -> str:
    at = 1
    while at < len(argv) and argv[at].startswith("-"):
        at += 2 if argv[at] in ("-c", "-C") else 1
    return argv[at] if at < len(argv) else "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--sites", type=int, default=40, help="call sites listed (0: none)")
    args, rest = parser.parse_known_args(argv)
    counter = Counter()

    original_init = subprocess.Popen.__init__

    def counting(self: subprocess.Popen[Any], popen_args: Any, *more: Any, **kw: Any) -> None:
        command = [str(a) for a in popen_args] if isinstance(popen_args, list | tuple) else []
        key = counter.record(command) if command and Path(command[0]).name == "git" else None
        original_init(self, popen_args, *more, **kw)
        if key is not None:
            started[id(self)] = (key, time.perf_counter())

    original_exit = subprocess.Popen._handle_exitstatus  # type: ignore[attr-defined]
    started: dict[int, tuple[tuple[str, str, str], float]] = {}

    def reaped(self: subprocess.Popen[Any], *exit_args: Any, **exit_kw: Any) -> None:
        # where CPython records the exit status once the child is reaped: start → exit
        if (entry := started.pop(id(self), None)) is not None:
            counter.took(entry[0], time.perf_counter() - entry[1])
        original_exit(self, *exit_args, **exit_kw)

    original_meter_init = overhead.Meter.__init__
    original_close = overhead.Meter.close
    original_run_task = overhead.run_task
    after: list[str] = []

    def meter_init(self: overhead.Meter, llm: Any) -> None:
        original_meter_init(self, llm)
        after[:] = ["execute", "revise", "merge", "after"]
        counter.phase = "research"

    def meter_close(self: overhead.Meter, phase: overhead.Phase) -> None:
        original_close(self, phase)
        counter.phase = after.pop(0) if after else "after"

    def run_task(*task_args: Any, **task_kw: Any) -> overhead.TaskRun:
        counter.phase = "project"
        return original_run_task(*task_args, **task_kw)

    # setattr: mypy refuses an assignment to a method; patched for this run only.
    setattr(subprocess.Popen, "__init__", counting)  # noqa: B010
    setattr(subprocess.Popen, "_handle_exitstatus", reaped)  # noqa: B010
    setattr(overhead.Meter, "__init__", meter_init)  # noqa: B010
    setattr(overhead.Meter, "close", meter_close)  # noqa: B010
    overhead.run_task = run_task
    try:
        # No warm-up task: each task starts the same git processes, the first one too, and
        # a warm-up's would be counted with the others.
        code = overhead.main(["--tasks", str(args.tasks), "--warmup", "0", *rest])
    finally:
        setattr(subprocess.Popen, "__init__", original_init)  # noqa: B010
        setattr(subprocess.Popen, "_handle_exitstatus", original_exit)  # noqa: B010
    _report(counter, args.tasks, args.sites)
    return code


def _report(counter: Counter, tasks: int, sites: int) -> None:
    task_phases = ("research", "execute", "revise", "merge")
    by_phase: collections.Counter[str] = collections.Counter()
    by_subcommand: collections.Counter[str] = collections.Counter()
    phase_seconds: collections.defaultdict[str, float] = collections.defaultdict(float)
    subcommand_seconds: collections.defaultdict[str, float] = collections.defaultdict(float)
    for key, n in counter.seen.items():
        phase, subcommand, _ = key
        by_phase[phase] += n
        phase_seconds[phase] += counter.seconds[key]
        if phase in task_phases:
            by_subcommand[subcommand] += n
            subcommand_seconds[subcommand] += counter.seconds[key]
    per_task = sum(by_phase[p] for p in task_phases) / tasks
    print(f"\ngit processes Errands started, per task (research → merged): {per_task:.1f}")
    own = sum(phase_seconds[p] for p in task_phases) / tasks
    print(
        f"their wall time (start → exit reaped), per task: {own:.3f}s, by phase: "
        + ", ".join(f"{p} {phase_seconds[p] / tasks:.3f}s" for p in by_phase)
    )
    print("by phase, per task: " + ", ".join(f"{p} {by_phase[p] / tasks:.1f}" for p in by_phase))
    print("by subcommand, per task (research → merged): processes, wall seconds")
    for subcommand, n in by_subcommand.most_common():
        print(f"  {n / tasks:6.1f}  {subcommand_seconds[subcommand] / tasks:6.3f}s  {subcommand}")
    if sites:
        print(f"busiest call sites by wall time, per task (top {sites}): processes, seconds")
        ranked = sorted(counter.seen.items(), key=lambda item: -counter.seconds[item[0]])[:sites]
        for key, n in ranked:
            phase, subcommand, site = key
            print(
                f"  {n / tasks:6.1f}  {counter.seconds[key] / tasks:6.3f}s  {phase:8s} "
                f"{subcommand:12s} {site}"
            )


if __name__ == "__main__":
    sys.exit(main())
