"""Backend "none": commands as plain child processes, with a scrubbed environment and limits
but no filesystem or network isolation. Only ever used when chosen explicitly."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from errands.errors import CommandError, ConfigError
from errands.sandbox.base import CommandResult, Launch
from errands.sandbox.policy import SandboxPolicy
from errands.sandbox.process import run_process


class PlainSandbox:
    """No isolation: the command sees the host's files and network as this user. What it gets
    is ``policy.env`` and nothing else, its own process group (killed with everything in it on
    timeout, cancel and exit), the rlimits of ``policy.limits``, and a pids cgroup where the
    host offers one. ``readable``, ``writable``, ``hidden`` and ``network`` are not enforced."""

    name = "none"

    def __init__(self, policy: SandboxPolicy) -> None:
        if policy.egress is not None:
            # Its commands share the host's network: there is no namespace to put the
            # forwarder in, and a port on the host's loopback would be every local user's.
            raise ConfigError(
                "The egress proxy (model keys injected outside, an allowlist) needs the "
                "bubblewrap sandbox; sandbox 'none' gives commands the host's network instead."
            )
        self.policy = policy

    def run(
        self,
        command: str,
        *,
        timeout: float,
        cancel: threading.Event | None = None,
        network: bool = False,
        on_output: Callable[[str], None] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> CommandResult:
        del network  # there is nothing to turn off
        with tempfile.TemporaryDirectory(prefix="errands-home-") as home:
            env = self.environment(home)
            workspace = self.policy.workspace
            if not workspace.is_dir():
                raise CommandError(f"Cannot start {command!r} in {workspace}: no such directory")
            result = run_process(
                ["bash", "-c", command],
                command=command,
                env=env,
                cwd=workspace,
                limits=self.policy.limits,
                timeout=timeout,
                cancel=cancel,
                on_output=on_output,
                on_line=on_line,
            )
        return result

    def launch(self, command: str) -> Launch:
        workspace = self.policy.workspace
        if not workspace.is_dir():
            raise CommandError(f"Cannot start {command!r} in {workspace}: no such directory")
        home = tempfile.mkdtemp(prefix="errands-home-")
        return Launch(
            command=command,
            argv=["bash", "-c", command],
            env=self.environment(home),
            cwd=workspace,
            limits=self.policy.limits,
            cleanup=(Path(home),),
        )

    def environment(self, home: str) -> dict[str, str]:
        return {
            **self.policy.env,
            # A throwaway HOME keeps tools from reading the user's dotfiles and credentials,
            # and keeps their caches out of the workspace (and the commit).
            "HOME": home,
            "TMPDIR": home,
            "PYTHONDONTWRITEBYTECODE": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "CI": "true",
        }
