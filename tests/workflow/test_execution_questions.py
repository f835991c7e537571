"""Questions during execution, with real ``errands worker`` processes and the scripted model:
the agent asks after subtask 1 is committed; the task waits with subtask 1 intact (on the
branch and in the store) while its worker is SIGKILLed; the answer resumes the work, subtask
2 is done with the answer in its prompt, and the hand-off lists the question and answer.
And past the bound the agent goes on with its leaning instead of asking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from errands import runtime
from errands.domain import TaskState
from errands.store import Database, Event, Task
from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from errands.testing.workload import Fleet, worker_env
from errands.workflow import actions
from tests.conftest import run_git
from tests.support import (
    ADD_MULTIPLY,
    PLAN_OUTPUT,
    final,
    phase_of,
    running_server,
    settings_for,
    wait_for,
)

QUESTION = {
    "question": "Must multiply handle floats in the tests?",
    "reasoning": "I found calc.add untested for floats; a float test decides rounding.",
    "options": [
        {"label": "Floats too", "requirement": "the tests cover floats"},
        {"label": "Ints only", "requirement": "the tests cover ints only"},
    ],
    "recommended": 1,
}
ANSWERED = "Must multiply handle floats in the tests? → Floats too"
FLOAT_TEST = "    assert multiply(0.5, 4) == 2.0\n"


NOTES = "Floats: 0.5 * 4 is exact in binary; no rounding needed.\n"


class AskingScript:
    """No research questions; subtask 1 adds multiply; subtask 2 asks first (with
    ``start_first``, after writing notes it keeps), and writes a float test only when its
    prompt holds the answer."""

    def __init__(self, *, start_first: bool = False) -> None:
        self.asked = 0
        self.start_first = start_first
        self.answered_prompts: list[str] = []

    def __call__(self, req: ChatRequest) -> Reply:
        phase = phase_of(req)
        step = req.n_assistant
        if phase == "research":
            return final(overview="calc.", requirements=["Add multiply"], questions=[])
        if phase == "plan":
            return final(**PLAN_OUTPUT)
        if phase == "execute" and "subtask 1 of 2" in req.user:
            return [ADD_MULTIPLY, final(summary="Added multiply(a, b).")][min(step, 1)]
        if phase == "execute" and "subtask 2 of 2" in req.user:
            if ANSWERED not in req.user and "You may not ask more questions" not in req.user:
                if self.start_first and step == 0:
                    return Reply.call("write_file", path="tests/floats.md", content=NOTES)
                self.asked += 1
                return Reply.call("ask_human", **QUESTION)
            if ANSWERED in req.user:
                self.answered_prompts.append(req.user)
            body = "from calc import multiply\n\n\ndef test_multiply():\n"
            body += "    assert multiply(3, 4) == 12\n" + FLOAT_TEST
            return [
                Reply.call("write_file", path="tests/test_multiply.py", content=body),
                final(summary="Tested multiply with ints and floats, as answered."),
            ][min(step, 1)]
        raise AssertionError(f"unexpected request in phase {phase}: {req!r}")


def _task(db: Database, task_id: int) -> dict[str, Any]:
    with db.session() as session:
        task = session.get_one(Task, task_id)
        return {
            "state": task.state,
            "subtasks": [(s.position, s.state, s.commit_sha) for s in task.subtasks],
            "questions": [(q.position, q.phase, q.subtask_position) for q in task.questions],
            "requirements": list(task.requirements),
            "handoff": task.handoff,
            "failure": task.failure_reason,
        }


def _in(db: Database, task_id: int, state: str) -> dict[str, Any] | None:
    found = _task(db, task_id)
    assert found["state"] != "failed", found["failure"]
    return found if found["state"] == state else None


def test_a_question_after_subtask_1_waits_survives_a_worker_kill_and_resumes_with_the_answer(
    sample_repo: Path, home: Path, tmp_path: Path
) -> None:
    script = AskingScript(start_first=True)
    with ScriptedLLM(script) as llm:
        settings = settings_for(home, llm.base_url, job_lease_seconds=3.0)
        db = runtime.open_database(settings)
        with db.session() as session:
            project = actions.add_project(session, settings, str(sample_repo), name="calc")
            project_id = project.id
        fleet = Fleet([worker_env(settings)], tmp_path / "workers")
        fleet.start()
        try:
            with db.session() as session:
                task_id = actions.create_task(
                    session, settings, project_id, "Add multiply", "We need a*b."
                ).id
            waiting = wait_for(
                lambda: _in(db, task_id, "awaiting_answers"), timeout=120, what="the question"
            )
            (first, second) = waiting["subtasks"]
            assert first[1] == "committed" and first[2]
            assert second[1] == "planned" and second[2] is None
            assert waiting["questions"] == [(1, "execute", 2)]
            with db.session() as session:
                asked = session.query(Event).filter(
                    Event.task_id == task_id,
                    Event.kind == "task.state",
                    Event.message.like("Question 1 from subtask 2 (Test multiply)%"),
                )
                assert asked.one().data["subtask"] == 2
            branch = run_git(sample_repo, "branch", "--list", "errands/*").strip()
            assert branch, "subtask 1's commit is published while the task waits"

            # The worker dies while the task waits: nothing is lost, nothing runs.
            fleet.kill(0)
            assert _in(db, task_id, "awaiting_answers") == waiting

            with db.session() as session:
                actions.answer(session, settings, task_id, 1, option=1)
            done = wait_for(lambda: _in(db, task_id, "in_review"), timeout=120, what="review")
        finally:
            fleet.stop()
    assert script.asked == 1
    assert done["subtasks"][0] == first  # subtask 1 kept, not redone
    assert [s[1] for s in done["subtasks"]] == ["committed", "committed"]
    assert "the tests cover floats" in done["requirements"]
    branch_name = run_git(sample_repo, "branch", "--list", "errands/*").strip(" *\n")
    assert FLOAT_TEST in run_git(sample_repo, "show", f"{branch_name}:tests/test_multiply.py")
    # What subtask 2 had written before it asked was kept while the task waited (its worker
    # killed meanwhile) and is in its commit, though the resumed agent never wrote it again.
    assert run_git(sample_repo, "show", f"{branch_name}:tests/floats.md") == NOTES
    assert "You already started this subtask" in script.answered_prompts[0]
    assert "tests/floats.md" in script.answered_prompts[0]
    handoff = done["handoff"]
    assert "**Q1. Must multiply handle floats in the tests?** (asked during subtask 2)" in handoff
    assert "A: Floats too — the tests cover floats" in handoff
    assert done["state"] == TaskState.IN_REVIEW
    db.dispose()


def test_past_the_bound_the_agent_goes_on_with_its_leaning(sample_repo: Path, home: Path) -> None:
    script = AskingScript()
    with ScriptedLLM(script) as llm:
        settings = settings_for(home, llm.base_url, execution_questions=0)
        db = runtime.open_database(settings)
        with db.session() as session:
            project_id = actions.add_project(session, settings, str(sample_repo)).id
        with running_server(settings):
            with db.session() as session:
                task_id = actions.create_task(
                    session, settings, project_id, "Add multiply", "We need a*b."
                ).id
            done = wait_for(lambda: _in(db, task_id, "in_review"), timeout=120, what="review")
    assert script.asked == 1
    assert done["questions"] == [(1, "execute", 2)]
    assert "the tests cover floats" in done["requirements"]
    assert "A: Floats too — the tests cover floats / (the agent's leaning" in done["handoff"]
    db.dispose()


def test_a_project_may_go_on_with_the_leaning_after_a_while(sample_repo: Path, home: Path) -> None:
    script = AskingScript()
    with ScriptedLLM(script) as llm:
        settings = settings_for(home, llm.base_url)
        db = runtime.open_database(settings)
        with db.session() as session:
            project_id = actions.add_project(session, settings, str(sample_repo)).id
            actions.update_project(session, project_id, lean_after_hours=2 / 3600)  # 2 s
        with running_server(settings):
            with db.session() as session:
                task_id = actions.create_task(
                    session, settings, project_id, "Add multiply", "We need a*b."
                ).id
            wait_for(lambda: _in(db, task_id, "awaiting_answers"), timeout=120, what="asking")
            done = wait_for(lambda: _in(db, task_id, "in_review"), timeout=120, what="review")
    assert script.asked == 1
    assert "the tests cover floats (the agent's leaning: unanswered after" in " ".join(
        done["requirements"]
    )
    assert "(the agent's leaning: unanswered after 0.000555556 hours)" in done["handoff"]
    db.dispose()
