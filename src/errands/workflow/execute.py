"""The execute stage: plan subtasks, then implement each as one verified commit."""

from __future__ import annotations

from errands.agent import prompts
from errands.agent.loop import run_agent
from errands.agent.schemas import Plan
from errands.domain import SubtaskState, TaskState, check_transition
from errands.errors import BranchMoved, GitError
from errands.faults import crash_point
from errands.forges.registry import forge_for
from errands.git import Mirror, task_branch
from errands.store import Subtask, Task
from errands.workflow import actions, handoff, trailers
from errands.workflow.context import JobContext
from errands.workflow.implement import implement_subtask, observe_branch, publish_branch
from errands.workflow.mirrors import base_tip
from errands.workflow.project_config import effective_config
from errands.workflow.versions import forget_version
from errands.workflow.workspaces import JobWorkspace, job_workspace


def _task_context(task: Task) -> str:
    answers = [
        f"- {q.text} → {prompts.answer_words(q.options, q.answer_option, q.answer_text)}"
        for q in task.questions
    ]
    # Requirements and answers hold people's words (answers, chat), the overview an agent's
    # reading of them: all of it is framed like the task itself.
    research = (
        f"Overview from research:\n{(task.research or {}).get('overview', '(none)')}\n\n"
        f"Requirements:\n{prompts.bullet(list(task.requirements))}\n\n"
        f"Answered questions:\n{chr(10).join(answers) or '- (none)'}"
    )
    return f"{prompts.task_block(task.title, task.body)}\n\n{prompts.frame('research', research)}"


def run(ctx: JobContext) -> None:
    with ctx.db.session() as session:
        task = session.get(Task, ctx.task_id)
        assert task is not None
        origin = task.project.origin
        base_branch = task.base_branch
        branch = task.branch or task_branch(task.id, task.title)
        task.branch = branch
        config = effective_config(task.project, ctx.settings)
        context = _task_context(task)
        planned = bool(task.subtasks)
    mirror = ctx.mirror(origin)
    mirror.fetch()
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        # Normally set by research; a task whose research predates a moved base keeps it.
        if task.base_commit is None:
            task.base_commit = base_tip(mirror, origin, base_branch)
        base_commit = task.base_commit
        key = trailers.key_line(task)
    # A resumed job may have started on another machine.
    observe_branch(ctx, mirror, branch)
    tip = mirror.adopt_published(branch, base_commit, key)
    _forget_lost_commits(ctx, mirror, tip)
    # An existing branch (a resumed job) is reused as it is.
    with job_workspace(
        ctx,
        mirror,
        branch=branch,
        start_point=base_commit,
        config=config,
        commands=True,
    ) as work:
        if not planned:
            _plan(ctx, work, context)
        with ctx.db.session() as session:
            todo = [
                (s.id, s.position, s.title, list(s.steps))
                for s in session.get_one(Task, ctx.task_id).subtasks
                if s.state not in (SubtaskState.COMMITTED, SubtaskState.EMPTY)
            ]
            total = len(session.get_one(Task, ctx.task_id).subtasks)
        for subtask_id, position, title, steps in todo:
            ctx.check_cancelled()
            implement_subtask(
                ctx,
                mirror=mirror,
                work=work,
                base_commit=base_commit,
                subtask_id=subtask_id,
                instructions=prompts.SUBTASK,
                prompt=(
                    f"{context}\n\nYou are doing subtask {position} of {total}:\n"
                    + prompts.frame("subtask", f"{title}\nSteps:\n{prompts.bullet(steps)}")
                ),
                config=config,
                phase="execute",
            )
        head = work.workspace.head()
    finish_review_round(ctx, mirror, branch, head)


def _plan(ctx: JobContext, work: JobWorkspace, context: str) -> None:
    plan = run_agent(
        ctx.agent_config("execute"),
        name="plan",
        instructions=prompts.PLAN,
        prompt=context,
        output_type=Plan,
        tools=work.tools.read_only(),
        recorder=ctx,
    ).output
    ctx.check_cancelled()
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        for number, item in enumerate(plan.subtasks, start=1):
            task.subtasks.append(
                Subtask(
                    position=number,
                    title=item.title,
                    steps=list(item.steps),
                    origin="plan",
                    state=SubtaskState.PLANNED,
                )
            )
        task.out_of_scope = list(plan.out_of_scope)
        ctx.record(
            session,
            "plan.created",
            f"Planned {len(plan.subtasks)} subtask(s)",
            subtasks=[s.title for s in plan.subtasks],
        )


def finish_review_round(ctx: JobContext, mirror: Mirror, branch: str, head: str) -> None:
    """Publish the branch, write the hand-off, and hand the task to the reviewer."""
    ctx.check_cancelled()
    crash_point("branch.before_publish")
    try:
        publish_branch(ctx, mirror, branch, head)
    except BranchMoved:
        raise
    except GitError as exc:
        # Review works from the mirror; a read-only origin only loses the convenience copy.
        ctx.emit("branch.publish_failed", f"Could not push {branch} to the project: {exc}")
    crash_point("branch.published")
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        task.handoff = handoff.render(task)
        task.state = check_transition(TaskState(task.state), TaskState.IN_REVIEW)
        task.merge_error = None
        unchanged = handoff.no_change(task)
        ctx.record(
            session,
            "task.state",
            f"Nothing to review: no subtask changed anything ({branch} is its base, "
            f"{head[:10]}); nothing to merge"
            if unchanged
            else f"Ready for review on {branch} ({head[:10]})",
            state=TaskState.IN_REVIEW,
            head=head,
            no_change=unchanged,
        )
        ctx.settle(session)
        # The base moved while this job ran (a push its forge told of): rebase now.
        actions.rebase_if_moved(session, ctx.settings, task)
        forge_for(ctx.settings, task.project).nudge(session, task.project)  # open/update a PR


def _forget_lost_commits(ctx: JobContext, mirror: Mirror, tip: str | None) -> None:
    """A subtask recorded as committed whose commit is not on the branch (its machine died
    before publishing it) is done again, rather than merged without its change."""
    with ctx.db.session() as session:
        for subtask in session.get_one(Task, ctx.task_id).subtasks:
            sha = subtask.commit_sha
            if subtask.state != SubtaskState.COMMITTED or sha is None:
                continue
            if tip is not None and mirror.resolve(sha) and mirror.contains(tip, sha):
                continue
            subtask.state, subtask.commit_sha = SubtaskState.PLANNED, None
            forget_version(subtask, sha)
            ctx.record(
                session,
                "subtask.lost",
                f"Subtask {subtask.position}'s commit {sha[:10]} is not on the branch; "
                "doing it again",
                sha=sha,
            )
