"""One instance through the real workflow, as a user would drive it, then scored.

A project on the instance's own origin (``main`` at the base commit) with the repository's
setup and verify commands; the environment checked (setup at the base commit) before any
model is called; a task whose text is the issue; research; each question answered with the
option the agent itself recommended (recorded); execute and verify by the project's own
jobs on the worker; then, once the task is in review, the hidden tests in the sandbox.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from errands.accounts import budget
from errands.domain import TaskState, state_words
from errands.errors import ErrandsError
from errands.evaluation import scoring
from errands.evaluation.dataset import Instance
from errands.evaluation.repos import BASE_BRANCH, EnvironmentFailure, Repositories
from errands.evaluation.results import InstanceResult, Reason, Usage
from errands.git import git
from errands.git.repo import resolve
from errands.settings import Settings
from errands.store import Database, Job, Project, Task
from errands.workflow import actions
from errands.workflow.actions import MAX_TITLE
from errands.workflow.mirrors import mirror_path

BUDGET_PREFIX = "Budget reached"
SETUP_FAILED = "The setup command"  # how execute's workspace reports a failing setup
WAITING = {TaskState.IN_REVIEW, TaskState.FAILED, TaskState.CANCELLED, TaskState.MERGED}


@dataclass(frozen=True)
class Harness:
    """What every instance of a run shares."""

    settings: Settings
    db: Database
    repos: Repositories
    origins: Path
    org_id: int
    executor: str
    model: str
    timeout: float
    poll: float = 0.5
    # Set when the run is stopping (Ctrl-C): instances in flight cancel their task and
    # commands and are not recorded, so the next run does them again.
    stopping: threading.Event = field(default_factory=threading.Event)


class Interrupted(Exception):
    """The run stopped while this instance was in flight: it has no result."""


@dataclass
class _Outcome:
    reason: Reason
    detail: str = ""


def run_instance(harness: Harness, instance: Instance) -> InstanceResult:
    started = time.monotonic()
    result = InstanceResult(
        instance_id=instance.instance_id,
        repo=instance.repo,
        executor=harness.executor,
        model=harness.model,
        reason="error",
        gold_files=instance.gold_files,
    )
    try:
        outcome = _run(harness, instance, result)
    except EnvironmentFailure as exc:
        outcome = _Outcome("environment", exc.message)
    except ErrandsError as exc:
        outcome = _Outcome("error", exc.message)
    if harness.stopping.is_set():  # whatever it ended with, the stop caused it
        raise Interrupted(instance.instance_id)
    result.reason, result.detail = outcome.reason, outcome.detail
    result.wall_seconds = round(time.monotonic() - started, 3)
    return result


def _run(harness: Harness, instance: Instance, result: InstanceResult) -> _Outcome:
    h = harness
    source = h.repos.source(instance.repo)
    attempt, name = _project_name(h.db, instance.instance_id)
    result.attempt = attempt
    origin = h.repos.origin(source, instance.base_commit, h.origins / f"{name}.git")
    env = instance.environment
    with h.db.session() as session:
        project = actions.add_project(
            session,
            h.settings,
            str(origin),
            org_id=h.org_id,
            name=name,
            base_branch=BASE_BRANCH,
            verify_commands=list(env.verify) if env.verify is not None else None,
        )
        # The executor types every subtask and revise round (research and planning are
        # Errands' own loop, on --model, whichever executor is chosen).
        actions.update_project(session, project.id, executor=h.executor, revise_executor=h.executor)
        if env.setup:
            actions.update_project(
                session, project.id, setup_commands=list(env.setup), setup_network=env.network
            )
        project_id = project.id
    # The environment first: an instance whose setup fails costs no model call.
    checked_at = time.monotonic()
    scoring.check_environment(h.settings, h.db, project_id, instance.base_commit, h.stopping)
    result.phases["environment"] = Usage(seconds=round(time.monotonic() - checked_at, 3))
    over = _over_budget(h.db, project_id)
    if over is not None:
        return _Outcome("budget", over)
    title = instance.problem_statement.strip().splitlines()[0].lstrip("# ").strip()
    with h.db.session() as session:
        task = actions.create_task(
            session, h.settings, project_id, title[:MAX_TITLE] or instance.instance_id,
            instance.problem_statement,
        )  # fmt: skip
        task_id = task.id
    result.task_id = task_id
    timed_out = _drive(h, task_id)  # the state it was cancelled in, if it timed out
    state, failure, branch, base = _collect(h.db, task_id, result)
    result.task_state = state
    tip = resolve(mirror_path(h.settings, project_id), f"refs/heads/{branch}") if branch else None
    if tip and base:
        changed = git(
            "diff",
            "--name-only",
            "--no-renames",
            base,
            tip,
            cwd=mirror_path(h.settings, project_id),
        )
        result.changed_files = sorted(line for line in changed.splitlines() if line)
    if timed_out is not None:
        return _Outcome(
            "timeout", f"not in review within {h.timeout:.0f} s (it was {state_words(timed_out)})"
        )
    if state == TaskState.FAILED:
        failure = failure or "the task failed"
        if failure.startswith(BUDGET_PREFIX):
            return _Outcome("budget", failure)
        if failure.startswith(SETUP_FAILED):
            return _Outcome("environment", failure)
        return _Outcome("error", failure)
    if state == TaskState.READY:  # answered, but not executed: the run's budget is spent
        return _Outcome("budget", _over_budget(h.db, project_id) or "Budget reached")
    if state != TaskState.IN_REVIEW:
        return _Outcome("error", f"the task ended {state}")
    if not result.changed_files or tip is None:
        reasons = [s["no_change_reason"] for s in result.subtasks if s.get("no_change_reason")]
        return _Outcome("no_change", "; ".join(reasons))
    scored_at = time.monotonic()
    score = scoring.score(h.settings, h.db, project_id, tip, instance, h.stopping)
    result.phases["scoring"] = Usage(seconds=round(time.monotonic() - scored_at, 3))
    result.output_tail = score.output_tail
    f2p, p2p = score.passed(instance.fail_to_pass), score.passed(instance.pass_to_pass)
    result.fail_to_pass = {"passed": len(f2p), "total": len(instance.fail_to_pass)}
    result.pass_to_pass = {"passed": len(p2p), "total": len(instance.pass_to_pass)}
    result.failing_tests = [n for n, ok in score.tests.items() if not ok][:50]
    if not score.applied:
        return _Outcome("tests_fail", score.detail)
    if score.tests and all(score.tests.values()):
        return _Outcome("resolved")
    detail = (
        f"FAIL_TO_PASS {len(f2p)}/{len(instance.fail_to_pass)} pass, "
        f"PASS_TO_PASS {len(p2p)}/{len(instance.pass_to_pass)} pass"
    )
    return _Outcome("tests_fail", f"{detail}; {score.detail}" if score.detail else detail)


def _project_name(db: Database, instance_id: str) -> tuple[int, str]:
    """A fresh project per attempt: a run that crashed left the earlier one behind."""
    with db.session() as session:
        names = set(session.scalars(select(Project.name)))
    attempt = 1
    while (name := instance_id if attempt == 1 else f"{instance_id}~{attempt}") in names:
        attempt += 1
    return attempt, name


def _over_budget(db: Database, project_id: int) -> str | None:
    """Why the run may not spend more ("Budget reached: …"), or None."""
    with db.session() as session:
        return budget.project_over_budget(session, session.get_one(Project, project_id))


def _drive(h: Harness, task_id: int) -> TaskState | None:
    """Answer questions with the agent's own pick until the task rests; on timeout (or when
    the run stops) cancel it and return the state it was in."""
    deadline = time.monotonic() + h.timeout
    while True:
        with h.db.session() as session:
            task = session.get_one(Task, task_id)
            state = TaskState(task.state)
            if state == TaskState.AWAITING_ANSWERS:
                _answer(session, h.settings, task)
                continue
            if state in WAITING:
                return None
            if state == TaskState.READY and budget.project_over_budget(session, task.project):
                return None
        if time.monotonic() > deadline or h.stopping.is_set():
            with h.db.session() as session:
                actions.cancel(session, task_id)
            return state
        time.sleep(h.poll)


def _answer(session: Session, settings: Settings, task: Task) -> None:
    for q in task.questions:
        if q.answered_at is not None:
            continue
        # The agent's recommendation; a question without one gets its first option.
        pick = q.recommended if q.recommended and 1 <= q.recommended <= len(q.options) else 1
        actions.answer(session, settings, task.id, q.position, option=pick)


def _collect(
    db: Database, task_id: int, result: InstanceResult
) -> tuple[str, str | None, str | None, str | None]:
    with db.session() as session:
        task = session.get_one(Task, task_id)
        # Research's questions and those asked during execution, each with the answer taken
        # (the agent's own pick; past the execution-question bound, Errands records it).
        result.questions = [
            {
                "question": q.text,
                "phase": q.phase,
                "options": [str(o.get("label", "")) for o in q.options],
                "recommended": q.recommended,
                "picked": q.answer_option,
                "picked_label": (
                    str(q.options[q.answer_option - 1].get("label", ""))
                    if q.answer_option and q.answer_option <= len(q.options)
                    else ""
                ),
            }
            for q in sorted(task.questions, key=lambda q: q.position)
        ]
        result.subtasks = [
            {
                "title": s.title,
                "state": s.state,
                "verified": s.verified,
                "commit": s.commit_sha,
                "no_change_reason": s.summary if s.state == "empty" else None,
            }
            for s in sorted(task.subtasks, key=lambda s: s.position)
        ]
        for job in session.scalars(select(Job).where(Job.task_id == task_id)):
            seconds = (
                (job.finished_at - job.started_at).total_seconds()
                if job.finished_at and job.started_at
                else 0.0
            )
            result.phases.setdefault(job.kind, Usage()).add(
                Usage(
                    requests=job.model_requests,
                    input_tokens=job.input_tokens,
                    output_tokens=job.output_tokens,
                    cost_usd=job.cost_micros / 1_000_000,
                    seconds=round(seconds, 3),
                )
            )
        return task.state, task.failure_reason, task.branch, task.base_commit
