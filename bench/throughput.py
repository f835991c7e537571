"""Job throughput: tasks completed per minute by 1, 2 and 4 worker processes, side by side.

Each run puts ``--tasks`` "Add module N" tasks through the whole workflow (research with one
question, answered at once; a two-subtask plan; two verified commits; approval; squash
merge) against a zero-latency scripted LLM, with real ``errands worker`` processes (one job
slot each), real git and the real sandbox. Printed per worker count: tasks per minute
(first task created → last task merged) and the delay from "job queued" to "job started"
(median, p95) over every job of the run — mostly waiting for a free slot — and, apart, the
same delay for a lone job queued while every worker is idle (the transport's latency).

Backends: ``sqlite`` (the embedded default: workers poll the SQLite ledger) and
``postgres+redis`` (PostgreSQL ledger, workers woken through Redis), when ``--postgres``
and ``--redis`` point at servers (a scratch database is created and dropped).

Usage (from the repository root)::

    python bench/throughput.py [--tasks 12] [--workers 1 2 4] \\
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test] \\
        [--redis redis://127.0.0.1:6379/0]

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import select

from errands import runtime
from errands.domain import TaskState
from errands.settings import Settings
from errands.store import Job
from errands.testing.scripted_llm import ScriptedLLM
from errands.testing.workload import (
    Driver,
    Fleet,
    ModuleScript,
    make_origin,
    percentile,
    pickup_delays,
    scratch_postgres,
    worker_env,
)
from errands.workflow import actions

PICKUP_SAMPLES = 10


def run_once(
    workers: int, tasks: int, llm_url: str, root: Path, database_url: str | None, redis: str | None
) -> tuple[float, list[float], list[float]]:
    """Returns (tasks per minute, queue→start delays, idle pick-up delays), in seconds."""
    home = root / "home"
    origin = make_origin(root / "origin", bare=False)
    settings = Settings(
        home=home,
        database_url=database_url,
        redis_url=redis,
        queue_name=f"errands-bench-{uuid.uuid4().hex[:8]}",
        model="openai:scripted-model",
        openai_base_url=llm_url,
        openai_api_key="sk-bench",
        worker_concurrency=1,
        worker_poll_interval=0.5,
        project_max_jobs=max(4, workers),
    )
    db = runtime.open_database(settings)
    with db.session() as session:
        project_id = actions.add_project(
            session,
            settings,
            origin,
            name="bench",
            verify_commands=["python3 -m compileall -q modules tests"],
        ).id
    fleet = Fleet([worker_env(settings)] * workers, root / "logs")
    fleet.start()
    try:
        # Let the workers start (imports, migrations check) and index the project, so the
        # figure is steady-state throughput, not process start-up.
        while True:
            with db.session() as session:
                waiting = session.scalars(
                    select(Job.id).where(Job.state.in_(["queued", "running"]))
                ).all()
            if not waiting:
                break
            time.sleep(0.1)
        driver = Driver(db, settings)
        began = time.monotonic()
        driver.add_tasks(project_id, tasks)
        while True:
            states = driver.step()
            if all(state == TaskState.MERGED for state in states.values()):
                break
            failed = [i for i, s in states.items() if s == TaskState.FAILED]
            if failed:
                raise SystemExit(f"tasks failed: {failed} (logs in {root / 'logs'})")
            time.sleep(0.05)
        elapsed = time.monotonic() - began
        pickups = pickup_delays(db, settings, project_id, PICKUP_SAMPLES)
    finally:
        fleet.stop()
    with db.session() as session:
        rows = session.execute(
            select(Job.created_at, Job.started_at).where(Job.task_id.in_(driver.task_ids))
        ).all()
    db.dispose()
    delays = [(started - created).total_seconds() for created, started in rows if started]
    return tasks / elapsed * 60, delays, pickups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server")
    parser.add_argument("--redis", help="URL of a Redis server")
    args = parser.parse_args()

    backends: list[tuple[str, str | None, str | None]] = [("sqlite", None, None)]
    if args.postgres and args.redis:
        backends.append(("postgres+redis", args.postgres, args.redis))

    print(
        f"conditions: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average at start {os.getloadavg()[0]:.2f}; "
        f"{args.tasks} tasks per run, each: research (1 question) + plan + 2 verified "
        "subtask commits + squash merge; zero-latency scripted LLM; one job slot per worker "
        "process; real git and sandbox"
    )
    with ScriptedLLM(ModuleScript()) as llm:
        for backend, postgres, redis in backends:
            for workers in args.workers:
                with tempfile.TemporaryDirectory(prefix="errands-bench-") as tmp:
                    if postgres:
                        with scratch_postgres(postgres) as url:
                            rate, delays, pickups = run_once(
                                workers, args.tasks, llm.base_url, Path(tmp), url, redis
                            )
                    else:
                        rate, delays, pickups = run_once(
                            workers, args.tasks, llm.base_url, Path(tmp), None, None
                        )
                print(
                    f"{backend:15} {workers} worker(s): {rate:6.1f} tasks/min; "
                    f"queued→started median {statistics.median(delays) * 1000:6.0f} ms, "
                    f"p95 {percentile(delays, 0.95) * 1000:6.0f} ms over {len(delays)} jobs; "
                    f"idle pick-up median {statistics.median(pickups) * 1000:4.0f} ms, "
                    f"p95 {percentile(pickups, 0.95) * 1000:4.0f} ms",
                    flush=True,
                )
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
