"""Fixes go into the subtask they fix: a revise round rebuilds the stack from the lowest
subtask with open comments, one commit per subtask, each verified after the restack.

Every subtask from there up is applied again onto the one below it. The agent works inside a
subtask only when it has to: the reviewer left comments on it, applying it conflicted (the
agent resolves the conflict in the sandbox; a marker left behind fails the round, never
passes silently), or the project's commands fail on it. Nothing is recorded until the whole
stack is rebuilt and published: a round that dies half-way leaves the reviewed stack as it
was, and the retried job starts again from it.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from errands.agent import prompts
from errands.agent.loop import QuestionAsked
from errands.domain import SubtaskState
from errands.errors import AgentOutputError, VerificationFailed
from errands.executors import Assignment, ExecutorSession, create_executor
from errands.store import Subtask
from errands.workflow import asking
from errands.workflow.agent_egress import AgentEgress
from errands.workflow.context import JobContext
from errands.workflow.implement import commit_message, workbench
from errands.workflow.project_config import EffectiveConfig
from errands.workflow.verify import failure_report, run_verification
from errands.workflow.versions import record_version
from errands.workflow.workspaces import JobWorkspace


@dataclass(frozen=True)
class Layer:
    """One subtask of the stack as the restack finds it."""

    subtask_id: int
    position: int
    title: str
    commit: str
    fixes: list[str] = field(default_factory=list)  # the open comments left on it, described


@dataclass(frozen=True)
class Rebuilt:
    """A subtask as the restack left it: its new commit (None: it no longer changes
    anything), what the agent said of its fix, and the verification of the new commit."""

    subtask_id: int
    commit: str | None
    summary: str | None
    decisions: list[str]
    verification: list[dict[str, object]]
    verified: bool | None
    attempts: int
    conflicts: list[str] = field(default_factory=list)  # paths the agent had to resolve


def store_rebuilt(session: Session, rebuilt: list[Rebuilt]) -> None:
    """Each rebuilt subtask as the restack left it, in the caller's transaction: its new
    commit (recorded as a new version), what the agent said of it, and its verification."""
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


def rebuild(
    ctx: JobContext,
    *,
    work: JobWorkspace,
    base_commit: str,
    layers: list[Layer],
    task_prompt: str,
    config: EffectiveConfig,
    whole: bool = False,
) -> list[Rebuilt]:
    """Rebuild the stack from its lowest layer with fixes (``whole``: every layer, onto
    ``base_commit``, the base branch's new tip when a moved base is rebased); return the
    rebuilt layers."""
    start = 0 if whole else next(i for i, layer in enumerate(layers) if layer.fixes)
    work.workspace.reset_to(layers[start - 1].commit if start else base_commit)
    below = "the moved base branch" if whole else "the revised subtasks below it"
    rebuilt = []
    for layer in layers[start:]:
        # The egress proxy of an agent in the sandbox lives as long as its layer's session.
        with ExitStack() as stack:
            rebuilt.append(
                _rebuild_layer(ctx, work, layer, len(layers), task_prompt, config, stack, below)
            )
            below = "the restacked subtasks below it"
    return rebuilt


def _rebuild_layer(
    ctx: JobContext,
    work: JobWorkspace,
    layer: Layer,
    total: int,
    task_prompt: str,
    config: EffectiveConfig,
    stack: ExitStack,
    below: str,
) -> Rebuilt:
    workspace, position = work.workspace, layer.position
    ctx.check_cancelled()
    conflicts = workspace.apply_commit(layer.commit)
    session: ExecutorSession | None = None
    egress: AgentEgress | None = None
    executor = create_executor(config.executors["revise"])
    summary: str | None = None
    decisions: list[str] = []

    def turn(prompt: str) -> None:
        nonlocal session, summary, decisions, egress
        assert work.sandbox is not None  # job_workspace(commands=True)
        if session is None or egress is None:
            egress = AgentEgress(ctx, config.backend, work.sandbox.policy, stack)
            session = executor.start(
                workbench(ctx, work, config, "revise", egress),
                Assignment(f"revise-subtask-{position}", prompts.REVISE, prompt),
            )
        # The agent may stop to ask, as in any subtask: within the task's bound the task
        # pauses (the round is redone from the reviewed stack once answered); past it the
        # agent goes on with its leaning.
        for _ in range(asking.MAX_LEANINGS + 1):
            try:
                report = session.turn(prompt)
                break
            except QuestionAsked as asked:
                prompt = asking.ask_or_lean(
                    ctx, layer.subtask_id, "revise", asked.question, executor.report_hint
                )
            finally:
                egress.check()  # a call refused for a spent budget: BudgetReached
        else:
            raise AgentOutputError(
                f"Subtask {position}: the agent kept asking after being told to go on with "
                f"its own leaning ({asking.MAX_LEANINGS} times)."
            )
        ctx.check_cancelled()
        summary = report.summary
        decisions = list(report.decisions)

    # The title and the paths are the agent's own words: framed like any untrusted text.
    where = (
        f"You are revising subtask {position} of {total} of this stack:\n"
        + prompts.frame("subtask", layer.title)
        + "\n"
    )
    if conflicts:
        ctx.emit(
            "restack.conflict",
            f"Subtask {position} conflicts with {below} in "
            f"{', '.join(conflicts)}; the agent resolves it",
            position=position,
            paths=conflicts,
        )
        turn(
            f"{task_prompt}\n\n{where} Applying it again onto {below} "
            "conflicted in the files listed in the next subtask block:\n"
            + prompts.frame("subtask", "\n".join(conflicts))
            + "\nThe files hold git's conflict markers. "
            "Resolve every conflict so that this subtask does what it did before, on top of "
            "the code below it as it is now; remove every marker. "
            + ("Then also address these review comments:\n\n" if layer.fixes else "")
            + (prompts.frame("review", prompts.bullet(layer.fixes)) if layer.fixes else "")
        )
        left = workspace.conflict_markers(conflicts)
        if left:
            raise VerificationFailed(
                f"Subtask {position} ({layer.title}): the restack conflicted and conflict "
                f"markers are still in {', '.join(left)}"
            )
    elif layer.fixes:
        turn(
            f"{task_prompt}\n\n{where} Make every fix inside this subtask: the subtasks above "
            "it are applied again on top afterwards.\n\n"
            + prompts.frame("review", prompts.bullet(layer.fixes))
        )

    results: list[dict[str, object]] = []
    verified: bool | None = None
    attempts = 0
    if config.verify_commands and workspace.changed_files():
        assert work.sandbox is not None  # job_workspace(commands=True)
        for attempts in range(1, ctx.settings.verify_attempts + 1):
            _set_state(ctx, layer.subtask_id, SubtaskState.VERIFYING)
            results = run_verification(
                ctx, work.sandbox, config.verify_commands, config.command_timeout
            )
            verified = all(r["ok"] for r in results)
            if verified:
                break
            if attempts == ctx.settings.verify_attempts:
                _set_state(ctx, layer.subtask_id, SubtaskState.FAILED)
                failing = ", ".join(str(r["command"]) for r in results if not r["ok"])
                raise VerificationFailed(
                    f"Subtask {position} ({layer.title}): after the restack, verification "
                    f"still fails after {attempts} attempt(s): {failing}"
                )
            ctx.emit(
                "restack.fixing",
                f"Subtask {position}: verification failed after the restack, attempt "
                f"{attempts + 1}",
            )
            turn(
                f"{task_prompt}\n\n{where} The project's verify commands fail on this subtask "
                "after the restack. Fix the code so they pass (do not weaken or delete tests), "
                f"then {executor.report_hint} again.\n\n" + failure_report(results)
            )

    with ctx.db.session() as db:
        subtask = db.get_one(Subtask, layer.subtask_id)
        revised = (subtask.summary or "").strip()
        if summary:
            revised += f"\n\nRevised after review: {summary.strip()}"
        sha = workspace.commit_all(commit_message(subtask, revised))
    ctx.emit(
        "restack.rebuilt",
        f"Subtask {position} restacked as {str(sha)[:10]}"
        + (" with the review's fixes" if layer.fixes else ""),
        position=position,
        sha=sha,
        fixed=bool(layer.fixes),
        conflicts=conflicts,
    )
    return Rebuilt(
        layer.subtask_id,
        sha,
        revised if sha else summary,
        decisions,
        results,
        verified,
        attempts,
        conflicts,
    )


def _set_state(ctx: JobContext, subtask_id: int, state: SubtaskState) -> None:
    with ctx.db.session() as db:
        db.get_one(Subtask, subtask_id).state = state
