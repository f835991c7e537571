"""One subtask, start to finish: agent edits → verify → fix (bounded) → one commit.

Shared by execute (planned subtasks) and revise (a subtask made of review comments). State is
saved after every step so a resumed job continues where the last attempt stopped.
"""

from __future__ import annotations

from contextlib import ExitStack

from errands.agent import prompts
from errands.agent.loop import QuestionAsked
from errands.domain import SubtaskState
from errands.errors import (
    AgentOutputError,
    BranchMoved,
    ConfigError,
    GitError,
    VerificationFailed,
)
from errands.executors import Assignment, ExecutorPhase, ExecutorReport, Workbench, create_executor
from errands.faults import crash_point
from errands.forges.registry import forge_for
from errands.git import Mirror
from errands.store import Subtask
from errands.workflow import asking, progress, trailers
from errands.workflow.agent_egress import AgentEgress
from errands.workflow.context import JobContext
from errands.workflow.project_config import EffectiveConfig
from errands.workflow.verify import failure_report, run_verification
from errands.workflow.versions import record_version
from errands.workflow.workspaces import JobWorkspace

NO_REASON = "The agent changed no file and did not say why."


def commit_message(subtask: Subtask, summary: str) -> str:
    return (
        f"{subtask.title}\n\n{summary.strip()}\n\n"
        f"{trailers.task_lines(subtask.task)}{trailers.SUBTASK}: {subtask.id}\n"
    )


def find_existing_commit(mirror: Mirror, base: str, branch: str, subtask: Subtask) -> str | None:
    """A commit for this subtask already on the branch (the worker died after committing but
    before recording it): adopt it instead of doing the work twice."""
    wanted = {f"{trailers.SUBTASK}: {subtask.id}", trailers.key_line(subtask.task)}
    for commit in mirror.commits(base, branch):
        if wanted <= set(commit.body.splitlines()):
            return commit.sha
    return None


def implement_subtask(
    ctx: JobContext,
    *,
    mirror: Mirror,
    work: JobWorkspace,
    base_commit: str,
    subtask_id: int,
    instructions: str,
    prompt: str,
    config: EffectiveConfig,
    phase: ExecutorPhase,
) -> None:
    workspace = work.workspace
    verify_commands = config.verify_commands
    with ctx.db.session() as session:
        subtask = session.get(Subtask, subtask_id)
        assert subtask is not None
        if subtask.state in (SubtaskState.COMMITTED, SubtaskState.EMPTY):
            return
        existing = find_existing_commit(mirror, base_commit, workspace.branch, subtask)
        if existing is not None:
            # Its attempt may have died before publishing it: publish before recording, as
            # for a new commit, or a resume elsewhere would build on a branch without it.
            publish_progress(ctx, mirror, workspace.branch, workspace.head())
            subtask.state = SubtaskState.COMMITTED
            subtask.commit_sha = existing
            record_version(session, subtask, existing)
            ctx.record(
                session, "subtask.recovered", f"Subtask {subtask.position} was already committed"
            )
            return
        subtask.state = SubtaskState.EDITING
        position, title = subtask.position, subtask.title
        wip = subtask.wip_patch
    # Whatever a dead attempt left uncommitted is discarded: the subtask is redone whole,
    # except the work its agent had done when it stopped to ask (asking.restore_wip).
    workspace.discard_changes()
    ctx.emit("subtask.started", f"Subtask {position}: {title}", position=position, title=title)
    prompt += asking.restore_wip(ctx, workspace, position, wip)

    # Both live as long as this subtask; the agent's session ends first, then its proxy.
    with ExitStack() as proxies, ExitStack() as sessions:
        # Chosen before any work: an executor that cannot run here (its CLI missing) fails the
        # job with how to fix it, before the subtask is touched.
        executor = create_executor(config.executors[phase])
        assert work.sandbox is not None  # job_workspace(commands=True)
        # The egress proxy, for an agent inside the sandbox, opened when it first asks.
        egress = AgentEgress(ctx, config.backend, work.sandbox.policy, proxies)
        agent = executor.start(
            workbench(ctx, work, config, phase, egress),
            Assignment(f"subtask-{position}", instructions, prompt),
        )
        # A session holding a process (an ACP agent) stops it in close().
        sessions.callback(getattr(agent, "close", lambda: None))

        def turn(text: str) -> ExecutorReport:
            # The agent may stop to ask: within the bound the task pauses here (Paused),
            # past it the agent is told to go on with its leaning.
            for _ in range(asking.MAX_LEANINGS + 1):
                try:
                    return agent.turn(text)
                except QuestionAsked as asked:
                    text = asking.ask_or_lean(
                        ctx,
                        subtask_id,
                        phase,
                        asked.question,
                        executor.report_hint,
                        wip=asking.keep_wip(ctx, workspace, position),
                    )
                finally:
                    egress.check()  # a call refused for a spent budget: BudgetReached
            raise AgentOutputError(
                f"Subtask {position}: the agent kept asking after being told to go on with "
                f"its own leaning ({asking.MAX_LEANINGS} times)."
            )

        report: ExecutorReport | None = None
        results: list[dict[str, object]] = []
        asked = False  # why nothing changed
        attempts = ctx.settings.verify_attempts
        for attempt in range(1, attempts + 1):
            report = turn(prompt)
            ctx.check_cancelled()
            changed = workspace.changed_files()
            if not changed and report.no_change_reason is None and not asked:
                # Nothing changed and not a word why: a deliberate "no change needed" or a
                # forgotten edit? Ask once rather than let an empty subtask pass unexplained.
                asked = True
                ctx.emit(
                    "subtask.nothing_changed", f"Subtask {position}: no file changed; asking why"
                )
                report = turn(prompts.nothing_changed(executor.report_hint))
                ctx.check_cancelled()
                changed = workspace.changed_files()
            if not changed:
                ctx.emit("verify.skipped", f"Subtask {position} changed nothing: nothing to verify")
                break
            if not verify_commands:
                ctx.emit("verify.skipped", "No verify commands are configured for this project")
                break
            _set_state(ctx, subtask_id, SubtaskState.VERIFYING)
            results = run_verification(ctx, work.sandbox, verify_commands, config.command_timeout)
            passed = all(r["ok"] for r in results)
            _record_verification(ctx, subtask_id, results, attempt, passed)
            if passed:
                break
            if attempt == attempts:
                _set_state(ctx, subtask_id, SubtaskState.FAILED)
                failing = ", ".join(str(r["command"]) for r in results if not r["ok"])
                raise VerificationFailed(
                    f"Subtask {position} ({title}): verification still fails after {attempts} "
                    f"attempt(s): {failing}"
                )
            _set_state(ctx, subtask_id, SubtaskState.EDITING)
            prompt = (
                "The project's verify commands fail after your change. Fix the code so they pass "
                f"(do not weaken or delete tests), then {executor.report_hint} again.\n\n"
                + failure_report(results)
            )
            ctx.emit(
                "subtask.fixing", f"Subtask {position}: verification failed, attempt {attempt + 1}"
            )

    assert report is not None
    ctx.check_cancelled()
    with ctx.db.session() as session:
        subtask = session.get(Subtask, subtask_id)
        assert subtask is not None
        sha = workspace.commit_all(commit_message(subtask, report.summary))
        crash_point("subtask.committed")  # committed in git, not yet in the store
        if sha:
            # Published before it is recorded: a resumed job on any machine finds every
            # commit the records name (see Mirror.adopt_published).
            publish_progress(ctx, mirror, workspace.branch, sha)
        # An empty subtask's summary is why nothing changed (the API shows it as
        # no_change_reason); without one, it says the agent gave none.
        reason = report.no_change_reason or NO_REASON
        subtask.summary = report.summary if sha else reason
        subtask.decisions = list(report.decisions)
        subtask.commit_sha = sha
        if sha:
            record_version(session, subtask, sha)
        subtask.state = SubtaskState.COMMITTED if sha else SubtaskState.EMPTY
        subtask.wip_patch = None  # done with: its work is in the commit
        if not verify_commands or not sha:
            subtask.verified = None
        # The written update, with the record it describes (see errands.workflow.progress).
        subtask.progress = progress.note(subtask.task, subtask)
        ctx.record(session, "subtask.progress", subtask.progress, position=position)
        forge_for(ctx.settings, subtask.task.project).nudge(session, subtask.task.project)
    if sha:
        ctx.emit("subtask.committed", f"Subtask {position} committed as {sha[:10]}", sha=sha)
    else:
        ctx.emit(
            "subtask.empty",
            f"Subtask {position} changed nothing; no commit. Why: {reason}",
            reason=reason,
        )


def workbench(
    ctx: JobContext,
    work: JobWorkspace,
    config: EffectiveConfig,
    phase: ExecutorPhase,
    egress: AgentEgress,
) -> Workbench:
    assert work.sandbox is not None  # job_workspace(commands=True)
    try:
        model: str | None = ctx.settings.model_for("execute")
    except ConfigError:
        model = None
    return Workbench(
        task_id=ctx.task_id,
        job_id=ctx.lease.job_id,
        phase=phase,
        path=work.path,
        sandbox=work.sandbox,
        backend=config.backend,
        tools=work.tools,
        agent=ctx.agent_config("execute"),
        recorder=ctx,
        cancel=ctx.cancel,
        command_timeout=config.command_timeout,
        state_dir=ctx.settings.home / "executors" / f"task-{ctx.task_id}",
        model=model,
        mcp_servers=config.mcp_servers,
        acp_command=config.acp_command,
        acp_provider=config.acp_provider,
        egress=egress,
    )


def _set_state(ctx: JobContext, subtask_id: int, state: SubtaskState) -> None:
    with ctx.db.session() as session:
        subtask = session.get(Subtask, subtask_id)
        assert subtask is not None
        subtask.state = state


def _record_verification(
    ctx: JobContext, subtask_id: int, results: list[dict[str, object]], attempt: int, passed: bool
) -> None:
    with ctx.db.session() as session:
        subtask = session.get(Subtask, subtask_id)
        assert subtask is not None
        subtask.verification = results
        subtask.verify_attempts = attempt
        subtask.verified = passed


def observe_branch(ctx: JobContext, mirror: Mirror, branch: str) -> None:
    """Right after :meth:`Mirror.fetch`: remember origin's copy of ``branch`` as this attempt
    found it, the expected value of its first publication."""
    ctx.origin_tips[branch] = mirror.resolve(mirror.base_ref(branch))


def publish_branch(ctx: JobContext, mirror: Mirror, branch: str, head: str) -> None:
    """Move origin's copy of ``branch`` to ``head``, only from where this attempt last saw
    it: if another attempt took the job over and published, this one raises (LeaseLost if
    its lease is gone, else BranchMoved: retried from origin's copy)."""
    ctx.check_lease()
    if ctx.origin_tips.get(branch) == head:
        # Pushed from here already (the last subtask's commit is the review round's head):
        # a push of the same value would only make another round trip. Whoever could have
        # moved origin's copy since is a newer attempt, which has taken the lease just
        # checked; the next publication's compare-and-swap still catches anyone else.
        return
    try:
        ctx.origin_tips[branch] = mirror.publish(
            branch, commit=head, expected=ctx.origin_tips[branch]
        )
    except BranchMoved:
        ctx.check_lease()
        raise


def publish_progress(ctx: JobContext, mirror: Mirror, branch: str, head: str) -> None:
    try:
        publish_branch(ctx, mirror, branch, head)
    except BranchMoved:
        raise
    except GitError as exc:
        # A read-only origin: this machine can still finish the task; only a resume on
        # another machine would have to redo the subtask.
        ctx.emit("branch.publish_failed", f"Could not push {branch} to the project: {exc}")
