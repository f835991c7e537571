"""The merge stage: squash the task branch onto the base branch of the project."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from contextlib import AbstractContextManager

from errands.domain import TaskState, check_transition
from errands.errors import BaseMoved, GitError
from errands.faults import crash_point
from errands.forges.registry import forge_for
from errands.git import Mirror
from errands.git.lock import locks_dir, turn
from errands.store import Task
from errands.workflow import trailers
from errands.workflow.context import JobContext
from errands.workflow.implement import observe_branch
from errands.workflow.mirrors import base_tip


def squash_message(task: Task) -> str:
    lines = [task.title, ""]
    lines += [f"- {s.title}" for s in task.subtasks if s.commit_sha]
    return "\n".join(lines) + "\n\n" + trailers.task_lines(task)


def record_merged(ctx: JobContext, commit: str, message: str, **data: object) -> None:
    """The task is merged as ``commit``: state, event and the job's success in one
    transaction (whichever way it merged: landed here, or through a GitHub pull request)."""
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        task.merge_commit = commit
        task.merge_error = None
        task.state = check_transition(TaskState(task.state), TaskState.MERGED)
        ctx.record(session, "task.merged", message, commit=commit, **data)
        ctx.settle(session)


# Landing loses the race when the base branch moves between our fetch and our push (another
# task merging, a colleague pushing): squash again onto the new tip, a few times. Between
# attempts a short random pause, growing, so that merges losing to each other do not keep
# colliding in step (the chaos test once saw one lose five times running).
LAND_ATTEMPTS = 8
LAND_PAUSE = 0.25  # seconds; the pause before attempt k + 1 is up to LAND_PAUSE * 2**k, ≤ 4 s
# Merges onto one base branch from this machine take turns instead (16 tasks approved at once
# lost to each other 43 times in 16 merges, each loss a fetch, a squash and a pause): the race
# and its retries are left to other machines and to people pushing. A turn is waited for at
# most this long, so a merge frozen in its turn holds up the others only that long.
LAND_PATIENCE = 120.0


def run(ctx: JobContext) -> None:
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        origin, branch, base_branch = task.project.origin, task.branch, task.base_branch
        reviewed_base = task.base_commit
        message = squash_message(task)
        key = trailers.key_line(task)
        # A task with a pull request on its forge is merged there, through its API.
        pending = forge_for(ctx.settings, task.project).pending_merge(task, message)
    if pending is not None:
        merged = pending.perform(ctx.mirror(origin), ctx.emit)
        record_merged(ctx, merged.commit, merged.message, **merged.data)
        return
    if branch is None:
        raise GitError(f"Task {ctx.task_id} has no branch to merge.")
    mirror = ctx.mirror(origin)
    with landing_turn(mirror, base_branch, check=ctx.check_cancelled):
        commit = _land(ctx, mirror, origin, branch, base_branch, reviewed_base, message, key)
    try:
        # Only the copy this attempt merged: one moved since belongs to someone else.
        mirror.delete_remote_branch(branch, expected=ctx.origin_tips.get(branch))
    except GitError as exc:
        ctx.emit("branch.delete_failed", f"Could not delete {branch} from the project: {exc}")
    record_merged(
        ctx, commit, f"Squash-merged into {base_branch} as {commit[:10]}", base_branch=base_branch
    )


def landing_turn(
    mirror: Mirror, base_branch: str, *, check: Callable[[], None] = lambda: None
) -> AbstractContextManager[bool]:
    """This machine's turn to land onto ``base_branch`` (see LAND_PATIENCE). ``check`` ends
    the wait by raising: a job cancelled, or whose lease was lost (the worker's heartbeat
    sets its cancel event then too), stops waiting at once instead of after LAND_PATIENCE."""
    digest = hashlib.sha256(base_branch.encode()).hexdigest()[:16]
    path = locks_dir(mirror.path) / f"errands-land-{digest}.lock"
    return turn(path, patience=LAND_PATIENCE, check=check)


def _land(
    ctx: JobContext,
    mirror: Mirror,
    origin: str,
    branch: str,
    base_branch: str,
    reviewed_base: str | None,
    message: str,
    key: str,
) -> str:
    """Squash and land; return the commit now on the base branch."""
    for attempt in range(1, LAND_ATTEMPTS + 1):
        ctx.check_cancelled()
        mirror.fetch()
        observe_branch(ctx, mirror, branch)
        if reviewed_base is not None:  # reviewed on a branch another machine may have built
            mirror.adopt_published(branch, reviewed_base, key)
        current = base_tip(mirror, origin, base_branch)
        if reviewed_base is not None:
            # An earlier attempt of this job landed before its worker died: adopt that
            # squash rather than land the task twice.
            landed = mirror.find_trailer(reviewed_base, current, key)
            if landed is not None:
                ctx.emit("merge.adopted", f"Already merged as {landed[:10]} by an earlier attempt")
                return landed
        if current != reviewed_base:
            ctx.emit(
                "merge.base_moved",
                f"{base_branch} moved from {str(reviewed_base)[:10]} to {current[:10]} since "
                "the work started; merging onto the new base",
                reviewed_base=reviewed_base,
                current_base=current,
            )
        commit = mirror.squash(branch, current, message)  # raises MergeConflict
        crash_point("merge.before_land")
        # A compare-and-swap on the base branch's tip either way; this check only spares a
        # stale attempt the landing (and its squash being the one adopted).
        ctx.check_lease()
        try:
            mirror.land(commit, base_branch, current)  # raises BaseMoved / DirtyWorkingTree
        except BaseMoved:
            if attempt == LAND_ATTEMPTS:
                raise
            ctx.emit("merge.retrying", f"{base_branch} moved while landing; trying again")
            ctx.cancel.wait(random.uniform(0, min(4.0, LAND_PAUSE * 2**attempt)))
            continue
        crash_point("merge.after_land")
        return commit
    raise AssertionError("unreachable")
