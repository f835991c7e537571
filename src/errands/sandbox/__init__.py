"""Running commands for the agent and for verification, in isolation.

Every command goes through a ``Sandbox`` built for one ``SandboxPolicy`` (one workspace).
Backends: ``bubblewrap`` (Linux namespaces; the default wherever it works) and ``none``
(plain child processes with a scrubbed environment and limits, no isolation: only when chosen
explicitly). ``create_sandbox`` picks one at start-up; nothing else names a backend.
"""

from __future__ import annotations

import logging
import threading
from typing import Literal, assert_never

from errands.errors import ConfigError
from errands.sandbox.base import CommandResult, Sandbox
from errands.sandbox.bubblewrap import BubblewrapSandbox, bwrap_path, bwrap_problem
from errands.sandbox.limits import reap_orphaned_commands
from errands.sandbox.plain import PlainSandbox
from errands.sandbox.policy import Limits, SandboxPolicy

__all__ = [
    "Backend",
    "BubblewrapSandbox",
    "CommandResult",
    "Limits",
    "PlainSandbox",
    "Sandbox",
    "SandboxPolicy",
    "bwrap_path",
    "bwrap_problem",
    "create_sandbox",
    "reap_orphaned_commands",
]

Backend = Literal["auto", "bubblewrap", "none"]

log = logging.getLogger(__name__)
_warned_none = threading.Event()


def create_sandbox(backend: Backend, policy: SandboxPolicy) -> Sandbox:
    """The sandbox for ``policy``. "auto" means bubblewrap, and fails rather than fall back
    to no isolation: running without it must be a decision someone made."""
    match backend:
        case "auto" | "bubblewrap":
            problem = bwrap_problem()
            if problem is not None:
                raise ConfigError(
                    f"Commands cannot be sandboxed: {problem}. Install bubblewrap "
                    "(apt-get install bubblewrap), or set ERRANDS_SANDBOX=none to run "
                    "commands without isolation, knowingly."
                )
            return BubblewrapSandbox(policy)
        case "none":
            if not _warned_none.is_set():
                _warned_none.set()
                log.warning(
                    "Commands run WITHOUT isolation (sandbox backend 'none'): they can read "
                    "and write everything this user can, and reach the network. Only a "
                    "scrubbed environment, limits and killing the process tree protect this "
                    "machine."
                )
            return PlainSandbox(policy)
        case _:
            assert_never(backend)
