"""`errands logs` prints a task's whole log, however long, with or without --follow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from errands import runtime
from errands.domain import TaskState
from errands.store import Task
from errands.store import events as event_log
from errands.workflow import actions
from tests.support import settings_for

EVENTS = 2_345  # more than two of the store's 1,000-event pages


def test_logs_prints_every_event_past_one_page(home: Path, sample_repo: Path) -> None:
    settings = settings_for(home, "http://127.0.0.1:9/v1")
    db = runtime.open_database(settings)
    try:
        with db.session() as s:
            project = actions.add_project(s, settings, str(sample_repo))
            task_id = actions.create_task(s, settings, project.name, "Long log", "body").id
        with db.session() as s:
            for n in range(EVENTS):
                event_log.record(s, "test.step", f"step {n}", task_id=task_id)
            # resting, so --follow returns once it has printed everything
            s.get_one(Task, task_id).state = TaskState.CANCELLED
        with db.session() as s:
            expected = [e.id for e in event_log.list_events(s, task_id=task_id, limit=10**6)]
    finally:
        db.dispose()
    assert len(expected) > EVENTS

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERRANDS_", "OPENAI_"))}
    env["ERRANDS_HOME"] = str(home)

    def logs(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "errands.cli", "logs", str(task_id), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    for args in ((), ("--follow",)):
        printed = [json.loads(line)["id"] for line in logs(*args, "--json").splitlines()]
        assert printed == expected, args
    text = logs().splitlines()
    assert len(text) == len(expected)
    assert "Research queued" in text[1] and f"step {EVENTS - 1}" in text[-1]
    # --after pages on from the given id, to the end as well
    after = logs("--after", str(expected[10]), "--json").splitlines()
    assert [json.loads(line)["id"] for line in after] == expected[11:]
