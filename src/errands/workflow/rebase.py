"""The rebase stage: a task under review whose base branch moved is restacked onto the new
tip, subtask by subtask, each verified again by the project's commands in the sandbox.

The restack machinery (:mod:`errands.workflow.restack`) does the work with every layer
rebuilt: a subtask that applies cleanly is only verified; one that conflicts is handed to the
agent in the sandbox to resolve (a marker left behind, or verification still failing, stops
the rebase). Nothing of the new base runs on the host: git reads its files with the host-side
hardening, and only the verify commands execute them, inside the sandbox.

Nothing is recorded until the whole stack is rebuilt and published (a compare-and-swap push
from the tip this attempt saw, after checking its lease): a stale attempt that wakes after a
newer one pushes nothing, and a rebase that dies half-way leaves the reviewed stack as it
was. A rebase that cannot be finished (a conflict the agent left, verification failing)
leaves the task in review on its old base, saying why.
"""

from __future__ import annotations

from errands.domain import SubtaskState, TaskState, check_transition
from errands.errors import Conflict, VerificationFailed
from errands.forges.registry import forge_for
from errands.store import Task
from errands.workflow import trailers
from errands.workflow.context import JobContext
from errands.workflow.execute import finish_review_round
from errands.workflow.implement import observe_branch, publish_progress
from errands.workflow.mirrors import base_tip
from errands.workflow.project_config import effective_config
from errands.workflow.restack import Layer, Rebuilt, rebuild, store_rebuilt
from errands.workflow.revise import task_prompt_of
from errands.workflow.workspaces import job_workspace


def run(ctx: JobContext) -> None:
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        origin, branch, old_base = task.project.origin, task.branch, task.base_commit
        base_branch = task.base_branch
        config = effective_config(task.project, ctx.settings)
        if branch is None or old_base is None:
            raise Conflict(f"Task {task.id} has no branch to rebase.")
        layers = [
            Layer(s.id, s.position, s.title, s.commit_sha) for s in task.subtasks if s.commit_sha
        ]
        key = trailers.key_line(task)
        task_prompt = task_prompt_of(task)
    mirror = ctx.mirror(origin)
    mirror.fetch()
    observe_branch(ctx, mirror, branch)
    mirror.adopt_published(branch, old_base, key)
    # The base as origin has it now, not as a webhook said: deliveries come late or twice.
    new_base = base_tip(mirror, origin, base_branch)
    if new_base == old_base:
        _back_to_review(
            ctx,
            old_base,
            "task.rebase_skipped",
            f"{base_branch} is still at {old_base[:10]}: nothing to rebase",
        )
        return
    ctx.emit(
        "rebase.started",
        f"{base_branch} moved from {old_base[:10]} to {new_base[:10]}: restacking "
        f"{len(layers)} subtask(s) onto it, each verified again",
        old_base=old_base,
        new_base=new_base,
    )
    with job_workspace(
        ctx, mirror, branch=branch, start_point=old_base, config=config, commands=True
    ) as work:
        try:
            rebuilt = rebuild(
                ctx,
                work=work,
                base_commit=new_base,
                layers=layers,
                task_prompt=task_prompt,
                config=config,
                whole=True,
            )
        except VerificationFailed as exc:
            # The reviewed stack stays as it was, on its old base; the reviewer is told.
            _back_to_review(
                ctx,
                new_base,
                "task.rebase_failed",
                f"Could not rebase onto {base_branch} at {new_base[:10]}: {exc.message}. "
                "The stack stays on its old base; merging may conflict.",
                failed=True,
            )
            return
        head = work.workspace.head()
        # Published before it is recorded, like any subtask commit: a force-push with lease
        # from the tip this attempt saw, after checking the lease (publish_branch).
        publish_progress(ctx, mirror, branch, head)
    _record(ctx, layers, rebuilt, old_base, new_base, base_branch)
    finish_review_round(ctx, mirror, branch, head)


def _record(
    ctx: JobContext,
    layers: list[Layer],
    rebuilt: list[Rebuilt],
    old_base: str,
    new_base: str,
    base_branch: str,
) -> None:
    """The rebased stack in the store, in one transaction: each subtask's new commit as a new
    version, the task's new base, and the event the reviewer reads."""
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        store_rebuilt(session, rebuilt)
        task.base_commit = new_base
        if task.base_moved_to in (None, new_base):
            task.base_moved_to = None  # a newer move keeps its flag: another rebase follows
        resolved = [
            {"position": layer.position, "paths": done.conflicts}
            for layer, done in zip(layers, rebuilt, strict=True)
            if done.conflicts
        ]
        ctx.record(
            session,
            "task.rebased",
            f"Rebased onto {base_branch} at {new_base[:10]} (was {old_base[:10]}): "
            f"{len(rebuilt)} subtask(s) restacked and verified"
            + (
                "; the agent resolved conflicts in subtask(s) "
                + ", ".join(str(r["position"]) for r in resolved)
                if resolved
                else ", no conflicts"
            ),
            old_base=old_base,
            new_base=new_base,
            conflicts=resolved,
            restacked=[layer.subtask_id for layer in rebuilt],
        )


def _back_to_review(
    ctx: JobContext, seen_base: str, kind: str, message: str, *, failed: bool = False
) -> None:
    """The task goes back to review unchanged (nothing to rebase, or the rebase failed)."""
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        if not failed and task.base_moved_to is not None:
            # The move named by the webhook is not on origin (yet): nothing to follow.
            task.base_moved_to = None
        elif failed:
            task.base_moved_to = seen_base
            for subtask in task.subtasks:  # the restack marked them verifying or failed
                if subtask.commit_sha:
                    subtask.state = SubtaskState.COMMITTED
        task.state = check_transition(TaskState(task.state), TaskState.IN_REVIEW)
        ctx.record(session, kind, message, base=seen_base, state=TaskState.IN_REVIEW)
        ctx.settle(session)
        forge_for(ctx.settings, task.project).nudge(session, task.project)
