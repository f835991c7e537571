"""The seam between Errands and the commands it runs."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int | None  # None when the command was killed
    output: str  # stdout and stderr interleaved, head and tail kept when long
    duration: float
    timed_out: bool = False
    cancelled: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled

    def describe(self) -> str:
        if self.timed_out:
            return f"timed out after {self.duration:.0f}s"
        if self.cancelled:
            return "cancelled"
        return f"exit code {self.exit_code}"


class Sandbox(Protocol):
    name: str

    def run(
        self,
        command: str,
        *,
        cwd: Path,
        timeout: float,
        cancel: threading.Event | None = None,
    ) -> CommandResult: ...
