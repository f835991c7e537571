"""The hand-off document: what a reviewer reads first."""

from __future__ import annotations

from errands.domain import SubtaskState
from errands.store import Task

NOTHING_TO_MERGE = (
    "**Nothing to merge: no subtask changed anything**, so the branch is the same as its base "
    "and approving is refused. Each subtask below says why it made no change. If nothing "
    "needs to change, cancel the task; otherwise hand off a new task that says what must."
)


def no_change(task: Task) -> bool:
    """Every subtask finished and none changed anything: nothing to review or merge."""
    subtasks = task.subtasks
    return bool(subtasks) and all(s.state == SubtaskState.EMPTY for s in subtasks)


def render(task: Task) -> str:
    research = task.research or {}
    lines = [f"# {task.title}", ""]
    if no_change(task):
        lines += [NOTHING_TO_MERGE, ""]
    if research.get("overview"):
        lines += ["## Overview", "", str(research["overview"]), ""]
    lines += ["## What was built", ""]
    for sub in task.subtasks:
        commit = f"`{sub.commit_sha[:10]}`" if sub.commit_sha else "(no commit)"
        lines.append(f"### {sub.position}. {sub.title} — {commit}")
        lines.append("")
        if sub.state == SubtaskState.EMPTY:
            lines += [f"No change: {sub.summary}", ""]
        elif sub.summary:
            lines += [sub.summary, ""]
        if sub.decisions:
            lines += ["Decisions:", *[f"- {d}" for d in sub.decisions], ""]
        lines += [_verification_line(sub.verified, sub.verification, sub.verify_attempts), ""]
    if task.requirements:
        lines += ["## Requirements", "", *[f"- {r}" for r in task.requirements], ""]
    if task.questions:
        lines += ["## Questions and answers", ""]
        for q in task.questions:
            asked = f" (asked during subtask {q.subtask_position})" if q.subtask_position else ""
            lines.append(f"**Q{q.position}. {q.text}**{asked}")
            lines.append(f"A: {_answer(q.options, q.answer_option, q.answer_text)}")
            lines.append("")
    if task.out_of_scope:
        lines += ["## Out of scope", "", *[f"- {item}" for item in task.out_of_scope], ""]
    comments = [c for c in task.comments if c.parent_id is None]
    if comments:
        lines += ["## Review comments", ""]
        for c in comments:
            state = "resolved" if c.resolved else "open"
            lines.append(f"- {c.path}:{c.line} ({c.kind}, {state}): {c.body}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _verification_line(verified: bool | None, results: list[object], attempts: int) -> str:
    if verified is None:
        return "Verification: no verify commands configured."
    commands = ", ".join(
        f"`{r['command']}` ({'passed' if r['ok'] else 'failed'})"
        for r in results
        if isinstance(r, dict)
    )
    verdict = "passed" if verified else "FAILED"
    return f"Verification {verdict} after {attempts} attempt(s): {commands}"


def _answer(options: list[object], option: int | None, text: str | None) -> str:
    parts = []
    if option is not None and 1 <= option <= len(options):
        chosen = options[option - 1]
        if isinstance(chosen, dict):
            parts.append(f"{chosen.get('label')} — {chosen.get('requirement')}")
    if text:
        parts.append(text)
    return " / ".join(parts) or "(unanswered)"
