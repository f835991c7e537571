"""Tasks in flight: 16 tasks at once against a model that takes 2 s per call, next to one alone.

Real tasks spend most of their time waiting for the model, so the figure users feel on one
small machine is how many tasks it keeps in flight while waiting. This runs one ``errands
serve`` (its embedded worker) plus ``--workers`` ``errands worker`` processes, as the README
recommends for one machine, against a scripted model that sleeps ``--latency`` seconds in its
HTTP server before every answer (``Reply.delay``: a real wait on a socket, not a mock). Each
"Add module N" task goes through the whole workflow (research with one question, answered at
once by the bench playing the user; a two-subtask plan; two verified commits; approval; squash
merge): six model calls, so about 12 s of model time.

Printed, per backend, against the targets of issue 22 item 4:

- wall time of one task alone (the median of ``--alone-runs``), of ``--tasks`` tasks created
  at once, and their ratio (target ≤ 1.25 x); and per job kind, the median time from queued
  to finished alone and at once (which part stretches);
- queued→started delay of every job of the many-task run (p50/p95);
- idle pick-up: queued→started of a lone job while every slot is idle (p50/p95 over
  ``--samples``; target p95 ≤ 200 ms) — the transport's latency;
- CPU-seconds of Errands' own processes (the server, the workers and every child they reaped:
  git, bubblewrap, verify commands) per task of the many-task run, from ``/proc/<pid>/stat``;
  the bench process itself (the scripted model, and the user's answers and approvals made
  through the store as the local CLI makes them) is not counted;
- the CPU those processes burn while idle (polling), per second.

Backends: ``sqlite`` (the embedded default) and ``postgres+redis`` when ``--postgres`` and
``--redis`` point at servers (a scratch database is created and dropped).

Usage (from the repository root; ``PYTHONPATH=src`` or another tree's ``src`` to measure it)::

    python bench/inflight.py [--tasks 16] [--latency 2.0] [--workers 1] [--samples 20] \\
        [--alone-runs 3] \\
        [--concurrency N] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test] \\
        [--redis redis://127.0.0.1:6379/0]

``--concurrency`` sets ``ERRANDS_WORKER_CONCURRENCY`` for every process; unset, the code's
default applies. ``ERRANDS_PROJECT_MAX_JOBS`` is set to ``--tasks`` (one project holds them
all: ``errands project set P --max-jobs N`` does the same per project). Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from errands import runtime
from errands.domain import TaskState
from errands.settings import Settings
from errands.store import Database, Job
from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from errands.testing.workload import (
    Driver,
    ModuleScript,
    make_origin,
    percentile,
    pickup_delays,
    scratch_postgres,
    worker_env,
)
from errands.workflow import actions

TICKS = os.sysconf("SC_CLK_TCK")
IDLE_WINDOW = 10.0  # seconds over which idle CPU is measured


class SlowModel:
    """``ModuleScript`` whose every answer the server sends ``latency`` seconds late."""

    def __init__(self, latency: float) -> None:
        self.script = ModuleScript()
        self.latency = latency

    def __call__(self, req: ChatRequest) -> Reply:
        return self.script(req).with_delay(self.latency)


def cpu_seconds(pids: Sequence[int], *, children: bool = True) -> float:
    """User + system time of the processes (and of their reaped children: git, bubblewrap
    and the commands it ran)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # After the command name: utime, stime, cutime, cstime are fields 14-17 of stat(5).
        total += sum(int(f) for f in fields[11 : 15 if children else 13])
    return total / TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Figures:
    alones: list[float]  # one task alone, each run
    many: float
    delays: list[float]
    pickups: list[float]
    cpu_alone: float  # CPU-seconds of the task run alone
    cpu_per_task: float
    python_per_task: float  # the part spent in the server's and workers' own code
    idle_cpu: float  # CPU-seconds per second
    # per job kind: median seconds from queued to finished, alone and in the many-task run
    kinds_alone: dict[str, float]
    kinds_many: dict[str, float]

    @property
    def alone(self) -> float:
        return statistics.median(self.alones)


@contextmanager
def processes(settings: Settings, workers: int, logs: Path) -> Iterator[list[int]]:
    """``errands serve`` (with its embedded worker) and ``workers`` ``errands worker``."""
    logs.mkdir(parents=True, exist_ok=True)
    env = worker_env(settings, ERRANDS_PORT=str(free_port()))
    commands = [["serve"]] + [["worker"]] * workers
    started = []
    for i, command in enumerate(commands):
        log = (logs / f"{command[0]}-{i}.log").open("ab")
        started.append(
            subprocess.Popen(
                [sys.executable, "-c", "from errands.cli import main; main()", *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
    try:
        yield [p.pid for p in started]
    finally:
        for p in started:
            p.terminate()
        for p in started:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def settle(db: Database) -> None:
    """Until no job is queued or running."""
    while True:
        with db.session() as session:
            busy = session.scalars(
                select(Job.id).where(Job.state.in_(["queued", "running"]))
            ).first()
        if busy is None:
            return
        time.sleep(0.1)


def run_tasks(driver: Driver, project_id: int, numbers: range, logs: Path) -> float:
    """Create tasks "Add module N" for ``numbers`` at once and play the user until all
    merged; the wall time."""
    driver.task_ids = []
    began = time.monotonic()
    for n in numbers:
        with driver.db.session() as session:
            task = actions.create_task(
                session, driver.settings, project_id, f"Add module {n}", f"Module {n}, please."
            )
            driver.task_ids.append(task.id)
    while True:
        states = driver.step()
        if all(state == TaskState.MERGED for state in states.values()):
            return time.monotonic() - began
        failed = [i for i, s in states.items() if s == TaskState.FAILED]
        if failed:
            raise SystemExit(f"tasks failed: {failed} (logs in {logs})")
        time.sleep(0.05)


def run_backend(
    args: argparse.Namespace, llm_url: str, root: Path, database_url: str | None, redis: str | None
) -> Figures:
    settings = Settings(
        home=root / "home",
        database_url=database_url,
        redis_url=redis,
        queue_name=f"errands-bench-{uuid.uuid4().hex[:8]}",
        model="openai:scripted-model",
        openai_base_url=llm_url,
        openai_api_key="sk-bench",
        project_max_jobs=args.tasks,
        **({"worker_concurrency": args.concurrency} if args.concurrency else {}),
    )
    db = runtime.open_database(settings)
    with db.session() as session:
        project_id = actions.add_project(
            session,
            settings,
            make_origin(root / "origin", bare=False),
            name="bench",
            verify_commands=["python3 -m compileall -q modules tests"],
        ).id
    logs = root / "logs"
    with processes(settings, args.workers, logs) as pids:
        settle(db)  # the project's index job
        driver = Driver(db, settings)
        # Warm up: lazy imports, the project's first workspace.
        run_tasks(driver, project_id, range(1, 3), logs)
        settle(db)
        time.sleep(1.0)
        idle_before = cpu_seconds(pids)
        time.sleep(IDLE_WINDOW)
        idle_cpu = (cpu_seconds(pids) - idle_before) / IDLE_WINDOW
        # One task alone several times (its median is the ratio's denominator: a single run
        # moved it by ±0.5 s on a shared machine), each after the last has settled.
        alones, alone_ids = [], []
        before = cpu_seconds(pids)
        for n in range(3, 3 + args.alone_runs):
            alones.append(run_tasks(driver, project_id, range(n, n + 1), logs))
            alone_ids += driver.task_ids
            settle(db)
        cpu_alone = (cpu_seconds(pids) - before) / args.alone_runs
        before, python_before = cpu_seconds(pids), cpu_seconds(pids, children=False)
        many = run_tasks(driver, project_id, range(100, 100 + args.tasks), logs)
        settle(db)
        cpu = cpu_seconds(pids) - before
        python = cpu_seconds(pids, children=False) - python_before
        ids = list(driver.task_ids)

        def back_in_their_wait() -> None:
            settle(db)
            time.sleep(0.5)  # every slot back in its wait

        pickups = pickup_delays(db, settings, project_id, args.samples, before=back_in_their_wait)
    with db.session() as session:
        rows = session.execute(
            select(Job.created_at, Job.started_at).where(Job.task_id.in_(ids))
        ).all()
        kinds_alone, kinds_many = (_job_seconds(session, task_ids) for task_ids in (alone_ids, ids))
    db.dispose()
    delays = [(started - created).total_seconds() for created, started in rows if started]
    return Figures(
        alones,
        many,
        delays,
        pickups,
        cpu_alone,
        cpu / args.tasks,
        python / args.tasks,
        idle_cpu,
        kinds_alone,
        kinds_many,
    )


def _job_seconds(session: Session, task_ids: Sequence[int]) -> dict[str, float]:
    """Median seconds from queued to finished of the tasks' jobs, by kind: which part of a
    task stretches when many run at once."""
    by_kind: dict[str, list[float]] = {}
    for kind, created, finished in session.execute(
        select(Job.kind, Job.created_at, Job.finished_at).where(Job.task_id.in_(task_ids))
    ):
        if finished is not None:
            by_kind.setdefault(str(kind), []).append((finished - created).total_seconds())
    return {kind: statistics.median(seconds) for kind, seconds in sorted(by_kind.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--latency", type=float, default=2.0, help="seconds per model call")
    parser.add_argument("--workers", type=int, default=1, help="errands worker processes")
    parser.add_argument("--samples", type=int, default=20, help="idle pick-ups measured")
    parser.add_argument(
        "--alone-runs", type=int, default=3, help="runs of one task alone (their median)"
    )
    parser.add_argument("--concurrency", type=int, help="ERRANDS_WORKER_CONCURRENCY")
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server")
    parser.add_argument("--redis", help="URL of a Redis server")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres+redis"])
    args = parser.parse_args()

    import errands

    slots = args.concurrency or Settings.model_fields["worker_concurrency"].default
    print(
        f"conditions: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average at start {os.getloadavg()[0]:.2f}; "
        f"errands from {Path(errands.__file__).parent}; one `errands serve` + {args.workers} "
        f"`errands worker`, {slots} slot(s) each; scripted model sleeping {args.latency:g} s "
        "per call (6 calls a task); each task: research (1 question, answered at once) + "
        "plan + 2 verified subtask commits + approval + squash merge; real git and sandbox",
        flush=True,
    )
    with ScriptedLLM(SlowModel(args.latency)) as llm:
        for backend in args.backends:
            with tempfile.TemporaryDirectory(prefix="errands-bench-") as tmp:
                if backend == "sqlite":
                    f = run_backend(args, llm.base_url, Path(tmp), None, None)
                elif args.postgres and args.redis:
                    with scratch_postgres(args.postgres) as url:
                        f = run_backend(args, llm.base_url, Path(tmp), url, args.redis)
                else:
                    continue
            ratio = f.many / f.alone
            alones = ", ".join(f"{a:.1f}" for a in f.alones)
            kinds = ", ".join(
                f"{kind} {f.kinds_alone.get(kind, float('nan')):.1f} → {seconds:.1f}"
                for kind, seconds in f.kinds_many.items()
            )
            print(
                f"{backend}: 1 task alone {f.alone:5.1f} s (median of {alones}); "
                f"{args.tasks} at once {f.many:5.1f} s "
                f"= {ratio:4.2f}× (target ≤ 1.25×: {'met' if ratio <= 1.25 else 'NOT met'})\n"
                f"  queued→started over {len(f.delays)} jobs: p50 "
                f"{statistics.median(f.delays) * 1000:5.0f} ms, p95 "
                f"{percentile(f.delays, 0.95) * 1000:5.0f} ms\n"
                f"  idle pick-up over {len(f.pickups)} lone jobs: p50 "
                f"{statistics.median(f.pickups) * 1000:5.0f} ms, p95 "
                f"{percentile(f.pickups, 0.95) * 1000:5.0f} ms (target ≤ 200 ms: "
                f"{'met' if percentile(f.pickups, 0.95) <= 0.2 else 'NOT met'})\n"
                f"  CPU of Errands' processes: {f.cpu_per_task:5.2f} CPU-s per task at once "
                f"({f.python_per_task:4.2f} in their own code, the rest in git, bubblewrap "
                f"and verify commands; {f.cpu_alone:4.2f} alone); "
                f"idle {f.idle_cpu * 1000:5.1f} ms CPU per s\n"
                f"  a job, queued → finished, median s alone → at once: {kinds}",
                flush=True,
            )
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
