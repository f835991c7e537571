"""The revise stage: the agent routes every open review comment (errands.workflow.routing): a
fix inside a subtask (the stack restacked, one commit per subtask, each verified again) or new
work in one more subtask on top."""

from __future__ import annotations

from sqlalchemy import select

from errands.agent import prompts
from errands.domain import SubtaskState
from errands.errors import Conflict
from errands.git import Mirror
from errands.store import ReviewComment, Subtask, Task
from errands.workflow import routing, trailers
from errands.workflow.context import JobContext
from errands.workflow.execute import finish_review_round
from errands.workflow.implement import implement_subtask, observe_branch, publish_progress
from errands.workflow.project_config import EffectiveConfig, effective_config
from errands.workflow.restack import Layer, Rebuilt, rebuild, store_rebuilt
from errands.workflow.workspaces import JobWorkspace, job_workspace


def open_comments(task: Task) -> list[ReviewComment]:
    return [c for c in task.comments if c.parent_id is None and not c.resolved]


def _describe(comment: ReviewComment, replies: list[ReviewComment]) -> str:
    where = f"{comment.path}:{comment.line}" + (f"-{comment.end_line}" if comment.end_line else "")
    side = " (removed line)" if comment.side == "old" else ""
    thread = "".join(f"\n    reply: {r.body}" for r in replies)
    return f"[{comment.kind}] {where}{side}: {comment.body}{thread}"


def task_prompt_of(task: Task) -> str:
    """The task, and the answers to questions the agent asked during a revise round."""
    answered = [
        f"- {q.text} → {prompts.answer_words(q.options, q.answer_option, q.answer_text)}"
        for q in task.questions
        if q.phase == "revise" and q.answered
    ]
    block = prompts.task_block(task.title, task.body)
    if answered:
        block += "\n\n" + prompts.frame("research", "Answered questions:\n" + "\n".join(answered))
    return block


def _unfinished(subtask: Subtask) -> bool:
    """A new subtask of a revise round its job did not finish."""
    return subtask.origin == "revise" and subtask.state not in (
        SubtaskState.COMMITTED,
        SubtaskState.EMPTY,
    )


def run(ctx: JobContext) -> None:
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        origin, branch, base_commit = task.project.origin, task.branch, task.base_commit
        config = effective_config(task.project, ctx.settings)
        if branch is None or base_commit is None:
            raise Conflict(f"Task {task.id} has no branch to revise.")
        # A resumed revise job finds its new subtask already created, its comments with it.
        pending = {s.id for s in task.subtasks if _unfinished(s)}
        comments = open_comments(task)
        if not comments and not pending:
            raise Conflict(f"Task {task.id} has no open review comments to address.")
        described = {
            c.id: _describe(
                c,
                list(session.scalars(select(ReviewComment).where(ReviewComment.parent_id == c.id))),
            )
            for c in comments
        }
        stack = [
            routing.StackEntry(s.id, s.position, s.title, list(s.steps))
            for s in task.subtasks
            if s.commit_sha
        ]
        committed = {s.subtask_id for s in stack}
        to_route = [
            routing.Placed(
                c.id, c.subtask_id if c.subtask_id in committed else None, described[c.id]
            )
            for c in comments
            if c.addressed_by_subtask_id not in pending
        ]
        commits = {s.id: s.commit_sha for s in task.subtasks if s.commit_sha}
        key = trailers.key_line(task)
        task_prompt = task_prompt_of(task)
        positions = {s.id: s.position for s in task.subtasks}
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
        routes = (
            routing.route(ctx, work, task_prompt=task_prompt, comments=to_route, stack=stack)
            if to_route
            else []
        )
        inside: dict[int, list[int]] = {}
        for r in routes:
            if r.subtask_id is not None:
                inside.setdefault(r.subtask_id, []).append(r.comment_id)
        on_top = [r.comment_id for r in routes if r.subtask_id is None]
        _record_routes(ctx, routes, positions, len(comments), described)
        if inside:
            layers = [
                Layer(
                    s.subtask_id,
                    s.position,
                    s.title,
                    commits[s.subtask_id],
                    [described[i] for i in inside.get(s.subtask_id, [])],
                )
                for s in stack
            ]
            rebuilt = rebuild(
                ctx,
                work=work,
                base_commit=base_commit,
                layers=layers,
                task_prompt=task_prompt,
                config=config,
            )
            # Published before it is recorded, like any subtask commit.
            publish_progress(ctx, mirror, branch, work.workspace.head())
            _record_rebuilt(ctx, rebuilt, [r for r in routes if r.subtask_id is not None])
        if on_top or pending:
            _new_work(ctx, mirror, work, base_commit, on_top, described, config)
        head = work.workspace.head()
    finish_review_round(ctx, mirror, branch, head)


def _record_routes(
    ctx: JobContext,
    routes: list[routing.Route],
    positions: dict[int, int],
    total: int,
    described: dict[int, str],
) -> None:
    """Where each comment goes and why, kept with the comment (shown beside it in review) and
    in the ``revise.started`` event, in one transaction."""
    with ctx.db.session() as session:
        by_id = {r.comment_id: r for r in routes}
        for c in session.scalars(select(ReviewComment).where(ReviewComment.id.in_(by_id))):
            r = by_id[c.id]
            c.route = r.stored(None if r.subtask_id is None else positions[r.subtask_id])
        fixes = sum(r.subtask_id is not None for r in routes)
        ctx.record(
            session,
            "revise.started",
            f"Revising: {total} comment(s), {fixes} as fixes inside subtasks, "
            f"{len(routes) - fixes} as new work"
            # A resumed job's unfinished new subtask keeps the comments it already has.
            + (
                f", {total - len(routes)} in the unfinished new subtask"
                if total > len(routes)
                else ""
            ),
            comments=list(described.values()),
            routes=[
                {
                    "comment": r.comment_id,
                    "into": "new subtask" if r.subtask_id is None else positions[r.subtask_id],
                    "why": r.reason,
                    "by": r.by,
                }
                for r in routes
            ],
        )


def _record_rebuilt(ctx: JobContext, rebuilt: list[Rebuilt], fixed: list[routing.Route]) -> None:
    """The rebuilt stack in the store, in one transaction: new commits as new versions, the
    fixes' comments resolved."""
    with ctx.db.session() as session:
        store_rebuilt(session, rebuilt)
        into = {r.comment_id: r.subtask_id for r in fixed}
        for comment in session.scalars(select(ReviewComment).where(ReviewComment.id.in_(into))):
            comment.resolved = True
            comment.addressed_by_subtask_id = into[comment.id]
        ctx.record(
            session,
            "review.addressed",
            f"Review comments fixed inside their subtasks; {len(rebuilt)} subtask(s) restacked",
            restacked=[layer.subtask_id for layer in rebuilt],
        )


def _new_work(
    ctx: JobContext,
    mirror: Mirror,
    work: JobWorkspace,
    base_commit: str,
    on_top: list[int],
    described: dict[int, str],
    config: EffectiveConfig,
) -> None:
    """Comments routed as new work become one more subtask on top (or join a resumed job's)."""
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        pending = [s for s in task.subtasks if _unfinished(s)]
        steps = [described[i] for i in on_top]
        if pending:
            subtask = pending[-1]
            if steps:
                subtask.steps = [*subtask.steps, *steps]
        else:
            subtask = Subtask(
                position=len(task.subtasks) + 1,
                title=f"Address review comments ({len(steps)})",
                steps=steps,
                origin="revise",
                state=SubtaskState.PLANNED,
            )
            task.subtasks.append(subtask)
            session.flush()
        for c in session.scalars(select(ReviewComment).where(ReviewComment.id.in_(on_top))):
            c.addressed_by_subtask_id = subtask.id
            if c.route:  # the route names the new subtask's number now that it has one
                c.route = {**c.route, "subtask": subtask.position}
        subtask_id, steps = subtask.id, list(subtask.steps)
        prompt = f"{task_prompt_of(task)}\n\n{prompts.frame('review', prompts.bullet(steps))}"
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
        ctx.record(session, "review.addressed", "Review comments addressed by a new subtask")
