"""The same workflow driven by the `errands` command line, as subprocesses, with a separate
`errands worker` process — and this time the user has the base branch checked out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from errands.sandbox import bwrap_problem
from errands.testing.scripted_llm import ScriptedLLM
from tests.conftest import run_git
from tests.support import CalcScript, wait_for

ERRANDS = [sys.executable, "-m", "errands.cli"]


class Cli:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def __call__(self, *args: str, ok: bool = True, stdin: str | None = None) -> str:
        done = subprocess.run(
            [*ERRANDS, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            input=stdin,
            timeout=120,
            check=False,
        )
        if ok and done.returncode != 0:
            raise AssertionError(f"errands {' '.join(args)} failed: {done.stderr}{done.stdout}")
        if not ok and done.returncode == 0:
            raise AssertionError(f"errands {' '.join(args)} should have failed: {done.stdout}")
        return done.stdout + done.stderr

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json"))

    def task(self, task_id: int) -> dict[str, Any]:
        task: dict[str, Any] = self.json("task", "show", str(task_id))
        return task

    def wait(self, task_id: int, state: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            task = self.task(task_id)
            if task["state"] == "failed":
                raise AssertionError(f"task failed: {task['failure_reason']}")
            return task if task["state"] == state else None

        result: dict[str, Any] = wait_for(check, timeout=90, interval=0.3, what=state)
        return result


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM(CalcScript()) as server:
        yield server


@pytest.fixture
def cli(home: Path, llm: ScriptedLLM, tmp_path: Path) -> Iterator[Cli]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ERRANDS_", "OPENAI_"))},
        "ERRANDS_HOME": str(home),
        "ERRANDS_MODEL": "openai:scripted-model",
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-cli-secret-456789",
        "ERRANDS_WORKER_POLL_INTERVAL": "0.05",
        "ERRANDS_SANDBOX": "auto" if bwrap_problem() is None else "none",
    }
    # The worker's log goes to a file: a pipe nobody reads until the end would fill up and
    # block the worker mid-job.
    log = tmp_path / "worker.log"
    with log.open("w") as sink:
        worker = subprocess.Popen(
            [*ERRANDS, "worker"], env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        yield Cli(env, tmp_path)
    finally:
        worker.terminate()
        # A job still running finishes its step first: on a loaded CI machine that once
        # took longer than 30 s.
        worker.wait(timeout=120)
        output = log.read_text()
        assert "Traceback" not in output, output


def test_full_workflow_from_the_cli(cli: Cli, sample_repo: Path, tmp_path: Path) -> None:
    # The user has main checked out, with an unrelated uncommitted change and an untracked file.
    (sample_repo / "README.md").write_text("# calc\n\nlocal edit\n")
    (sample_repo / "notes.txt").write_text("mine\n")

    assert "added" in cli("project", "add", str(sample_repo))
    projects = cli.json("project", "list")
    assert projects[0]["name"] == "calc"
    assert "Unknown executor 'aider'" in cli(
        "project", "set", "calc", "--executor", "aider", ok=False
    )
    cli("project", "set", "calc", "--executor", "native", "--revise-executor", "native")
    assert "Executors: execute native; revise native" in cli("project", "show", "calc")

    spec = tmp_path / "task.md"
    spec.write_text("Add multiply\n\nWe need a*b in calc.\n")
    created = cli.json("task", "add", "--project", "calc", "--file", str(spec))
    task_id = created["id"]
    assert created["title"] == "Add multiply"
    assert created["body"] == "We need a*b in calc."

    task = cli.wait(task_id, "awaiting_answers")
    shown = cli("task", "show", str(task_id))
    assert "Should multiply accept floats?" in shown and "(recommended)" in shown
    assert [t["id"] for t in cli.json("task", "list", "--state", "awaiting_answers")] == [task_id]

    cli("answer", str(task_id), "1", "1")
    task = cli.wait(task_id, "in_review")
    assert len(task["subtasks"]) == 2

    stat = cli("diff", str(task_id), "--stat")
    assert "calc.py" in stat and "tests/test_multiply.py" in stat
    patch = cli("diff", str(task_id), "--subtask", "1")
    assert "+def multiply(a, b):" in patch
    diff_json = cli.json("diff", str(task_id), "--subtask", "1")
    line = next(
        ln["new_no"]
        for h in diff_json["files"][0]["hunks"]
        for ln in h["lines"]
        if "def multiply" in ln["text"]
    )

    cli("comment", str(task_id), f"calc.py:{line}", "Please document multiply.", "--subtask", "1")
    assert "unresolved blocking" in cli("approve", str(task_id), ok=False)
    cli("request-changes", str(task_id))
    task = cli.wait(task_id, "in_review")
    assert len(task["subtasks"]) == 2  # fixed inside subtask 1, where the comment was
    assert len(task["subtasks"][0]["versions"]) == 2
    # Where the round sent the comment, and why (CalcScript routes it where it was left).
    assert "→ fix in subtask 1: left on subtask 1" in cli("task", "show", str(task_id))

    cli("approve", str(task_id))
    task = cli.wait(task_id, "merged")

    logs = cli("logs", str(task_id))
    assert "Squash-merged into main" in logs
    followed = cli("logs", str(task_id), "--follow", "--json")  # returns: the task rests
    kinds = [json.loads(line)["kind"] for line in followed.splitlines()]
    assert kinds[0] == "task.created" and kinds[-1] in {"task.merged", "job.succeeded"}
    assert "sk-cli-secret-456789" not in followed

    # main was fast-forwarded in the user's checkout; their uncommitted work is intact.
    assert run_git(sample_repo, "rev-parse", "HEAD").strip() == task["merge_commit"]
    assert "def multiply" in (sample_repo / "calc.py").read_text()
    assert (sample_repo / "README.md").read_text() == "# calc\n\nlocal edit\n"
    assert (sample_repo / "notes.txt").read_text() == "mine\n"
    assert run_git(sample_repo, "status", "--porcelain").splitlines() == [
        " M README.md",
        "?? notes.txt",
    ]


def test_cli_errors_are_clear(cli: Cli, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "is not a git repository" in cli("project", "add", str(plain), ok=False)
    assert "Task 999 does not exist" in cli("task", "show", "999", ok=False)
    assert "Project 'nope' does not exist" in cli("task", "add", "-p", "nope", "t", ok=False)
    assert "not PATH:LINE" in cli("comment", "1", "calc.py", "x", ok=False)
    env_without_model = {k: v for k, v in cli.env.items() if k != "ERRANDS_MODEL"}
    done = subprocess.run(
        [*ERRANDS, "task", "add", "-p", "x", "title"],
        env=env_without_model,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "ERRANDS_MODEL" in done.stderr
    assert "Traceback" not in done.stderr


def test_task_text_from_the_editor_and_from_stdin(
    cli: Cli, sample_repo: Path, tmp_path: Path
) -> None:
    cli("project", "add", str(sample_repo), "--no-auto-execute")
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import pathlib, sys\n"
        "path = pathlib.Path(sys.argv[1])\n"
        "assert 'Acceptance criteria' in path.read_text()  # the spec template\n"
        "path.write_text('Speed up add\\n\\nMake add faster.\\n')\n"
    )
    cli.env["EDITOR"] = f"{sys.executable} {editor}"
    task = cli.json("task", "add", "-p", "calc")
    assert (task["title"], task["body"]) == ("Speed up add", "Make add faster.")

    piped = json.loads(
        cli("task", "add", "-p", "calc", "Title from argument", "--file", "-", "--json",
            stdin="Body from stdin\n")
    )  # fmt: skip
    assert (piped["title"], piped["body"]) == ("Title from argument", "Body from stdin")
