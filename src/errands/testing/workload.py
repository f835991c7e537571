"""A many-task workload for the chaos test and the throughput benchmarks.

Each task "Add module N" researches (one question), plans two subtasks, writes
``modules/mod_N.py`` and its test, and merges: tasks never touch each other's files, so
twenty of them can land on one base branch in any order. ``Fleet`` runs real ``errands
worker`` processes and can SIGKILL them; ``Driver`` plays the user (answers, approves).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from errands.domain import TaskState
from errands.errors import Conflict
from errands.settings import Settings
from errands.store import Database, Job, Task
from errands.testing.scripted_llm import ChatRequest, Reply
from errands.workflow import actions

_TASK = re.compile(r"Add module (\d+)")


def phase_of(req: ChatRequest) -> str:
    for line in req.system.splitlines():
        if line.startswith("Errands phase: "):
            return line.removeprefix("Errands phase: ").rstrip(".")
    return "unknown"


def final(**output: Any) -> Reply:
    return Reply.call("final_result", **output)


class ModuleScript:
    """The scripted model for "Add module N" tasks. Stateless: any worker process may send
    any request, in any order, any number of times (a killed job asks again)."""

    def __init__(self, *, command: str | None = None) -> None:
        self.command = command  # run by subtask 1's agent, e.g. a sleep to be killed in

    def __call__(self, req: ChatRequest) -> Reply:
        phase = phase_of(req)
        found = _TASK.search(req.user) or _TASK.search(req.system)
        if found is None:
            raise AssertionError(f"not a module task: {req.user[:200]!r}")
        n = found.group(1)
        step = req.n_assistant
        if phase == "research":
            return final(
                overview=f"modules/ holds one module per feature; module {n} is new.",
                requirements=[f"modules/mod_{n}.py defines value() returning {n}"],
                relevant_files=[{"path": "README.md", "reason": "describes the layout"}],
                risks=[],
                questions=[
                    {
                        "question": "Return an int or a str?",
                        "reasoning": "Callers compare it.",
                        "options": [
                            {"label": "int", "requirement": f"value() == {n}"},
                            {"label": "str", "requirement": f"value() == '{n}'"},
                        ],
                        "recommended": 1,
                    }
                ],
            )
        if phase == "plan":
            return final(
                subtasks=[
                    {"title": f"Add module {n}", "steps": [f"Write modules/mod_{n}.py"]},
                    {"title": f"Test module {n}", "steps": [f"Write tests/test_mod_{n}.py"]},
                ],
                out_of_scope=[],
            )
        if phase == "execute" and "subtask 1 of 2" in req.user:
            steps = [
                Reply.call(
                    "write_file",
                    path=f"modules/mod_{n}.py",
                    content=f"def value():\n    return {n}\n",
                )
            ]
            if self.command:
                steps.append(Reply.call("run_command", command=self.command))
            steps.append(final(summary=f"Added module {n}.", decisions=[]))
            return steps[min(step, len(steps) - 1)]
        if phase == "execute" and "subtask 2 of 2" in req.user:
            return [
                Reply.call(
                    "write_file",
                    path=f"tests/test_mod_{n}.py",
                    content=f"from modules.mod_{n} import value\n\n\n"
                    f"def test_value():\n    assert value() == {n}\n",
                ),
                final(summary=f"Tested module {n}.", decisions=[]),
            ][min(step, 1)]
        raise AssertionError(f"unexpected request in phase {phase}: {req.user[:200]!r}")


def make_origin(path: Path, *, bare: bool) -> str:
    """A repository to work on: a checkout (``bare=False``) or a bare "remote"; returns the
    origin to give ``errands project add``."""
    seed = path.with_name(path.name + "-seed") if bare else path
    seed.mkdir(parents=True)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}

    def git(*args: str, cwd: Path = seed) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    git("init", "--quiet", "--initial-branch=main")
    git("config", "user.name", "Test User")
    git("config", "user.email", "user@example.com")
    (seed / "README.md").write_text("One module per feature, in modules/.\n")
    (seed / "modules").mkdir()
    (seed / "modules" / "__init__.py").write_text("")
    git("add", "-A")
    git("commit", "--quiet", "-m", "init")
    if not bare:
        return str(path)
    git("clone", "--quiet", "--bare", str(seed), str(path), cwd=path.parent)
    return f"file://{path}"


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of an ``errands worker`` process running with ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERRANDS_")}
    values: dict[str, Any] = {
        "ERRANDS_HOME": settings.home,
        "ERRANDS_DATABASE_URL": settings.resolved_database_url,
        "ERRANDS_MODEL": settings.model,
        "OPENAI_BASE_URL": settings.openai_base_url,
        "OPENAI_API_KEY": settings.openai_api_key.get_secret_value()
        if settings.openai_api_key
        else None,
        "ERRANDS_WORKER_CONCURRENCY": settings.worker_concurrency,
        "ERRANDS_WORKER_POLL_INTERVAL": settings.worker_poll_interval,
        "ERRANDS_JOB_LEASE_SECONDS": settings.job_lease_seconds,
        "ERRANDS_JOB_MAX_ATTEMPTS": settings.job_max_attempts,
        "ERRANDS_JOB_RETRY_DELAY": settings.job_retry_delay,
        "ERRANDS_PROJECT_MAX_JOBS": settings.project_max_jobs,
        "ERRANDS_LLM_MAX_RETRIES": settings.llm_max_retries,
        "ERRANDS_SANDBOX": settings.sandbox,
        "ERRANDS_REDIS_URL": settings.redis_url,
        "ERRANDS_QUEUE_NAME": settings.queue_name,
    }
    env.update({k: str(v) for k, v in values.items() if v is not None})
    env.update(extra)
    return env


@dataclass
class Fleet:
    """``errands worker`` processes: started, SIGKILLed, restarted, stopped."""

    envs: Sequence[Mapping[str, str]]  # one per worker slot in the fleet
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: int = 0  # by us
    crashes: int = 0  # by the workers' own crash points (they SIGKILL themselves)
    starts: int = 0

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes = [self._spawn(i) for i in range(len(self.envs))]

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        self.starts += 1
        log = (self.log_dir / f"worker-{index}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-c", "from errands.cli import main; main()", "worker"],
            env=dict(self.envs[index]),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def kill(self, index: int) -> None:
        """SIGKILL worker ``index`` (if alive) and start a new one in its place."""
        process = self.processes[index]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            self.kills += 1
            self.processes[index] = self._spawn(index)

    def revive(self) -> None:
        """Restart every worker that died (counting the ones that killed themselves)."""
        for index, process in enumerate(self.processes):
            code = process.poll()
            if code is None:
                continue
            if code == -signal.SIGKILL:
                self.crashes += 1
            else:
                raise AssertionError(
                    f"worker {index} exited with {code}; see {self.log_dir}/worker-{index}.log"
                )
            self.processes[index] = self._spawn(index)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def alive(self) -> int:
        return sum(process.poll() is None for process in self.processes)


@dataclass
class Driver:
    """Plays the user: answers each task's question with the recommended option, approves
    each task that reaches review."""

    db: Database
    settings: Settings
    task_ids: list[int] = field(default_factory=list)

    def add_tasks(self, project_id: int, count: int) -> None:
        for n in range(1, count + 1):
            with self.db.session() as session:
                task = actions.create_task(
                    session, self.settings, project_id, f"Add module {n}", f"Module {n}, please."
                )
                self.task_ids.append(task.id)

    def states(self) -> dict[int, str]:
        with self.db.session() as session:
            rows = session.execute(
                select(Task.id, Task.state).where(Task.id.in_(self.task_ids))
            ).all()
        return {task_id: state for task_id, state in rows}

    def step(self) -> dict[int, str]:
        """Act on every task waiting for the user; return the states seen."""
        states = self.states()
        for task_id, state in states.items():
            try:
                with self.db.session() as session:
                    if state == TaskState.AWAITING_ANSWERS:
                        actions.answer(session, self.settings, task_id, 1, option=1)
                    elif state == TaskState.IN_REVIEW and not self._merging(session, task_id):
                        problem = session.get_one(Task, task_id).merge_error
                        if problem:
                            raise AssertionError(f"task {task_id} did not merge: {problem}")
                        actions.approve(session, self.settings, task_id)
            except Conflict:
                pass  # a job is still finishing; next round
        return states

    @staticmethod
    def _merging(session: Any, task_id: int) -> bool:
        from errands.jobs import ledger

        return ledger.active_job(session, task_id) is not None


# -- for the benchmarks ---------------------------------------------------------------------


@contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A database of its own on the PostgreSQL server of ``admin_url``, dropped after."""
    import psycopg

    name = f"errands_bench_{uuid.uuid4().hex[:10]}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pickup_delays(
    db: Database,
    settings: Settings,
    project_id: int,
    samples: int,
    *,
    before: Callable[[], None] = lambda: time.sleep(0.3),
) -> list[float]:
    """Queued→started of a lone job while every worker is idle (``before`` each sample lets
    them get back to their wait): the transport's latency, apart from waiting for a slot."""
    delays = []
    for n in range(samples):
        before()
        with db.session() as session:
            task_id = actions.create_task(
                session, settings, project_id, f"Add module {900 + n}", ""
            ).id
        while True:
            with db.session() as session:
                job = session.scalars(select(Job).where(Job.task_id == task_id)).first()
                if job is not None and job.started_at is not None:
                    delays.append((job.started_at - job.created_at).total_seconds())
                    actions.cancel(session, task_id)
                    break
            time.sleep(0.01)
    return delays
