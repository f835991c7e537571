"""The lines Errands writes into its commit messages, and reads back to resume.

A task's id is only unique within one Errands database, and branch names are built from it;
two installs (or one whose database was reset) working on the same repository would see
each other's ``errands/1-…`` branches and commits. So every commit also carries a key made
of the task's id and creation time, and resuming adopts only commits bearing this task's key.
"""

from __future__ import annotations

from errands.store import Task

TASK = "Errands-Task"
TASK_KEY = "Errands-Task-Key"
SUBTASK = "Errands-Subtask"


def key_line(task: Task) -> str:
    return f"{TASK_KEY}: {task.id}.{task.created_at:%Y%m%d%H%M%S%f}"


def task_lines(task: Task) -> str:
    return f"{TASK}: {task.id}\n{key_line(task)}\n"
