"""Stacked pull requests: a task of a project with ``stacked_pulls`` is published as one pull
request per subtask, linked as a GitHub stack, and landed through GitHub's stack merge.

GitHub documents the API (public preview, REST version 2022-11-28): ``POST /stacks`` links
open pull requests, bottom to top, whose bases chain (each one's base is the head branch of
the one below); ``POST /stacks/{n}/add`` puts more on top; a stacked pull request merges only
through ``PUT /pulls/{n}/merge-async`` (polled with ``GET …/merge-async/{uuid}``), which lands
every pull request of the stack up to ``n``, bottom-up, atomically.

The layout: subtask k < n (of n) is published as branch ``<task branch>-<k>`` at its commit;
the top subtask's pull request has the task branch itself as its head, so the task's pull
request (``Task.github_pr``) is the top of the stack: approving or merging it lands the whole
stack, and review on it works as for a single pull request. Subtask branches move with the
stack (a revise round, a rebase) by compare-and-swap pushes from where origin had them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from errands.errors import GitError
from errands.git import Mirror
from errands.github.errors import GitHubError, PullNotMergeable
from errands.github.pulls import pull_body, pull_title
from errands.github.rest import RepoAPI
from errands.store import ReviewComment, Task
from errands.store import events as event_log
from errands.workflow.context import JobContext

Json = dict[str, Any]

MERGE_POLL = 0.5  # seconds between polls of an asynchronous merge
MERGE_WAIT = 600.0  # give up waiting for GitHub's merge after this long


# -- the REST calls -------------------------------------------------------------------------


def stack_of(api: RepoAPI, pull: int) -> Json | None:
    """The stack ``pull`` belongs to, or None."""
    found = list(api.client.paginate(f"/repos/{api.full_name}/stacks", {"pull_request": pull}))
    return found[0] if found else None


def create_stack(api: RepoAPI, pulls: list[int]) -> Json:
    data: Json = api.client.json(
        "POST", f"/repos/{api.full_name}/stacks", json={"pull_requests": pulls}
    )
    return data


def add_to_stack(api: RepoAPI, stack: int, pulls: list[int]) -> Json:
    data: Json = api.client.json(
        "POST", f"/repos/{api.full_name}/stacks/{stack}/add", json={"pull_requests": pulls}
    )
    return data


def merge_stack(
    api: RepoAPI, number: int, *, sha: str, title: str, message: str, wait: float = MERGE_WAIT
) -> str:
    """Land the stack up to ``number`` (squashing each) if that pull request's head is still
    ``sha``; return the commit the base branch ends on."""
    base = f"/repos/{api.full_name}/pulls/{number}/merge-async"
    result: Json = api.client.json(
        "PUT",
        base,
        json={
            "merge_method": "squash",
            "sha": sha,
            "commit_title": title,
            "commit_message": message,
        },
    )
    deadline = time.monotonic() + wait
    while result.get("status") == "pending":
        key = str(result.get("details", {}).get("uuid", ""))
        if not key or time.monotonic() > deadline:
            raise GitHubError(f"GitHub did not finish merging the stack of #{number} in time.")
        time.sleep(MERGE_POLL)
        result = api.client.json("GET", f"{base}/{key}")
    status, details = result.get("status"), result.get("details") or {}
    if status == "merged":
        return str(details["sha"])
    if status == "enqueued":
        raise PullNotMergeable(
            f"GitHub put the stack of #{number} in its merge queue; it lands from there.",
            files=[],
        )
    raise PullNotMergeable(
        f"GitHub refused to merge the stack of #{number}: {details.get('message', status)}",
        files=[],
    )


# -- publishing ---------------------------------------------------------------------------


def pull_for_comment(session: Session, task: Task, comment: ReviewComment) -> int:
    """The pull request a review comment made in Errands goes to: in a stack, the own pull
    request of the subtask its thread was left on (whose diff holds its lines), else the
    task's."""
    root = session.get(ReviewComment, comment.parent_id) if comment.parent_id else comment
    where = root.subtask_id if root is not None else None
    subtask = next((s for s in task.subtasks if s.id == where), None)
    if subtask is not None and subtask.github_pr is not None:
        return subtask.github_pr
    return int(task.github_pr or 0)


@dataclass(frozen=True)
class Layer:
    subtask_id: int
    position: int
    title: str
    commit: str
    pull: int | None
    head: str  # its pull request's head branch
    base: str  # and base branch


def layers_of(task: Task) -> list[Layer]:
    """The task's committed subtasks as stack layers: heads and bases chained."""
    committed = [s for s in task.subtasks if s.commit_sha]
    published = [i for i, s in enumerate(committed) if s.github_pr]
    if published:
        # GitHub cannot insert into a stack nor change a stacked pull request's base: subtasks
        # a revise round added on top ride on the top pull request (the task branch's).
        committed = committed[: published[-1] + 1]
    branch = str(task.branch)
    found: list[Layer] = []
    for k, subtask in enumerate(committed, start=1):
        head = branch if k == len(committed) else f"{branch}-{k}"
        base = found[-1].head if found else task.base_branch
        commit, pull = str(subtask.commit_sha), subtask.github_pr
        found.append(Layer(subtask.id, k, subtask.title, commit, pull, head, base))
    return found


def stack_body(task: Task, layers: list[Layer], position: int) -> str:
    """One pull request's description: where it sits in the stack, then the whole stack's
    hand-off (which names every subtask's commit, so the sync leaves it alone until the
    stack changes)."""
    lines = [f"**Stacked pull requests** (Errands task {task.id}; land from the top):", ""]
    for layer in reversed(layers):
        here = " ← this one" if layer.position == position else ""
        number = f"#{layer.pull}" if layer.pull else "(opening)"
        lines.append(f"{layer.position}. {number} {layer.title}{here}")
    return "\n".join(lines) + "\n\n---\n\n" + pull_body(task)


def publish(ctx: JobContext, api: RepoAPI, mirror: Mirror | None, task_id: int) -> Mirror | None:
    """Bring one stacked task's pull requests up to date: subtask branches pushed, one pull
    request per subtask (found before it is opened), the stack linked, descriptions naming
    each other. Returns the mirror (opened and fetched once per sync)."""
    with ctx.db.session() as session:
        task = session.get_one(Task, task_id)
        origin, layers = task.project.origin, layers_of(task)
        # A task with its one pull request from before the project stacked keeps it.
        single = task.github_pr is not None and not any(s.github_pr for s in task.subtasks)
    if single or not layers:
        return mirror
    if mirror is None:
        mirror = ctx.mirror(origin)
        mirror.fetch()
    for layer in layers[:-1]:  # the top one's head is the task branch, published by its job
        if mirror.resolve(mirror.base_ref(layer.head)) != layer.commit:
            ctx.check_lease()  # a sync job that lost its lease pushes nothing
            try:
                mirror.publish(layer.head, commit=layer.commit)
            except GitError as exc:
                raise GitHubError(f"Could not push {layer.head}: {exc}") from exc
    numbers: list[int] = []
    for layer in layers:
        pull = api.pull(layer.pull) if layer.pull else api.pull_for_branch(layer.head)
        if pull is None or pull.get("state") != "open":
            ctx.check_cancelled()
            with ctx.db.session() as session:
                task = session.get_one(Task, task_id)
                title = f"[{layer.position}/{len(layers)}] {layer.title}"[:256]
                body = stack_body(task, layers, layer.position)
            pull = api.create_pull(title=title, body=body, head=layer.head, base=layer.base)
        numbers.append(int(pull["number"]))
    _record(ctx, task_id, layers, numbers)
    with ctx.db.session() as session:
        task = session.get_one(Task, task_id)
        layers, stack = layers_of(task), task.github_stack
    if stack is None and len(numbers) > 1:
        found = stack_of(api, numbers[-1]) or create_stack(api, numbers)
        stack = int(found["number"])
        with ctx.db.session() as session:
            session.get_one(Task, task_id).github_stack = stack
    for layer in layers:
        with ctx.db.session() as session:
            body = stack_body(session.get_one(Task, task_id), layers, layer.position)
        current = api.pull(int(layer.pull or 0))
        if current.get("body") != body and current.get("state") == "open":
            api.update_pull(int(layer.pull or 0), body=body)
    return mirror


def _record(ctx: JobContext, task_id: int, layers: list[Layer], numbers: list[int]) -> None:
    with ctx.db.session() as session:
        task = session.get_one(Task, task_id)
        by_id = {s.id: s for s in task.subtasks}
        new = [n for layer, n in zip(layers, numbers, strict=True) if layer.pull != n]
        for layer, number in zip(layers, numbers, strict=True):
            by_id[layer.subtask_id].github_pr = number
        if task.github_pr != numbers[-1]:
            task.github_pr = numbers[-1]
        if new:
            event_log.record(
                session,
                "github.pr_opened",
                f"Stacked pull requests {', '.join(f'#{n}' for n in numbers)} for "
                f"{task.branch} (one per subtask, bottom to top)",
                task_id=task.id,
                project_id=task.project_id,
                job_id=ctx.lease.job_id,
                data={"pulls": numbers, "title": pull_title(task)},
            )
