"""Posting on GitHub stays exactly-once when the worker dies between posting and recording:
``errands worker`` processes with crash points right after the questions comment is posted
and right after the pull request is opened SIGKILL themselves there; the job, taken over by a
new worker, finds what was posted (by its marker, by its branch) instead of posting again."""

from __future__ import annotations

from pathlib import Path

import httpx

from errands.testing.fake_github import FakeGitHub
from errands.testing.scripted_llm import ScriptedLLM
from errands.testing.workload import Fleet, worker_env
from tests.github.conftest import APP_ID, REPO, KeyPair, app_settings, deliver, envelope
from tests.github.test_webhooks import github_task, install, task_for_issue
from tests.support import CalcScript, running_server, wait_for


def test_a_worker_killed_between_posting_and_recording_posts_once(
    home: Path, fake_github: FakeGitHub, app_key: KeyPair, tmp_path: Path
) -> None:
    fake = fake_github
    with ScriptedLLM(CalcScript()) as llm:
        settings = app_settings(
            home,
            llm.base_url,
            fake,
            app_key,
            job_lease_seconds=2.0,  # a killed worker's job is taken over soon
        )
        env = worker_env(
            settings,
            ERRANDS_GITHUB_API_URL=fake.base_url,
            ERRANDS_GITHUB_APP_ID=APP_ID,
            ERRANDS_GITHUB_PRIVATE_KEY=app_key.private,
            ERRANDS_CRASH_POINTS="github.questions_posted:1,github.pull_opened:1",
        )
        fleet = Fleet([env], tmp_path / "workers")
        with (
            running_server(settings, embedded_worker=False) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            fleet.start()
            try:
                install(client, fake)
                created = client.post("/api/github/projects", json={"repository": REPO})
                assert created.status_code == 201, created.text
                project = created.json()["id"]
                issue = fake.add_issue(
                    REPO, "Add multiply", "We need a*b.", author="maintainer", labels=("errands",)
                )
                deliver(
                    client, "issues", envelope(fake, "maintainer", action="opened", issue=issue)
                )
                task = task_for_issue(client, project, issue["number"])

                def posted_event() -> bool:
                    fleet.revive()  # a worker that killed itself is replaced
                    events = client.get(f"/api/tasks/{task['id']}/events").json()
                    return any(e["kind"] == "github.questions_posted" for e in events)

                wait_for(posted_event, timeout=120, what="the questions recorded as posted")
                assert fleet.crashes == 1
                comments = fake.repos[REPO].issue_comments[issue["number"]]
                asked = [c for c in comments if "<!-- errands:questions:" in c["body"]]
                assert len(asked) == 1

                reply = fake.add_issue_comment(REPO, issue["number"], "1: 1", "maintainer")
                deliver(
                    client,
                    "issue_comment",
                    envelope(fake, "maintainer", action="created", issue=issue, comment=reply),
                )

                def pull_recorded() -> int | None:
                    fleet.revive()
                    number: int | None = github_task(client, task["id"])["pull_request"]
                    return number

                pr = wait_for(pull_recorded, timeout=180, what="the pull request recorded")
                assert fleet.crashes == 2
                assert list(fake.repos[REPO].pulls) == [pr]
            finally:
                fleet.stop()
