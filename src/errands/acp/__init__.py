"""Agents speaking the Agent Client Protocol (ACP) over stdio, run inside the sandbox.

``AcpSession`` starts the agent's process through the sandbox and talks to it with the
``agent-client-protocol`` package; ``ErrandsClient`` serves what the agent asks of us (files
inside the workspace, terminals in the work sandbox, permissions by policy). The executor
built on it is ``errands.executors.acp``.
"""

from errands.acp.client import ErrandsClient, Event, PermissionPolicy
from errands.acp.files import FileMissing, FileRefused, WorkspaceFiles
from errands.acp.session import AcpAgentError, AcpSession, PromptOutcome
from errands.mcp import McpServer

__all__ = [
    "AcpAgentError",
    "AcpSession",
    "ErrandsClient",
    "Event",
    "FileMissing",
    "FileRefused",
    "McpServer",
    "PermissionPolicy",
    "PromptOutcome",
    "WorkspaceFiles",
]
