"""Pull request text: the hand-off description, the subtask list, the link to the issue."""

from __future__ import annotations

from errands.store import Task

MAX_PR_BODY = 65_000  # GitHub refuses bodies over 65,536 characters


def pull_title(task: Task) -> str:
    return task.title[:256]


def pull_body(task: Task) -> str:
    subtasks = [
        f"- [x] {s.title}" + (f" (`{s.commit_sha[:10]}`)" if s.commit_sha else "")
        for s in task.subtasks
        if s.commit_sha
    ]
    head = []
    if task.github_issue is not None:
        # "Closes #n" links the pull request to the issue and closes it on merge.
        head += [f"Closes #{task.github_issue}", ""]
    head += ["## Subtasks (one commit each)", "", *subtasks, ""]
    body = "\n".join(head) + "\n" + (task.handoff or "")
    footer = f"\n\n_Opened by Errands for task {task.id}. Review here or in Errands._"
    return body[: MAX_PR_BODY - len(footer)] + footer
