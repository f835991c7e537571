"""Errands' ask_human MCP server for external agents, and how the question is taken back: the
server speaks MCP over stdio (run here as the sandbox runs it, with the system's python3); the
file it writes is the agent's, so a link, a pipe, an oversized or malformed file is never
believed (nor followed to a host file)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from errands.executors.asking import (
    MAX_QUESTION_BYTES,
    TOOL,
    ask_dir,
    ask_server,
    take_question,
)
from errands.workflow.project_config import RepoConfig
from tests.executors.claude_support import QUESTION


def rpc(server: list[str], *messages: dict[str, object]) -> list[dict[str, object]]:
    lines = "".join(json.dumps(m) + "\n" for m in messages)
    out = subprocess.run(
        server, input=lines, capture_output=True, text=True, timeout=30, check=True
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_the_server_speaks_mcp_and_hands_the_question_back(tmp_path: Path) -> None:
    server = ask_server(tmp_path)
    replies = rpc(
        [server.command, *server.args],
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "x"}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": TOOL, "arguments": QUESTION},
        },
        {"jsonrpc": "2.0", "id": 4, "method": "resources/list"},
    )
    assert [r["id"] for r in replies] == [1, 2, 3, 4]  # no answer to the notification
    assert replies[0]["result"]["protocolVersion"] == "x"  # type: ignore[index]
    (tool,) = replies[1]["result"]["tools"]  # type: ignore[index]
    assert tool["name"] == TOOL and "options" in tool["inputSchema"]["properties"]
    assert "End your turn" in replies[2]["result"]["content"][0]["text"]  # type: ignore[index]
    assert replies[3]["error"]["code"] == -32601  # type: ignore[index]

    asked = take_question(tmp_path)
    assert asked is not None and asked.question == QUESTION["question"]
    assert asked.recommended == 2 and asked.options[0].label == "Round"
    assert take_question(tmp_path) is None  # taken once


def test_a_new_turn_forgets_an_unanswered_question(tmp_path: Path) -> None:
    ask_server(tmp_path)
    (ask_dir(tmp_path) / "question.json").write_text(json.dumps(QUESTION))
    ask_server(tmp_path)
    assert take_question(tmp_path) is None


@pytest.mark.parametrize("plant", ["link", "fifo", "huge", "malformed", "directory"])
def test_what_the_agent_leaves_instead_of_a_question_is_not_believed(
    tmp_path: Path, plant: str
) -> None:
    ask_server(tmp_path)
    path = ask_dir(tmp_path) / "question.json"
    host_file = tmp_path / "host-secret.json"
    host_file.write_text(json.dumps(QUESTION))  # a valid question, but a host file
    if plant == "link":
        path.symlink_to(host_file)
    elif plant == "fifo":
        os.mkfifo(path)
    elif plant == "huge":
        path.write_text(json.dumps({**QUESTION, "reasoning": "x" * MAX_QUESTION_BYTES}))
    elif plant == "malformed":
        path.write_text(json.dumps({**QUESTION, "recommended": 9}))
    else:
        path.mkdir()
    assert take_question(tmp_path) is None
    assert host_file.read_text() == json.dumps(QUESTION)
    if plant != "directory":
        assert not os.path.lexists(path)


def test_a_project_may_not_name_a_server_errands() -> None:
    with pytest.raises(ValueError, match="Errands' own"):
        RepoConfig.model_validate({"mcp_servers": {"errands": {"command": "python3"}}}).servers()
