"""Entities' enumerations and the task state machine. Pure: no I/O."""

from __future__ import annotations

from enum import StrEnum

from errands.errors import IllegalTransition


class TaskState(StrEnum):
    CREATED = "created"
    RESEARCHING = "researching"
    AWAITING_ANSWERS = "awaiting_answers"
    READY = "ready"
    EXECUTING = "executing"
    IN_REVIEW = "in_review"
    REVISING = "revising"
    MERGED = "merged"
    FAILED = "failed"
    CANCELLED = "cancelled"


def state_words(state: str) -> str:
    """A state as people read it ("awaiting answers", "in review"): what messages, log lines
    and pages say, where the identifier itself stays for programs."""
    return state.replace("_", " ")


class JobKind(StrEnum):
    INDEX = "index"
    RESEARCH = "research"
    EXECUTE = "execute"
    REVISE = "revise"
    MERGE = "merge"
    REBASE = "rebase"  # restack a task under review onto its base branch's new tip
    GITHUB = "github"  # process webhook deliveries and push state to GitHub, per project


class NotifyEvent(StrEnum):
    """What a user may be told about a task (errands.notifications)."""

    NEEDS_ANSWERS = "needs_answers"
    READY_FOR_REVIEW = "ready_for_review"
    FAILED = "failed"
    MERGED = "merged"
    REVIEW_REPLY = "review_reply"


# The task states whose arrival is a notification.
NOTIFY_ON_STATE: dict[str, NotifyEvent] = {
    "awaiting_answers": NotifyEvent.NEEDS_ANSWERS,
    "in_review": NotifyEvent.READY_FOR_REVIEW,
    "failed": NotifyEvent.FAILED,
    "merged": NotifyEvent.MERGED,
}


def notify_event(kind: str, data: dict[str, object]) -> NotifyEvent | None:
    """The notification an event of the log is, if any: a task arriving in a state someone
    must act on (or learn of), or a reply in a review thread."""
    if kind == "task.state":
        return NOTIFY_ON_STATE.get(str(data.get("state")))
    if kind == "review.comment" and data.get("parent_id") is not None:
        return NotifyEvent.REVIEW_REPLY
    return None


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SubtaskState(StrEnum):
    PLANNED = "planned"
    EDITING = "editing"
    VERIFYING = "verifying"
    COMMITTED = "committed"
    EMPTY = "empty"  # the agent decided nothing had to change: no commit
    FAILED = "failed"


class CommentKind(StrEnum):
    BLOCKING = "blocking"
    SUGGESTION = "suggestion"


class Side(StrEnum):
    OLD = "old"
    NEW = "new"


ACTIVE_STATES = frozenset(
    {
        TaskState.CREATED,
        TaskState.RESEARCHING,
        TaskState.AWAITING_ANSWERS,
        TaskState.READY,
        TaskState.EXECUTING,
        TaskState.IN_REVIEW,
        TaskState.REVISING,
    }
)
TERMINAL_STATES = frozenset({TaskState.MERGED, TaskState.CANCELLED})

_FORWARD: dict[TaskState, frozenset[TaskState]] = {
    TaskState.CREATED: frozenset({TaskState.RESEARCHING}),
    TaskState.RESEARCHING: frozenset({TaskState.AWAITING_ANSWERS, TaskState.READY}),
    TaskState.AWAITING_ANSWERS: frozenset({TaskState.READY, TaskState.REVISING}),
    TaskState.READY: frozenset({TaskState.EXECUTING}),
    # The executing or revising agent may stop to ask (errands.workflow.asking); an answer
    # to a revise round's question resumes the revision.
    TaskState.EXECUTING: frozenset({TaskState.IN_REVIEW, TaskState.AWAITING_ANSWERS}),
    TaskState.IN_REVIEW: frozenset({TaskState.REVISING, TaskState.MERGED}),
    TaskState.REVISING: frozenset({TaskState.IN_REVIEW, TaskState.AWAITING_ANSWERS}),
    # A retry resumes the stage that failed.
    TaskState.FAILED: frozenset(
        {TaskState.RESEARCHING, TaskState.EXECUTING, TaskState.REVISING, TaskState.IN_REVIEW}
    ),
    TaskState.MERGED: frozenset(),
    TaskState.CANCELLED: frozenset(),
}


def allowed_transitions(current: TaskState) -> frozenset[TaskState]:
    targets = set(_FORWARD[current])
    if current in ACTIVE_STATES:
        targets |= {TaskState.FAILED, TaskState.CANCELLED}
    if current is TaskState.FAILED:
        targets.add(TaskState.CANCELLED)
    return frozenset(targets)


def check_transition(current: TaskState, target: TaskState) -> TaskState:
    """Return ``target`` if the state machine allows ``current → target``; raise otherwise."""
    if target not in allowed_transitions(current):
        allowed = ", ".join(sorted(allowed_transitions(current))) or "none (final state)"
        raise IllegalTransition(
            f"A task cannot go from '{current}' to '{target}' "
            f"(allowed from '{current}': {allowed})."
        )
    return target
