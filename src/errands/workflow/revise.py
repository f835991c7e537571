"""The revise stage: every open review comment becomes a fix inside the subtask it was left on
(the stack restacked, one commit per subtask, each verified again); a comment on the whole
branch becomes one more subtask on top."""

from __future__ import annotations

from sqlalchemy import select

from errands.agent import prompts
from errands.domain import SubtaskState
from errands.errors import Conflict
from errands.git import Mirror
from errands.store import ReviewComment, Subtask, Task
from errands.workflow import trailers
from errands.workflow.context import JobContext
from errands.workflow.execute import finish_review_round
from errands.workflow.implement import implement_subtask, observe_branch, publish_progress
from errands.workflow.project_config import EffectiveConfig, effective_config
from errands.workflow.restack import Layer, Rebuilt, rebuild
from errands.workflow.versions import record_version
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


def _route(task: Task, comments: list[ReviewComment]) -> tuple[dict[int, list[int]], list[int]]:
    """Which comments are fixes inside a subtask (by subtask id) and which are new work on
    top. A comment left on a subtask's diff goes into that subtask; one on the whole branch
    (or on a subtask that no longer has a commit) becomes a new subtask."""
    committed = {s.id for s in task.subtasks if s.commit_sha}
    inside: dict[int, list[int]] = {}
    on_top: list[int] = []
    for c in comments:
        if c.subtask_id in committed:
            inside.setdefault(c.subtask_id, []).append(c.id)
        else:
            on_top.append(c.id)
    return inside, on_top


def run(ctx: JobContext) -> None:
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        origin, branch, base_commit = task.project.origin, task.branch, task.base_commit
        config = effective_config(task.project, ctx.settings)
        if branch is None or base_commit is None:
            raise Conflict(f"Task {task.id} has no branch to revise.")
        # A resumed revise job finds its new subtask already created.
        pending = any(_unfinished(s) for s in task.subtasks)
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
        inside, on_top = _route(task, comments)
        layers = [
            Layer(
                s.id,
                s.position,
                s.title,
                s.commit_sha,
                [described[i] for i in inside.get(s.id, [])],
            )
            for s in task.subtasks
            if s.commit_sha
        ]
        key = trailers.key_line(task)
        task_prompt = task_prompt_of(task)
        by_id = {s.id: s.position for s in task.subtasks}
        routes = [
            {"comment": cid, "into": by_id[sid], "why": "left on this subtask's diff"}
            for sid, ids in inside.items()
            for cid in ids
        ] + [
            {"comment": cid, "into": "new subtask", "why": "left on the whole branch"}
            for cid in on_top
        ]
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
        ctx.emit(
            "revise.started",
            f"Revising: {len(comments)} comment(s), {sum(map(len, inside.values()))} into "
            f"the subtasks they were left on, {len(on_top)} as new work",
            comments=list(described.values()),
            routes=routes,
        )
        if inside:
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
            _record_rebuilt(ctx, rebuilt, [cid for ids in inside.values() for cid in ids])
        if on_top or pending:
            _new_work(ctx, mirror, work, base_commit, on_top, described, config)
        head = work.workspace.head()
    finish_review_round(ctx, mirror, branch, head)


def _record_rebuilt(ctx: JobContext, rebuilt: list[Rebuilt], fixed: list[int]) -> None:
    """The rebuilt stack in the store, in one transaction: new commits as new versions, the
    fixes' comments resolved."""
    with ctx.db.session() as session:
        for layer in rebuilt:
            subtask = session.get_one(Subtask, layer.subtask_id)
            subtask.commit_sha = layer.commit
            subtask.state = SubtaskState.COMMITTED if layer.commit else SubtaskState.EMPTY
            if layer.summary is not None:
                subtask.summary = layer.summary
            if layer.decisions:
                subtask.decisions = [*subtask.decisions, *layer.decisions]
            if layer.attempts:
                subtask.verification = layer.verification
                subtask.verify_attempts = layer.attempts
                subtask.verified = layer.verified
            if layer.commit:
                record_version(session, subtask, layer.commit)
        for comment in session.scalars(select(ReviewComment).where(ReviewComment.id.in_(fixed))):
            comment.resolved = True
            comment.addressed_by_subtask_id = comment.subtask_id
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
    """Comments on the whole branch become one more subtask on top (or a resumed job's)."""
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        pending = [s for s in task.subtasks if _unfinished(s)]
        if pending:
            subtask = pending[-1]
        else:
            steps = [described[i] for i in on_top]
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
