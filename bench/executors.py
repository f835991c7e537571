"""What each executor costs Errands per task, side by side with the native loop.

Runs the same calc task (research → answer → execute two verified subtasks → a review comment
→ revise → approve → merged) over real HTTP against an in-process server (embedded worker,
real git, SQLite, bubblewrap), once per executor row and task, with a scripted model on
loopback answering at once, and prints per executor

    overhead = wall time of the task - time spent inside the scripted model

and the difference to the native row: what running that agent (its CLI started per turn inside
the sandbox, the egress proxy, its session kept across turns) adds to a task. Research and
planning are native in every row; only the coding (execute, revise) changes hands.

Usage (from the repository root)::

    python bench/executors.py [--tasks 2] [--only claude-code] [--only "acp (Gemini CLI)"]

Rows whose CLI is not installed are skipped with the reason. Timings are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.executors.claude_support import REAL_KEY, ClaudeScript  # noqa: E402
from tests.executors.codex_support import CodexCalcScript  # noqa: E402
from tests.executors.gemini_support import COMMAND as GEMINI_COMMAND  # noqa: E402
from tests.executors.gemini_support import REAL_KEY as GOOGLE_KEY  # noqa: E402
from tests.executors.gemini_support import GeminiScript  # noqa: E402
from tests.support import (  # noqa: E402
    CalcScript,
    add_project,
    add_task,
    comment_on_multiply,
    running_server,
    settings_for,
    wait_for_state,
)

from errands.sandbox import bwrap_problem  # noqa: E402
from errands.testing.scripted_llm import Script, ScriptedLLM  # noqa: E402


@dataclass(frozen=True)
class Row:
    """One executor: its scripted model, the project settings choosing it, what it needs."""

    name: str
    script: Callable[[], Script]
    project: dict[str, Any]  # PATCH /api/projects/… body
    settings: Callable[[ScriptedLLM], dict[str, Any]] = lambda llm: {}
    needs: str | None = None  # a CLI on PATH


ROWS: list[Row] = [
    Row("native", CalcScript, {}),
    Row(
        "claude-code",
        lambda: ClaudeScript(probe=False, fail_once=False),
        {"executor": "claude-code", "execute_model": "anthropic:claude-sonnet-4-5"},
        lambda llm: {
            "anthropic_api_key": REAL_KEY,
            "anthropic_base_url": f"http://127.0.0.1:{llm.port}",
        },
        needs="claude",
    ),
    # The execute model is settings_for's openai:scripted-model: Codex asks for scripted-model.
    Row(
        "codex",
        lambda: CodexCalcScript(probe=False, fail_once=False),
        {"executor": "codex"},
        needs="codex",
    ),
    Row(
        "acp (Gemini CLI)",
        lambda: GeminiScript(probe=False, fail_once=False),
        {"executor": "acp"},
        lambda llm: {
            "google_api_key": GOOGLE_KEY,
            "google_base_url": llm.gemini_base_url.rstrip("/"),
            "acp_command": GEMINI_COMMAND,
            "acp_provider": "google",
        },
        needs="gemini",
    ),
]


@dataclass
class Result:
    walls: list[float] = field(default_factory=list)
    inside: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)

    def overhead(self) -> float:
        return statistics.median(w - i for w, i in zip(self.walls, self.inside, strict=True))


def calc_repo(path: Path) -> Path:
    files = {
        "calc.py": "def add(a, b):\n    return a + b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n"
        "    assert add(2, 3) == 5\n",
        "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["."]\n',
        ".gitignore": "__pycache__/\n.pytest_cache/\n",
    }
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    for args in (
        ["init", "-q", "-b", "main"],
        ["-c", "user.name=Bench", "-c", "user.email=b@example.com", "add", "-A"],
        ["-c", "user.name=Bench", "-c", "user.email=b@example.com", "commit", "-qm", "init"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


def one_task(client: httpx.Client, repo: Path, row: Row) -> None:
    project_id = add_project(client, repo)
    if row.project:
        chosen = client.patch(f"/api/projects/{project_id}", json=row.project)
        assert chosen.status_code == 200, chosen.text
    task_id = add_task(client, project_id)
    wait_for_state(client, task_id, "awaiting_answers", timeout=300)
    client.post(f"/api/tasks/{task_id}/answers", json={"question": 1, "option": 1})
    task = wait_for_state(client, task_id, "in_review", timeout=600)
    comment_on_multiply(client, task_id, "Please document it.")
    client.post(f"/api/tasks/{task_id}/request-changes")  # revising from here
    task = wait_for_state(client, task_id, "in_review", timeout=600)
    assert len(task["subtasks"]) == 3, task["subtasks"]
    client.post(f"/api/tasks/{task_id}/approve")
    wait_for_state(client, task_id, "merged", timeout=120)


def run_row(row: Row, tasks: int, tmp: Path) -> Result:
    result = Result()
    for n in range(tasks):
        home = tmp / f"{row.name}-{n}" / "home"
        home.mkdir(parents=True)
        repo = calc_repo(tmp / f"{row.name}-{n}" / "calc")
        with ScriptedLLM(row.script()) as llm:
            if isinstance(llm.script, ClaudeScript | GeminiScript):
                llm.script.port = llm.port
            settings = settings_for(home, llm.base_url, **row.settings(llm))
            with running_server(settings) as url:
                client = httpx.Client(base_url=url, timeout=60)
                started = time.perf_counter()
                one_task(client, repo, row)
                result.walls.append(time.perf_counter() - started)
            result.inside.append(llm.seconds_inside)
            result.requests.append(len(llm.received))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2, help="tasks per executor")
    parser.add_argument("--only", action="append", help="run only these rows (and native)")
    args = parser.parse_args()
    prefixes = ("ERRANDS_", "OPENAI_", "ANTHROPIC_", "GOOGLE_", "GEMINI_")
    for name in [n for n in os.environ if n.startswith(prefixes)]:
        del os.environ[name]  # the settings come from this script only
    console = Console()
    problem = bwrap_problem()
    console.print(
        f"{platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"Python {platform.python_version()}, sandbox "
        f"{'bubblewrap' if problem is None else 'none (' + problem + ')'}; "
        f"{args.tasks} task(s) per executor, scripted model answering at once"
    )
    rows = [r for r in ROWS if not args.only or r.name == "native" or r.name in args.only]
    results: dict[str, Result | str] = {}
    with tempfile.TemporaryDirectory(prefix="errands-bench-executors-") as tmp:
        for row in rows:
            if row.needs and shutil.which(row.needs) is None:
                results[row.name] = f"skipped: `{row.needs}` is not installed"
                continue
            console.print(f"running {row.name}…")
            results[row.name] = run_row(row, args.tasks, Path(tmp))
    native = results.get("native")
    table = Table(title="Per-task overhead by executor (wall - time inside the model), median")
    for column in ("executor", "wall s", "in model s", "overhead s", "vs native", "requests"):
        table.add_column(column, justify="left" if column == "executor" else "right")
    for name, result in results.items():
        if isinstance(result, str):
            table.add_row(name, result, "", "", "", "")
            continue
        extra = (
            f"{result.overhead() - native.overhead():+.2f} s"
            if isinstance(native, Result) and name != "native"
            else "—"
        )
        table.add_row(
            name,
            f"{statistics.median(result.walls):.2f}",
            f"{statistics.median(result.inside):.2f}",
            f"{result.overhead():.2f}",
            extra,
            f"{statistics.median(result.requests):.0f}",
        )
    console.print(table)
    console.print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
