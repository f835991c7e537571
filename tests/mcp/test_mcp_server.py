"""``errands mcp`` driven by the official MCP client over stdio (a real subprocess): a task
created, its question answered, its review state read — against the local store, and the
same tools against a remote server through ``errands login``'s token."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from mcp.client.stdio import StdioServerParameters

from errands import runtime
from errands.accounts import remote
from errands.testing.scripted_llm import ScriptedLLM
from errands.testing.workload import worker_env
from errands.workflow import actions
from mcp import Client
from tests.support import CalcScript, running_server, settings_for

Json = dict[str, Any]


def _server(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-c", "from errands.cli import main; main()", "mcp", *env.pop("_ARGS", "").split()],
        env=env,
    )


async def _call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    found = result.structured_content
    # A tool returning a list is wrapped as {"result": [...]}.
    return found["result"] if isinstance(found, dict) and set(found) == {"result"} else found


async def _until(client: Client, task_id: int, state: str, timeout: float = 120) -> Json:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        task: Json = await _call(client, "show_task", task_id=task_id)
        if task["state"] == state:
            return task
        assert task["state"] != "failed", task["failure_reason"]
        assert asyncio.get_running_loop().time() < deadline, f"task is {task['state']}"
        await asyncio.sleep(0.3)


async def _drive(env: dict[str, str], project: str) -> tuple[Json, Json]:
    async with Client(_server(env), read_timeout_seconds=60) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {
            "create_task",
            "list_tasks",
            "show_task",
            "answer_questions",
            "review_state",
            "locate",
        }
        created: Json = await _call(
            client, "create_task", project=project, title="Add multiply", body="We need a*b."
        )
        task_id = created["id"]
        listed = await _call(client, "list_tasks")
        assert task_id in [t["id"] for t in listed]
        # The filter, on a state the task cannot have reached yet: "researching" raced the
        # worker, which can finish the research before this call.
        merged = await _call(client, "list_tasks", state="merged")
        assert task_id not in [t["id"] for t in merged]
        asked = await _until(client, task_id, "awaiting_answers")
        await _locate(client, project)  # indexed: the research stood on the index
        assert asked["questions"][0]["text"] == "Should multiply accept floats?"
        wrong = await client.call_tool(
            "answer_questions", {"task_id": task_id, "answers": [{"question": 9, "option": 1}]}
        )
        assert wrong.is_error and "question" in str(wrong.content).lower()
        await _call(
            client, "answer_questions", task_id=task_id, answers=[{"question": 1, "option": 1}]
        )
        await _until(client, task_id, "in_review")
        review: Json = await _call(client, "review_state", task_id=task_id)
        missing = await client.call_tool("show_task", {"task_id": 999_999})
        assert missing.is_error and "not_found" in str(missing.content)
        return created, review


async def _locate(client: Client, project: str) -> None:
    traceback = 'Traceback (most recent call last):\n  File "calc.py", line 2, in add\nTypeError'
    located = await _call(client, "locate", project=project, text=traceback, limit=3)
    assert located[0]["path"] == "calc.py" and located[0]["reasons"]
    assert located[0]["symbols"][0] == {"name": "add", "kind": "function", "line": 1, "end": 2}
    for wrong, says in (
        ({"project": project, "text": "  \n"}, "blank"),
        ({"project": project, "text": "x", "limit": 101}, "100"),
        ({"project": project, "text": "x" * 65_537}, "65536"),
        ({"project": "nope", "text": "add"}, "not_found"),
    ):
        refused = await client.call_tool("locate", wrong)
        assert refused.is_error and says in str(refused.content), (wrong, refused.content)


def _check(review: Json, task_id: int) -> None:
    assert review["task"] == task_id and review["in_review"] and review["can_approve"]
    assert [s["title"] for s in review["subtasks"]] == ["Add multiply to calc", "Test multiply"]
    assert all(s["commit"] and s["verified"] for s in review["subtasks"])
    assert review["subtasks"][0]["progress"].startswith("Subtask 1 of 2")
    assert review["open_threads"] == [] and review["blocking_open"] == 0
    assert "Should multiply accept floats?" in review["handoff"]


def test_an_mcp_client_creates_answers_and_reviews_a_task_on_the_local_store(
    sample_repo: Path, home: Path
) -> None:
    with ScriptedLLM(CalcScript()) as llm:
        settings = settings_for(home, llm.base_url)
        db = runtime.open_database(settings)
        with db.session() as session:
            actions.add_project(session, settings, str(sample_repo), name="calc")
        db.dispose()
        # The server's embedded worker does the work; the MCP server reads and writes the
        # same store, as the CLI does.
        with running_server(settings):
            created, review = asyncio.run(_drive(worker_env(settings), "calc"))
    _check(review, created["id"])


def test_the_mcp_server_works_against_a_remote_server_with_the_stored_token(
    sample_repo: Path, home: Path, tmp_path: Path
) -> None:
    with ScriptedLLM(CalcScript()) as llm:
        settings = settings_for(home, llm.base_url)
        with running_server(settings) as url:
            db = runtime.open_database(settings)
            with db.session() as session:
                actions.add_project(session, settings, str(sample_repo), name="calc")
            db.dispose()
            # Another data directory, holding only the login: everything goes over HTTP.
            laptop = settings_for(tmp_path / "laptop", "http://127.0.0.1:9/v1")
            remote.save(laptop, remote.Remote(url=url, token="errands-token"))
            env = worker_env(laptop, _ARGS="--remote")
            created, review = asyncio.run(_drive(env, "calc"))
    _check(review, created["id"])
    assert not (tmp_path / "laptop" / "errands.db").exists()
