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
        self.lock = threading.Lock()

    def record(self, argv: Sequence[str]) -> None:
        frames = [
            f"{frame.filename.split('/src/errands/')[-1]}:{frame.name}"
            for frame in traceback.extract_stack()[:-2]
            if "/src/errands/" in frame.filename
        ]
        if not frames:
            return  # the benchmark's own git (generating and cloning the repository)
        sites = [f for f in frames if not f.startswith(PLUMBING)]
        site = " < ".join(reversed(sites[-3:]))
        with self.lock:
            self.seen[(self.phase, _subcommand(argv), site)] += 1


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
        if command and Path(command[0]).name == "git":
            counter.record(command)
        original_init(self, popen_args, *more, **kw)

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
    setattr(overhead.Meter, "__init__", meter_init)  # noqa: B010
    setattr(overhead.Meter, "close", meter_close)  # noqa: B010
    overhead.run_task = run_task
    try:
        code = overhead.main(["--tasks", str(args.tasks), *rest])
    finally:
        setattr(subprocess.Popen, "__init__", original_init)  # noqa: B010
    _report(counter, args.tasks, args.sites)
    return code


def _report(counter: Counter, tasks: int, sites: int) -> None:
    task_phases = ("research", "execute", "revise", "merge")
    by_phase: collections.Counter[str] = collections.Counter()
    by_subcommand: collections.Counter[str] = collections.Counter()
    for (phase, subcommand, _), n in counter.seen.items():
        by_phase[phase] += n
        if phase in task_phases:
            by_subcommand[subcommand] += n
    per_task = sum(by_phase[p] for p in task_phases) / tasks
    print(f"\ngit processes Errands started, per task (research → merged): {per_task:.1f}")
    print("by phase, per task: " + ", ".join(f"{p} {by_phase[p] / tasks:.1f}" for p in by_phase))
    print("by subcommand, per task (research → merged):")
    for subcommand, n in by_subcommand.most_common():
        print(f"  {n / tasks:6.1f}  {subcommand}")
    if sites:
        print(f"busiest call sites, per task (top {sites}):")
        ranked = sorted(counter.seen.items(), key=lambda item: -item[1])[:sites]
        for (phase, subcommand, site), n in ranked:
            print(f"  {n / tasks:6.1f}  {phase:8s} {subcommand:12s} {site}")


if __name__ == "__main__":
    sys.exit(main())
