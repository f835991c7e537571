"""Server time of the review page for a branch of 5 subtasks and 3,000 changed lines.

Builds a repository with a task branch of five commits (600 changed lines each: new Python
modules and a change in the middle of an existing one), records the task as in review in a
fresh store, starts the web app on loopback (no worker, no model) and times the review page:
each subtask, the whole branch, unified and side by side. The target (issue 5): under 300 ms
for the whole branch; nothing is asserted.

For each view it prints:

- ``first``: the first view, with the highlighting and diff caches emptied just before it (as
  after a restart, or a branch nobody has looked at; one review page is fetched before them all so
  the process's one-off work, templates and git, is not counted). The page highlights only
  its first changed lines within a budget; the rest arrive escaped but uncoloured and the
  page asks for their highlighting afterwards (``data-highlight`` on ``#review``: one
  request per batch).
- ``deferred``: those requests, made one after another as the browser does, their number
  and the sum of their times: when every part of the page is highlighted, the reader has
  waited ``first + deferred`` of server time (the browser is responsive in between).
- ``then``: the median and p95 of the views after it (highlighting is cached by content, so
  a later view is whole at once and asks for nothing more).

Times are wall-clock round trips on loopback (server time plus local transfer). The load
average is printed before and after: the numbers mean little on a busy machine.

Usage (from the repository root)::

    python bench/review_page.py [--rounds 15] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import html
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from tests.support import running_server  # noqa: E402

from errands.domain import SubtaskState, TaskState  # noqa: E402
from errands.git import diffcache  # noqa: E402
from errands.settings import Settings  # noqa: E402
from errands.store import Database, Project, Subtask, Task  # noqa: E402
from errands.store import events as event_log  # noqa: E402
from errands.web.ui import diffview  # noqa: E402
from errands.workflow.mirrors import open_mirror  # noqa: E402

BRANCH = "errands/1-bench"
SUBTASKS = 5
LINES_PER_SUBTASK = 600


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def module(n: int, lines: int) -> str:
    body = [f'"""Generated module {n}."""', ""]
    while len(body) < lines:
        i = len(body)
        body += [f"def f_{n}_{i}(x: int) -> int:", f'    """Step {i}."""', f"    return x * {i}"]
    return "\n".join(body[:lines]) + "\n"


def build_repo(root: Path, scale: int = 1) -> tuple[Path, str, list[str]]:
    """A branch of 5 subtasks changing 600 lines each (``scale`` times as many new lines)."""
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Bench")
    git(repo, "config", "user.email", "bench@example.com")
    (repo / "core.py").write_text(module(0, 2000))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", BRANCH)
    shas = []
    for n in range(1, SUBTASKS + 1):
        # 500 new lines in two modules (scale 10: 5,900), and 50 lines replaced in the middle
        # of core.py (100 changed): 600 changed lines a subtask (scale 10: 6,000).
        (repo / f"pkg_{n}_a.py").write_text(module(n, 300 * scale - 50))
        (repo / f"pkg_{n}_b.py").write_text(module(n + 100, 300 * scale - 50))
        core = (repo / "core.py").read_text().split("\n")
        start = 300 * n
        core[start : start + 50] = [f"value_{n}_{i} = {i}" for i in range(50)]
        (repo / "core.py").write_text("\n".join(core))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"Subtask {n}")
        shas.append(git(repo, "rev-parse", "HEAD"))
    git(repo, "checkout", "-q", "main")
    return repo, base, shas


def record_task(settings: Settings, repo: Path, base: str, shas: list[str]) -> int:
    db = Database(settings.resolved_database_url)
    db.migrate()
    with db.session() as s:
        project = Project(name="bench", origin=str(repo), base_branch="main")
        s.add(project)
        s.flush()
        task = Task(
            project_id=project.id,
            title="Benchmark task",
            state=TaskState.IN_REVIEW,
            branch=BRANCH,
            base_branch="main",
            base_commit=base,
        )
        s.add(task)
        s.flush()
        for n, sha in enumerate(shas, start=1):
            task.subtasks.append(
                Subtask(
                    position=n, title=f"Subtask {n}", state=SubtaskState.COMMITTED, commit_sha=sha
                )
            )
        event_log.record(
            s,
            "task.state",
            "in review",
            task_id=task.id,
            data={"state": "in_review", "head": shas[-1]},
        )
        task_id, project_id = task.id, project.id
    db.dispose()
    # Task branches live in Errands' mirror, where the execute stage would have made them.
    mirror = open_mirror(settings, project_id, str(repo))
    git(mirror.path, "fetch", "-q", "origin", f"refs/heads/{BRANCH}:refs/heads/{BRANCH}")
    return task_id


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def timed(client: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.get(path)
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000, response


def deferred_parts(task_id: int, page: str) -> list[str]:
    """The highlighting requests the page makes once loaded (as review.js does)."""
    found = re.search(r'<div id="review"[^>]*\sdata-highlight="([^"]*)"', page)
    if not found or not found.group(1):
        return []
    query = re.search(r'data-highlight-query="([^"]*)"', page)
    assert query is not None
    base = f"/tasks/{task_id}/review/highlight?{html.unescape(query.group(1))}"
    return [
        base + "".join(f"&file={i}" for i in batch.split(","))
        for batch in found.group(1).split(";")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tmp", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as scratch:
        root = Path(scratch)
        repo, base, shas = build_repo(root)
        settings = Settings(home=root / "home")
        task_id = record_task(settings, repo, base, shas)
        with running_server(settings) as url:
            client = httpx.Client(base_url=url, timeout=60, headers={"Accept": "text/html"})
            views = [(f"subtask {n}", f"view=subtask&subtask={n}") for n in (1, 5)]
            views += [
                ("whole branch", "view=all"),
                ("whole branch, side by side", "view=all&layout=split"),
            ]
            print(
                f"review page, {SUBTASKS} subtasks, {SUBTASKS * LINES_PER_SUBTASK:,} changed lines"
            )
            print(f"  before: {load()}")
            # The process's own first-request work (templates compiled, git warmed), apart.
            client.get(f"/tasks/{task_id}/review?view=subtask&subtask=1").raise_for_status()
            for name, query in views:
                path = f"/tasks/{task_id}/review?{query}"
                diffview.clear_cache()  # an honest first view: nothing highlighted yet
                diffcache.clear()  # nor any diff remembered
                cold, first = timed(client, path)
                parts = deferred_parts(task_id, first.text)
                waited = sum(timed(client, part)[0] for part in parts)
                times = []
                for _ in range(args.rounds):
                    took, later = timed(client, path)
                    times.append(took)
                    if deferred_parts(task_id, later.text):
                        raise SystemExit(f"{name}: a later view still defers highlighting")
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                print(
                    f"  {name:28} first {cold:6.1f} ms"
                    f"  deferred {len(parts)} req {waited:6.1f} ms"
                    f"  (all highlighted after {cold + waited:6.1f} ms)"
                    f"  then median {statistics.median(times):6.1f} ms"
                    f"  p95 {p95:6.1f} ms"
                    f"  ({len(first.content) / 1024:,.0f} KiB of HTML)"
                )
            print(f"  after:  {load()}")


if __name__ == "__main__":
    main()
