"""The API server and the workers on different machines: the server's own mirror may never
have held a task's branch (each worker has its own data directory and publishes the branch
to the project's origin). Approving must still work: it counts approvals of the head the task
came back for review with. (Found by the PostgreSQL chaos run, where every task stayed in
review: approve answered 409 "no branch to review" on the driver's machine.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from errands.testing.scripted_llm import ScriptedLLM
from tests.support import CalcScript, running_server, settings_for, to_review, wait_for_state


def test_approve_on_a_machine_whose_mirror_never_held_the_branch(
    home: Path, sample_repo: Path
) -> None:
    with ScriptedLLM(CalcScript()) as llm:
        settings = settings_for(home, llm.base_url)
        with running_server(settings) as url:
            client = httpx.Client(base_url=url, timeout=30)
            task_id, task = to_review(client, sample_repo)
            branch = task["branch"]
            mirror = next(settings.mirrors_dir.glob("project-*.git"))
            # As on a server machine whose workers are elsewhere: no local copy of the branch.
            subprocess.run(
                ["git", "update-ref", "-d", f"refs/heads/{branch}"], cwd=mirror, check=True
            )
            approved = client.post(f"/api/tasks/{task_id}/approve")
            assert approved.status_code == 200, approved.text
            wait_for_state(client, task_id, "merged")
    landed = subprocess.run(
        ["git", "show", "main:calc.py"], cwd=sample_repo, check=True, capture_output=True, text=True
    ).stdout
    assert "def multiply" in landed
