"""The native loop uses a project's MCP server (a real one: @modelcontextprotocol/server-
filesystem from npm, installed by .ci/run) started inside bubblewrap: its tools reach the
model, and what the server can see is the sandbox's view, not the host's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from errands.agent.loop import AgentConfig, run_agent
from errands.agent.providers import build_model
from errands.agent.schemas import SubtaskReport
from errands.mcp import McpServer, native_toolsets
from errands.settings import Settings
from errands.testing.scripted_llm import ChatRequest, Reply, ScriptedLLM
from tests.sandbox.conftest import SSH_KEY, Host, host, requires_bwrap
from tests.unit.test_agent_loop import Recorder

__all__ = ["host"]

SERVER = "mcp-server-filesystem"


@pytest.fixture
def mcp_server() -> str:
    if shutil.which(SERVER) is None:
        reason = (
            f"{SERVER} is not installed (npm install -g @modelcontextprotocol/server-filesystem)"
        )
        if os.environ.get("ERRANDS_TEST_SERVICES") == "require":
            pytest.fail(reason)
        pytest.skip(reason)
    return SERVER


@requires_bwrap
def test_the_native_loop_calls_an_mcp_server_inside_the_sandbox(
    host: Host, mcp_server: str, tmp_path: Path
) -> None:
    (host.workspace / "notes.txt").write_text("inside the workspace\n")
    key = host.home / ".ssh" / "id_rsa"
    seen: list[str] = []

    def script(req: ChatRequest) -> Reply:
        if req.tool_results:
            seen.append(req.tool_results[-1][1])
        step = len(req.tool_results)
        if step == 0:
            assert "files_read_text_file" in req.tools, req.tools
            return Reply.call("files_read_text_file", path=str(host.workspace / "notes.txt"))
        if step == 1:
            return Reply.call("files_read_text_file", path=str(key))
        return Reply.call("final_result", summary="read", decisions=[])

    recorder = Recorder()
    with ScriptedLLM(script) as llm:
        settings = Settings(
            home=tmp_path / "home",
            model="openai:scripted",
            openai_base_url=llm.base_url,
            openai_api_key="sk-test",
            llm_max_retries=0,
        )
        config = AgentConfig(
            model=lambda: build_model(settings, "execute"), max_requests=6, output_retries=1
        )
        sandbox = host.sandbox(
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, readable=(host.root,)
        )
        # The server may serve the whole file system: the sandbox decides what it sees.
        server = McpServer("files", mcp_server, ("/",))
        result = run_agent(
            config,
            name="mcp",
            instructions="Errands phase: execute.",
            prompt="Read the notes.",
            output_type=SubtaskReport,
            tools=[],
            recorder=recorder,
            toolsets=native_toolsets([server], sandbox),
        )

    assert not llm.script_errors, llm.script_errors
    assert result.output.summary == "read"
    assert "inside the workspace" in seen[0]
    assert key.read_text() == SSH_KEY  # on the host, it is there
    assert "PRIVATE KEY" not in seen[1], seen  # in the sandbox, it is not
    assert "ENOENT" in seen[1] or "no such file" in seen[1].lower(), seen
    assert "agent.tool_call" in recorder.kinds()
