"""MCP servers and the acp executor's agent, declared in `.errands.toml`: parsed, checked,
and handed on as each executor takes them."""

from __future__ import annotations

import pytest

from errands.errors import InvalidInput
from errands.mcp import McpServer, claude_mcp_config
from errands.settings import Settings
from errands.workflow.project_config import effective_config, parse_repo_config
from tests.executors.test_selection import project

FILE = """
[acp]
command = "gemini --acp --model gemini-2.5-flash"
provider = "google"

[mcp_servers.files]
command = "mcp-server-filesystem"
args = ["."]
env = { LOG_LEVEL = "info", A_B = "x y" }

[mcp_servers.docs]
command = "docs-server"
"""


def test_servers_and_the_agent_reach_the_effective_config() -> None:
    repo = parse_repo_config(FILE).model_dump()
    config = effective_config(project(repo), Settings())

    assert config.acp_command == "gemini --acp --model gemini-2.5-flash"
    assert config.acp_provider == "google"
    assert config.mcp_servers == (
        McpServer("docs", "docs-server"),
        McpServer(
            "files", "mcp-server-filesystem", (".",), (("A_B", "x y"), ("LOG_LEVEL", "info"))
        ),
    )
    files = config.mcp_servers[1]
    assert files.command_line == "env A_B='x y' LOG_LEVEL=info mcp-server-filesystem ."


def test_settings_give_the_agent_when_the_file_does_not() -> None:
    config = effective_config(
        project(), Settings(acp_command="opencode acp", acp_provider="openai")
    )
    assert (config.acp_command, config.acp_provider, config.mcp_servers) == (
        "opencode acp",
        "openai",
        (),
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[mcp_servers."bad name"]\ncommand = "x"', "a name is letters"),
        ('[mcp_servers.a]\ncommand = "x"\nenv = { "1X" = "y" }', "not an environment variable"),
        ('[mcp_servers.a]\ncommand = "x"\nenv = { HOME = "/root" }', "HOME is set by the sandbox"),
        ('[mcp_servers.a]\nargs = ["x"]', "command"),
        ('[mcp_servers.a]\ncommand = "x"\nurl = "http://x"', "url"),
        ('[acp]\nprovider = "gemini"', "provider"),
        ('[acp]\ncommand = ""', "command"),
    ],
)
def test_bad_declarations_are_refused_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        parse_repo_config(text)


def test_claude_code_gets_the_servers_as_its_mcp_config() -> None:
    servers = (McpServer("files", "mcp-server-filesystem", (".",), (("A", "1"),)),)
    assert claude_mcp_config(servers) == {
        "mcpServers": {
            "files": {
                "type": "stdio",
                "command": "mcp-server-filesystem",
                "args": ["."],
                "env": {"A": "1"},
            }
        }
    }
