"""Where each open review comment of a revise round goes: a fix inside one subtask of the
stack, or new work in a new subtask on top. The agent decides, one line of reason per comment,
through a structured answer that is checked against the comments and subtasks that exist: a
wrong answer goes back to it to fix, within the output retries. An agent that never answers
validly (or a comment it cannot route) loses nothing: those comments go where they were left.

The comments are people's text: each enters the prompt in its own framed block, its number and
where it was left written by Errands outside the block, so no comment can speak for another.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from errands.agent import prompts
from errands.agent.loop import run_agent
from errands.agent.schemas import CommentRouting
from errands.errors import AgentOutputError
from errands.workflow.context import JobContext
from errands.workflow.workspaces import JobWorkspace

RoutedBy = Literal["agent", "where-left"]


@dataclass(frozen=True)
class Placed:
    """An open comment as the router sees it."""

    comment_id: int
    subtask_id: int | None  # the committed subtask whose diff it was left on (None: elsewhere)
    description: str  # kind, place, body and replies (people's text)


@dataclass(frozen=True)
class StackEntry:
    """A committed subtask a fix may go into."""

    subtask_id: int
    position: int
    title: str
    steps: list[str]


@dataclass(frozen=True)
class Route:
    comment_id: int
    subtask_id: int | None  # the subtask the fix goes into; None: a new subtask on top
    reason: str
    by: RoutedBy

    def stored(self, position: int | None) -> dict[str, Any]:
        """As kept with the comment and shown to reviewers (``subtask``: a position)."""
        return {
            "kind": "new" if self.subtask_id is None else "fix",
            "subtask": position,
            "reason": self.reason,
            "by": self.by,
        }


def where_left(comments: list[Placed], stack: list[StackEntry], why: str = "") -> list[Route]:
    """The routing without an agent: a comment on a subtask's diff fixes that subtask; any
    other becomes new work."""
    positions = {s.subtask_id: s.position for s in stack}
    routes = []
    for c in comments:
        if c.subtask_id in positions:
            reason = f"left on subtask {positions[c.subtask_id]}'s diff"
            routes.append(Route(c.comment_id, c.subtask_id, reason + why, "where-left"))
        else:
            routes.append(Route(c.comment_id, None, "left on the whole branch" + why, "where-left"))
    return routes


def check(routing: CommentRouting, comments: list[Placed], stack: list[StackEntry]) -> None:
    """Refuse (ValueError, every problem named) a routing that is not one entry per listed
    comment, each into a listed subtask or "new", with a reason."""
    listed = [c.comment_id for c in comments]
    positions = [s.position for s in stack]
    given = Counter(r.comment for r in routing.routes)
    problems = [
        f"Comment {n} is not one of the listed comments ({_numbers(listed)})."
        for n in given
        if n not in listed
    ]
    problems += [
        f"Comment {n} is routed {k} times; route it once." for n, k in given.items() if k > 1
    ]
    problems += [
        f"Comment {n} has no entry; every listed comment needs one."
        for n in listed
        if n not in given
    ]
    problems += [
        f"Comment {r.comment}: there is no subtask {r.into}; into is one of "
        f'{_numbers(positions)} or "new".'
        for r in routing.routes
        if r.into != "new" and r.into not in positions
    ]
    if problems:
        raise ValueError(" ".join(problems))


def route(
    ctx: JobContext,
    work: JobWorkspace,
    *,
    task_prompt: str,
    comments: list[Placed],
    stack: list[StackEntry],
) -> list[Route]:
    """Ask the agent where each comment goes (read-only tools: it may look at the code)."""
    try:
        routing = run_agent(
            ctx.agent_config("execute"),
            name="route",
            instructions=prompts.ROUTE,
            prompt=_prompt(task_prompt, comments, stack),
            output_type=CommentRouting,
            tools=work.tools.read_only(),
            recorder=ctx,
            check=lambda answer: check(answer, comments, stack),
        ).output
    except AgentOutputError as exc:
        ctx.emit(
            "revise.routing_refused",
            "The agent gave no valid routing of the comments; each goes where it was left",
            error=str(exc),
        )
        return where_left(comments, stack, " (the agent gave no valid routing)")
    ctx.check_cancelled()
    by_position = {s.position: s.subtask_id for s in stack}
    return [
        Route(
            r.comment,
            None if r.into == "new" else by_position[r.into],
            # One line, whatever the model sent; stored and shown, so redacted like an event.
            str(ctx.redact(" ".join(r.reason.split()))),
            "agent",
        )
        for r in sorted(routing.routes, key=lambda r: _listed_order(comments, r.comment))
    ]


def _listed_order(comments: list[Placed], comment_id: int) -> int:
    return next(i for i, c in enumerate(comments) if c.comment_id == comment_id)


def _prompt(task_prompt: str, comments: list[Placed], stack: list[StackEntry]) -> str:
    positions = {s.subtask_id: s.position for s in stack}
    subtasks = "\n".join(
        f"Subtask {s.position}:\n"
        + prompts.frame("subtask", f"{s.title}\nSteps:\n{prompts.bullet(s.steps)}")
        for s in stack
    )
    listed = "\n".join(
        f"Comment {c.comment_id}, "
        + (
            f"left on subtask {positions[c.subtask_id]}'s diff:\n"
            if c.subtask_id in positions
            else "left on the whole branch:\n"
        )
        + prompts.frame("review", c.description)
        for c in comments
    )
    return (
        f"{task_prompt}\n\nThe stack, bottom first:\n{subtasks}\n\n"
        f"The open review comments:\n{listed}"
    )


def _numbers(values: list[int]) -> str:
    return ", ".join(map(str, values)) or "none"
