"""Questions the executing or revising agent asks in the middle of a subtask.

The subtasks already committed stay. Within the task's bound (``ERRANDS_EXECUTION_QUESTIONS``)
the question is stored with the others, the task goes to ``awaiting_answers`` (its event
names the subtask that asked) and the job ends; the answer becomes a requirement and resumes
the stage, which redoes the asking subtask from its start with the answer in its prompt.
Past the bound the agent is told to go on with the option it leans towards, which is
recorded as the answer (so the hand-off shows it), and nobody waits.
"""

from __future__ import annotations

from datetime import UTC, datetime

from errands.agent.schemas import ClarifyingQuestion
from errands.domain import SubtaskState, TaskState, check_transition
from errands.errors import Paused
from errands.executors import ExecutorPhase
from errands.store import Question, Subtask, Task
from errands.workflow.context import JobContext

LEANING_NOTE = "(the agent's leaning: the task had used up its questions)"
MAX_LEANINGS = 3  # questions in one turn answered with the leaning before the subtask fails


def ask_or_lean(
    ctx: JobContext,
    subtask_id: int,
    phase: ExecutorPhase,
    asked: ClarifyingQuestion,
    report_hint: str,
) -> str:
    """Pause the task on ``asked`` (raises ``Paused``), or, past the bound, return the
    prompt that tells the agent to go on with its leaning."""
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
            # Redone whole once answered: its uncommitted edits are not kept.
            subtask.state = SubtaskState.PLANNED
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
