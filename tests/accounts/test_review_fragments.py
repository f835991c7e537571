"""The review page's fragments (the rest of a file cut at the page's first screens, a file
loaded on demand, deferred colours) carry the task's code: another organization gets a plain
404 for them, hostile paths and contents stay text, and bad requests get a clear error."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

from errands.domain import SubtaskState, TaskState
from errands.store import Subtask, Task
from errands.store import events as event_log
from errands.web.ui import diffview
from errands.workflow.mirrors import open_mirror
from tests.accounts.conftest import World
from tests.conftest import run_git

BRANCH = "errands/1-hostile"
SECRET = "alpha_secret_value"
# A path git quotes, with markup in it; content that is markup too.
HOSTILE_PATH = 'x"><img src=x onerror=alert(1)>.py'
HOSTILE_LINE = '<script>alert("pwned")</script>'
LINES = diffview.MAX_ROWS_PER_PAGE + 40  # cut by the page: its rest is a fragment


def _in_review(world: World, repo: Path) -> None:
    """One subtask's commit on a task branch, recorded as in review (as execute leaves it)."""
    base = run_git(repo, "rev-parse", "HEAD").strip()
    run_git(repo, "checkout", "-q", "-b", BRANCH)
    (repo / HOSTILE_PATH).write_text(
        "".join(f"{SECRET}_{i} = '{HOSTILE_LINE}'\n" for i in range(LINES))
    )
    (repo / "img.bin").write_bytes(b"\x89PNG\x00\x01\x02")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "Hostile files")
    sha = run_git(repo, "rev-parse", "HEAD").strip()
    run_git(repo, "checkout", "-q", "main")
    with world.app.state.db.session() as s:
        task = s.get(Task, world.task_id)
        assert task is not None
        task.state, task.branch, task.base_branch, task.base_commit = (
            TaskState.IN_REVIEW,
            BRANCH,
            "main",
            base,
        )
        task.subtasks.append(
            Subtask(position=1, title="Hostile", state=SubtaskState.COMMITTED, commit_sha=sha)
        )
        event_log.record(
            s, "task.state", "in review", task_id=task.id, data={"state": "in_review", "head": sha}
        )
    mirror = open_mirror(world.app.state.settings, world.project_id, str(repo))
    run_git(mirror.path, "fetch", "-q", "origin", f"refs/heads/{BRANCH}:refs/heads/{BRANCH}")


def _fragments(world: World) -> list[str]:
    task = world.task_id
    return [
        f"/tasks/{task}/review/file?view=subtask&subtask=1&path={HOSTILE_PATH}&row=5",
        f"/tasks/{task}/review/file?view=all&path={HOSTILE_PATH}",
        f"/tasks/{task}/review/highlight?view=all&file=0&file=1",
        f"/tasks/{task}/review?view=all",
    ]


def test_another_organization_cannot_read_a_tasks_diff_fragments(
    world: World, sample_repo: Path
) -> None:
    _in_review(world, sample_repo)
    viewer = world.client()
    outsider = world.client()
    for url in _fragments(world):
        # Alpha's viewer reads the code (so the refusal below is not an empty answer)...
        seen = viewer.get(url, headers=world.bearer(world.viewer_token))
        assert seen.status_code == 200, (url, seen.text[:300])
        assert SECRET in seen.text
        # ... Beta's owner gets what a task that does not exist gets, and nothing of it.
        for accept in ("text/html", "application/json"):
            refused = outsider.get(
                url, headers={**world.bearer(world.outsider_token), "Accept": accept}
            )
            assert refused.status_code == 404, (url, refused.status_code)
            assert SECRET not in refused.text and "Hostile" not in refused.text


def test_fragments_print_hostile_paths_and_code_as_text(world: World, sample_repo: Path) -> None:
    _in_review(world, sample_repo)
    page = world.owner.get(f"/tasks/{world.task_id}/review?view=subtask&subtask=1")
    assert page.status_code == 200, page.text[:300]
    # The page prints its first rows and says where the rest starts.
    assert f'data-row="{diffview.MAX_ROWS_PER_PAGE}"' in page.text
    assert page.text.count(f"{SECRET}_") == diffview.MAX_ROWS_PER_PAGE
    shown = diffview.MAX_ROWS_PER_PAGE
    rest = world.owner.get(
        f"/tasks/{world.task_id}/review/file",
        params={"view": "subtask", "subtask": 1, "path": HOSTILE_PATH, "row": shown},
    )
    assert rest.status_code == 200, rest.text[:300]
    # The rows after those (an added file's new lines shown + 1 …), and none before.
    assert rest.text.count(f"{SECRET}_") == LINES - shown
    assert f'data-line="{shown + 1}"' in rest.text and f'data-line="{shown}"' not in rest.text
    for html in (page.text, rest.text):
        assert "<script>alert" not in html and "<img src=x" not in html
        # The code is there as text (in the highlighter's spans), and so is the path.
        text = unescape(re.sub(r"<[^>]*>", "", html))
        assert HOSTILE_LINE in text
    assert 'data-path="x&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.py"' in rest.text


def test_bad_fragment_requests_get_a_clear_error(world: World, sample_repo: Path) -> None:
    _in_review(world, sample_repo)
    fragment = f"/tasks/{world.task_id}/review/file"
    cases: list[tuple[dict[str, str | int], int, str]] = [
        ({"path": "nope.py"}, 422, "nope.py is not in this diff"),
        ({"path": "img.bin"}, 422, "img.bin is a binary file"),
        ({"path": HOSTILE_PATH, "row": -1}, 422, "row"),
        ({"path": HOSTILE_PATH, "row": 2**63}, 422, "row"),
        ({"path": HOSTILE_PATH, "row": "x"}, 422, "row"),
    ]
    for params, status, message in cases:
        answer = world.owner.get(
            fragment, params={"view": "all", **params}, headers={"Accept": "application/json"}
        )
        assert answer.status_code == status, (params, answer.text)
        assert message in answer.text, (params, answer.text)
    missing = world.owner.get(f"/tasks/{world.task_id + 99}/review/file?path=x")
    assert missing.status_code == 404
    # Past the file's end: no rows, not an error (the page never asks for it).
    past = world.owner.get(fragment, params={"path": HOSTILE_PATH, "row": LINES + 5})
    assert past.status_code == 200 and SECRET not in past.text
