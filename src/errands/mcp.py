"""MCP servers a project declares (``[mcp_servers.<name>]`` in ``.errands.toml``), and how each
executor is handed them. Every server runs inside the sandbox: an ACP agent or Claude Code
starts them as its own children (inside its sandbox); for the native loop Errands starts them
itself, through the sandbox's command line (``stdio_argv``). Their network is the sandbox's:
none, or the egress proxy's allowlist.

A server's ``env`` comes from the repository's file, so it is not a place for secrets: the
values reach the sandbox and every process in it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from errands.errors import ConfigError
from errands.sandbox import Sandbox
from errands.sandbox.base import Launch
from errands.sandbox.limits import rlimits_for

if TYPE_CHECKING:
    from pydantic_ai.toolsets import AbstractToolset

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Errands' own server, handed to every external agent (errands.executors.asking).
RESERVED_NAME = "errands"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Set by the sandbox itself: a server may not move them.
RESERVED_ENV = frozenset({"HOME", "TMPDIR", "PATH"})


@dataclass(frozen=True)
class McpServer:
    """An MCP server speaking stdio: ``command`` with ``args``, in the workspace."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    @property
    def command_line(self) -> str:
        """The server as one shell command line, its environment set first."""
        assignments = [f"{k}={shlex.quote(v)}" for k, v in self.env]
        line = shlex.join([self.command, *self.args])
        return f"env {' '.join(assignments)} {line}" if assignments else line


def claude_mcp_config(servers: Sequence[McpServer]) -> dict[str, Any]:
    """The JSON Claude Code's ``--mcp-config`` takes (with ``--strict-mcp-config``, only these)."""
    return {
        "mcpServers": {
            server.name: {
                "type": "stdio",
                "command": server.command,
                "args": list(server.args),
                "env": dict(server.env),
            }
            for server in servers
        }
    }


def stdio_launch(server: McpServer, sandbox: Sandbox) -> Launch:
    """How to start ``server`` inside ``sandbox`` (for a client that spawns it itself, like
    pydantic-ai's ``MCPServerStdio``: the first element of ``argv`` is the program)."""
    return sandbox.launch(f"exec {server.command_line}")


def native_toolsets(servers: Sequence[McpServer], sandbox: Sandbox) -> list[AbstractToolset[None]]:
    """The servers as pydantic-ai toolsets for the native loop, each started inside
    ``sandbox`` for the run that uses it (its tools named ``<server>_<tool>``).

    The MCP client spawns the process itself, so the sandbox's rlimits are set by
    ``prlimit`` in front of its command line (no pids cgroup here: the limit on processes
    is RLIMIT_NPROC's)."""
    if not servers:
        return []
    try:
        from fastmcp.client.transports import StdioTransport
        from pydantic_ai.mcp import MCPToolset
    except ImportError as exc:
        raise ConfigError(
            "This project declares MCP servers; the native loop needs the MCP client for "
            "them: pip install 'errands[mcp]'."
        ) from exc
    toolsets: list[AbstractToolset[None]] = []
    for server in servers:
        launch = stdio_launch(server, sandbox)
        argv = [*_prlimit(launch), *launch.argv]
        transport = StdioTransport(
            command=argv[0], args=argv[1:], env=dict(launch.env), cwd=str(launch.cwd)
        )
        toolsets.append(MCPToolset(transport, id=server.name).prefixed(server.name))
    return toolsets


_PRLIMIT_NAMES = {
    "RLIMIT_CPU": "cpu",
    "RLIMIT_AS": "as",
    "RLIMIT_FSIZE": "fsize",
    "RLIMIT_NPROC": "nproc",
}


def _prlimit(launch: Launch) -> list[str]:
    import resource

    names = {getattr(resource, name): flag for name, flag in _PRLIMIT_NAMES.items()}
    limits = rlimits_for(launch.limits, extra_tasks=launch.helper_tasks)
    return ["prlimit", *(f"--{names[which]}={soft}:{hard}" for which, (soft, hard) in limits), "--"]


def parse_env(env: Mapping[str, str], where: str) -> tuple[tuple[str, str], ...]:
    """A server's environment, checked (``where`` names it in errors)."""
    for name in env:
        if not ENV_NAME.fullmatch(name):
            raise ValueError(f"{where}: {name!r} is not an environment variable name")
        if name in RESERVED_ENV:
            raise ValueError(f"{where}: {name} is set by the sandbox and cannot be changed")
    return tuple(sorted(env.items()))
