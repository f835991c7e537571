"""The research stage: a read-only agent studies the repository and asks what matters."""

from __future__ import annotations

from errands.agent import prompts
from errands.agent.loop import run_agent
from errands.agent.schemas import ResearchResult
from errands.domain import TaskState, check_transition, state_words
from errands.forges.registry import forge_for
from errands.git import task_branch
from errands.index import Located
from errands.store import Project, Question, Task
from errands.workflow import actions
from errands.workflow.code_index import refresh_index
from errands.workflow.context import JobContext
from errands.workflow.mirrors import base_tip
from errands.workflow.project_config import EffectiveConfig, effective_config
from errands.workflow.workspaces import job_workspace

MAP_FILES = 5  # files whose outline goes into the first prompt
MAP_CHARS = 6_000  # about 1,500 tokens of repository map


def research_prompt(
    task: Task, project: Project, config: EffectiveConfig, located: list[Located], outline: str
) -> str:
    languages = ", ".join(f"{k} ({v})" for k, v in project.languages.items()) or "unknown"
    commands = ", ".join(config.verify_commands) or "none configured"
    prompt = (
        f"Repository: {project.name} — {project.file_count} files; languages: {languages}; "
        f"verify commands: {commands}.\n\n{prompts.task_block(task.title, task.body)}"
    )
    if located:
        ranked = "\n".join(
            f"{n}. {hit.path} — {'; '.join(hit.reasons)}" for n, hit in enumerate(located, 1)
        )
        prompt += (
            "\n\nFiles the code index ranks as most relevant to this task (start here; "
            f"verify by reading them):\n{ranked}\n\nOutline of the top files:\n{outline}"
        )
    return prompt


def run(ctx: JobContext) -> None:
    with ctx.db.session() as session:
        task = session.get(Task, ctx.task_id)
        assert task is not None
        project = task.project
        config = effective_config(project, ctx.settings)
        text = f"{task.title}\n\n{task.body}"
        origin, base_branch = project.origin, task.base_branch
        branch = task.branch or task_branch(task.id, task.title)
    mirror = ctx.mirror(origin)
    mirror.fetch()
    base_commit = base_tip(mirror, origin, base_branch)
    # Keep the index at the commit research reads: only files changed since are re-read.
    index, changed = refresh_index(ctx.settings, ctx.lease.project_id, mirror, base_commit)
    if changed:
        ctx.emit("index.updated", f"Re-indexed {len(changed)} changed file(s)", files=changed)
    located = index.locate(text, limit=10)
    outline = index.repo_map([h.path for h in located[:MAP_FILES]], max_chars=MAP_CHARS)
    with ctx.db.session() as session:
        task = session.get_one(Task, ctx.task_id)
        prompt = research_prompt(task, task.project, config, located, outline)
    # Research reads the base as it is now; execute branches from this same commit.
    with job_workspace(
        ctx,
        mirror,
        branch=branch,
        start_point=base_commit,
        config=config,
        commands=False,
        index=index,
    ) as work:
        ctx.emit("research.started", f"Researching on {base_branch} at {base_commit[:10]}")
        result = run_agent(
            ctx.agent_config("research"),
            name="research",
            instructions=prompts.RESEARCH,
            prompt=prompt,
            output_type=ResearchResult,
            tools=work.tools.read_only(),
            recorder=ctx,
        ).output
    ctx.check_cancelled()
    with ctx.db.session() as session:
        task = session.get(Task, ctx.task_id)
        assert task is not None
        task.branch = branch
        task.base_commit = base_commit
        task.research = {
            **result.model_dump(exclude={"questions"}),
            # What the index proposed, with its reasons, next to what the agent concluded.
            "located": [
                {"path": h.path, "score": round(h.score, 3), "reasons": h.reasons} for h in located
            ],
        }
        task.requirements = list(result.requirements)
        task.questions.clear()
        for number, q in enumerate(result.questions, start=1):
            task.questions.append(
                Question(
                    position=number,
                    text=q.question,
                    reasoning=q.reasoning,
                    options=[o.model_dump() for o in q.options],
                    recommended=q.recommended,
                )
            )
        target = TaskState.AWAITING_ANSWERS if result.questions else TaskState.READY
        task.state = check_transition(TaskState(task.state), target)
        ctx.record(
            session,
            "research.finished",
            f"Research done: {len(result.questions)} question(s)",
            questions=len(result.questions),
            relevant_files=[f.path for f in result.relevant_files],
        )
        ctx.record(session, "task.state", f"Task is {state_words(target)}", state=target)
        ctx.settle(session)
        if target is TaskState.READY:
            actions.start_execution_if_auto(session, ctx.settings, task)
        else:
            forge_for(ctx.settings, task.project).nudge(session, task.project)  # on its issue
