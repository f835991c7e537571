"""Questions the executing or revising agent asks in the middle of a subtask.

The subtasks already committed stay. Within the task's bound (``ERRANDS_EXECUTION_QUESTIONS``)
the question is stored with the others, the task goes to ``awaiting_answers`` (its event
names the subtask that asked) and the job ends; the answer becomes a requirement and resumes
the stage, which redoes the asking subtask from its start with the answer in its prompt.
Past the bound the agent is told to go on with the option it leans towards, which is
recorded as the answer (so the hand-off shows it), and nobody waits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from errands.agent.schemas import ClarifyingQuestion
from errands.domain import SubtaskState, TaskState, check_transition
from errands.errors import GitError, NestedRepository, Paused
from errands.executors import ExecutorPhase
from errands.git import Workspace
from errands.settings import Settings
from errands.store import Database, Event, Project, Question, Subtask, Task
from errands.store import events as event_log
from errands.workflow.context import JobContext

LEANING_NOTE = "(the agent's leaning: the task had used up its questions)"
MAX_WIP_BYTES = 4 * 2**20  # a subtask's uncommitted work kept while its question waits
MAX_LEANINGS = 3  # questions in one turn answered with the leaning before the subtask fails


def ask_or_lean(
    ctx: JobContext,
    subtask_id: int,
    phase: ExecutorPhase,
    asked: ClarifyingQuestion,
    report_hint: str,
    *,
    wip: bytes | None = None,
) -> str:
    """Pause the task on ``asked`` (raises ``Paused``), keeping ``wip`` (the subtask's
    uncommitted work, see :func:`keep_wip`) for its resumption; or, past the bound, return
    the prompt that tells the agent to go on with its leaning."""
    options = [o.model_dump() for o in asked.options]
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        subtask = session.get_one(Subtask, subtask_id)
        so_far = sum(1 for q in task.questions if q.phase != "research")
        question = Question(
            position=len(task.questions) + 1,
            text=asked.question,
            reasoning=asked.reasoning,
            options=options,
            recommended=asked.recommended,
            phase=phase,
            subtask_position=subtask.position,
        )
        task.questions.append(question)
        where = f"subtask {subtask.position} ({subtask.title})"
        if so_far < ctx.settings.execution_questions:
            # Resumed once answered, from its start with its work so far restored.
            subtask.state = SubtaskState.PLANNED
            subtask.wip_patch = wip
            task.state = check_transition(TaskState(task.state), TaskState.AWAITING_ANSWERS)
            ctx.record(
                session,
                "task.state",
                f"Question {question.position} from {where}: {asked.question}",
                state=TaskState.AWAITING_ANSWERS,
                phase=phase,
                subtask=subtask.position,
                question=question.position,
            )
            ctx.settle(session)
            paused = True
        else:
            chosen = options[asked.recommended - 1]
            question.answer_option = asked.recommended
            question.answer_text = LEANING_NOTE
            question.answered_at = datetime.now(UTC).replace(tzinfo=None)
            task.requirements = [*task.requirements, str(chosen["requirement"])]
            ctx.record(
                session,
                "question.leaning",
                f"Question {question.position} from {where} goes unasked (the task has used "
                f"its {ctx.settings.execution_questions} question(s)): going on with "
                f"{chosen['label']}",
                question=question.position,
                subtask=subtask.position,
            )
            paused = False
    if paused:
        raise Paused(f"task {ctx.task_id} awaits the answer to question {question.position}")
    return (
        f"You may not ask more questions: this task has used the "
        f"{ctx.settings.execution_questions} it may ask. Go on with the option you lean "
        f"towards ({chosen['label']}: {chosen['requirement']}), then {report_hint}."
    )


def keep_wip(ctx: JobContext, workspace: Workspace, position: int) -> bytes | None:
    """The asking subtask's uncommitted work as a patch, to keep while the task waits (in
    the database: the answer may resume it on another machine). None when there is none, or
    it cannot be kept (said in an event: the subtask then starts over)."""
    try:
        patch = workspace.uncommitted_patch(MAX_WIP_BYTES)
    except (GitError, NestedRepository) as exc:
        ctx.emit("subtask.wip_lost", f"Subtask {position}: its work so far cannot be kept: {exc}")
        return None
    if patch is None and workspace.changed_files():
        ctx.emit(
            "subtask.wip_lost",
            f"Subtask {position}: its work so far is over {MAX_WIP_BYTES // 2**20} MiB as a "
            "patch and is not kept; it starts over once answered",
        )
    return patch


def restore_wip(ctx: JobContext, workspace: Workspace, position: int, wip: bytes | None) -> str:
    """Put back the work a subtask had done when it stopped to ask; what to tell its agent
    (appended to its prompt), or "" when there was nothing to restore."""
    if not wip:
        return ""
    try:
        workspace.apply_patch(wip)
    except GitError as exc:
        ctx.emit(
            "subtask.wip_lost",
            f"Subtask {position}: its work from before the question no longer applies; it "
            f"starts over: {exc}",
        )
        return ""
    files = workspace.changed_files()
    ctx.emit(
        "subtask.wip_restored",
        f"Subtask {position}: its work from before the question is back ({len(files)} file(s))",
        files=files,
    )
    return (
        "\n\nYou already started this subtask before you asked your question; those changes "
        f"are in the work tree as you left them ({', '.join(files[:20])}"
        f"{', …' if len(files) > 20 else ''}). Go on from there, with the answer."
    )


def lean_overdue(db: Database, settings: Settings) -> int:
    """Answer, with the agent's leaning, the questions asked during execution that have
    waited longer than their project allows (``lean_after_hours``), and resume those tasks.
    The number of tasks resumed."""
    from errands.workflow import actions

    now = datetime.now(UTC).replace(tzinfo=None)
    with db.session() as session:
        candidates = session.scalars(
            select(Task.id)
            .join(Project, Project.id == Task.project_id)
            .where(Task.state == TaskState.AWAITING_ANSWERS, Project.lean_after_hours.is_not(None))
        ).all()
    resumed = 0
    for task_id in candidates:
        with db.session() as session:
            task = session.get_one(Task, task_id)
            hours = task.project.lean_after_hours
            open_questions = [q for q in task.questions if not q.answered]
            if (
                task.state != TaskState.AWAITING_ANSWERS
                or hours is None
                or not open_questions
                or any(q.phase == "research" for q in open_questions)
            ):
                continue  # research's questions always wait for people
            since = session.scalar(
                select(func.max(Event.created_at)).where(
                    Event.task_id == task_id, Event.kind == "task.state"
                )
            )
            if since is None or now - since < timedelta(hours=hours):
                continue
            for q in open_questions:
                q.answer_option = q.recommended or 1
                q.answer_text = f"(the agent's leaning: unanswered after {hours:g} hours)"
                q.answered_at = now
                event_log.record(
                    session,
                    "question.leaning",
                    f"Question {q.position} went unanswered for {hours:g} hours: going on with "
                    f"the agent's leaning, {q.options[q.answer_option - 1]['label']}",
                    task_id=task.id,
                    project_id=task.project_id,
                    data={"question": q.position, "option": q.answer_option},
                )
            actions.all_answered(session, settings, task)
            resumed += 1
    return resumed
