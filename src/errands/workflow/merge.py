"""The merge stage: squash the task branch onto the base branch of the project."""

from __future__ import annotations

from errands.domain import TaskState, check_transition
from errands.errors import GitError
from errands.github import hooks as github_hooks
from errands.store import Task
from errands.workflow.context import JobContext
from errands.workflow.mirrors import base_tip


def squash_message(task: Task) -> str:
    lines = [task.title, ""]
    lines += [f"- {s.title}" for s in task.subtasks if s.commit_sha]
    lines += ["", f"Errands-Task: {task.id}"]
    return "\n".join(lines) + "\n"


def run(ctx: JobContext) -> None:
    # A task with a GitHub pull request is merged there, through the API.
    if github_hooks.merge_pull_request(ctx):
        return
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        origin, branch, base_branch = task.project.origin, task.branch, task.base_branch
        reviewed_base = task.base_commit
        message = squash_message(task)
    if branch is None:
        raise GitError(f"Task {ctx.task_id} has no branch to merge.")
    mirror = ctx.mirror(origin)
    mirror.fetch()
    current = base_tip(mirror, origin, base_branch)
    if current != reviewed_base:
        ctx.emit(
            "merge.base_moved",
            f"{base_branch} moved from {str(reviewed_base)[:10]} to {current[:10]} since the "
            "work started; merging onto the new base",
            reviewed_base=reviewed_base,
            current_base=current,
        )
    commit = mirror.squash(branch, current, message)  # raises MergeConflict
    mirror.land(commit, base_branch, current)  # raises BaseMoved / DirtyWorkingTree
    try:
        mirror.delete_remote_branch(branch)
    except GitError as exc:
        ctx.emit("branch.delete_failed", f"Could not delete {branch} from the project: {exc}")
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        task.merge_commit = commit
        task.merge_error = None
        task.state = check_transition(TaskState(task.state), TaskState.MERGED)
        ctx.record(
            session,
            "task.merged",
            f"Squash-merged into {base_branch} as {commit[:10]}",
            commit=commit,
            base_branch=base_branch,
        )
        ctx.settle(session)
