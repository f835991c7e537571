"""The revise stage: the open review comments become one more subtask and commit."""

from __future__ import annotations

from sqlalchemy import select

from errands.agent import prompts
from errands.domain import SubtaskState
from errands.errors import Conflict
from errands.store import ReviewComment, Subtask, Task
from errands.workflow import trailers
from errands.workflow.context import JobContext
from errands.workflow.execute import finish_review_round
from errands.workflow.implement import implement_subtask, observe_branch
from errands.workflow.project_config import effective_config
from errands.workflow.workspaces import job_workspace


def open_comments(task: Task) -> list[ReviewComment]:
    return [c for c in task.comments if c.parent_id is None and not c.resolved]


def _describe(comment: ReviewComment, replies: list[ReviewComment]) -> str:
    where = f"{comment.path}:{comment.line}" + (f"-{comment.end_line}" if comment.end_line else "")
    side = " (removed line)" if comment.side == "old" else ""
    thread = "".join(f"\n    reply: {r.body}" for r in replies)
    return f"[{comment.kind}] {where}{side}: {comment.body}{thread}"


def run(ctx: JobContext) -> None:
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        origin, branch, base_commit = task.project.origin, task.branch, task.base_commit
        config = effective_config(task.project, ctx.settings)
        # A resumed revise job finds its subtask already created.
        pending = [
            s
            for s in task.subtasks
            if s.origin == "revise" and s.state not in (SubtaskState.COMMITTED, SubtaskState.EMPTY)
        ]
        comments = open_comments(task)
        key = trailers.key_line(task)
        if branch is None or base_commit is None:
            raise Conflict(f"Task {task.id} has no branch to revise.")
        if pending:
            subtask = pending[-1]
        else:
            if not comments:
                raise Conflict(f"Task {task.id} has no open review comments to address.")
            replies = {
                c.id: list(
                    session.scalars(select(ReviewComment).where(ReviewComment.parent_id == c.id))
                )
                for c in comments
            }
            steps = [_describe(c, replies[c.id]) for c in comments]
            subtask = Subtask(
                position=len(task.subtasks) + 1,
                title=f"Address review comments ({len(comments)})",
                steps=steps,
                origin="revise",
                state=SubtaskState.PLANNED,
            )
            task.subtasks.append(subtask)
            session.flush()
            for c in comments:
                c.addressed_by_subtask_id = subtask.id
        subtask_id, steps = subtask.id, list(subtask.steps)
        answered = [
            f"- {q.text} → {prompts.answer_words(q.options, q.answer_option, q.answer_text)}"
            for q in task.questions
            if q.phase == "revise" and q.answered
        ]
        prompt = (
            f"{prompts.task_block(task.title, task.body)}\n\n"
            f"{prompts.frame('review', prompts.bullet(steps))}"
            + (
                "\n\n" + prompts.frame("research", "Answered questions:\n" + "\n".join(answered))
                if answered
                else ""
            )
        )
    mirror = ctx.mirror(origin)
    mirror.fetch()
    observe_branch(ctx, mirror, branch)
    mirror.adopt_published(branch, base_commit, key)  # the last round may have run elsewhere
    # The branch exists: the workspace checks it out as it is (start_point is unused).
    with job_workspace(
        ctx,
        mirror,
        branch=branch,
        start_point=base_commit,
        config=config,
        commands=True,
    ) as work:
        ctx.emit("revise.started", f"Revising: {len(steps)} comment(s)", comments=steps)
        implement_subtask(
            ctx,
            mirror=mirror,
            work=work,
            base_commit=base_commit,
            subtask_id=subtask_id,
            instructions=prompts.REVISE,
            prompt=prompt,
            config=config,
            phase="revise",
        )
        with ctx.db.session() as session:
            for c in session.scalars(
                select(ReviewComment).where(ReviewComment.addressed_by_subtask_id == subtask_id)
            ):
                c.resolved = True
            ctx.record(session, "review.addressed", "Review comments addressed by subtask")
        head = work.workspace.head()
    finish_review_round(ctx, mirror, branch, head)
