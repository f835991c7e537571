"""Progress notes: after each subtask, one paragraph a person can read between other work —
what is done, how it was verified, what comes next. Written from what the stage recorded
(no model call), so it costs nothing and says only what happened."""

from __future__ import annotations

from errands.domain import SubtaskState
from errands.store import Subtask, Task

MAX_SUMMARY = 600  # characters of the agent's summary quoted


def _verified(subtask: Subtask) -> str:
    if subtask.state == SubtaskState.EMPTY:
        return "Nothing changed, so there was nothing to verify."
    if not subtask.verification:
        return "Not verified: the project has no verify commands."
    commands = ", ".join(f"`{r.get('command')}`" for r in subtask.verification)
    tries = subtask.verify_attempts
    after = f" (after {tries} attempts)" if tries > 1 else ""
    if subtask.verified:
        return f"Verified: {commands} passed{after}."
    return f"Verification did not pass: {commands}{after}."


def _next(task: Task, subtask: Subtask) -> str:
    later = [
        s
        for s in task.subtasks
        if s.position > subtask.position
        and s.state not in (SubtaskState.COMMITTED, SubtaskState.EMPTY)
    ]
    if later:
        following = later[0]
        return f"Next: subtask {following.position}, {following.title}."
    return "Next: the hand-off, then the branch goes to review."


def note(task: Task, subtask: Subtask) -> str:
    """The paragraph for ``subtask``, just finished (its state, summary and verification
    recorded)."""
    total = len(task.subtasks)
    summary = " ".join((subtask.summary or "").split())
    if len(summary) > MAX_SUMMARY:
        summary = summary[: MAX_SUMMARY - 1] + "…"
    if subtask.state == SubtaskState.EMPTY:
        done = f"Subtask {subtask.position} of {total}, {subtask.title}, needed no change: "
    else:
        sha = (subtask.commit_sha or "")[:10]
        done = f"Subtask {subtask.position} of {total}, {subtask.title}, is done ({sha}): "
    return f"{done}{summary.rstrip('.')}. {_verified(subtask)} {_next(task, subtask)}"


def status_comment(task: Task) -> str:
    """The body of the task's one status comment on GitHub: every note so far, newest last
    (edited as the work goes on, never a new comment each time)."""
    notes = [f"- {s.progress}" for s in task.subtasks if s.progress]
    head = f"**Errands progress** on this task ({task.state.replace('_', ' ')}):"
    return "\n".join([head, "", *notes])
