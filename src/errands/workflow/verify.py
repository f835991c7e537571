"""Run a project's verify commands in a workspace, through the sandbox."""

from __future__ import annotations

from functools import partial
from typing import Any

from errands.sandbox import Sandbox
from errands.store.events import clip
from errands.workflow.context import JobContext

VERIFY_OUTPUT_KEPT = 6_000  # characters of each command's output stored on the subtask


def run_verification(
    ctx: JobContext, sandbox: Sandbox, commands: list[str], timeout: float
) -> list[dict[str, Any]]:
    """Run every command (not stopping at the first failure: the agent fixes all at once)."""
    results: list[dict[str, Any]] = []
    for command in commands:
        ctx.check_cancelled()
        ctx.emit("verify.started", f"verify: {command}", command=command)
        result = sandbox.run(
            command,
            timeout=timeout,
            cancel=ctx.cancel,
            on_output=partial(report_output, ctx, command),
        )
        ctx.check_cancelled()
        outcome = {
            "command": command,
            "exit_code": result.exit_code,
            "ok": result.ok,
            "timed_out": result.timed_out,
            "duration": round(result.duration, 3),
            "output": clip(result.output, VERIFY_OUTPUT_KEPT),
        }
        results.append(outcome)
        ctx.emit(
            "verify.finished",
            f"verify: {command} → {'passed' if result.ok else result.describe()}",
            **outcome,
        )
    return results


def failure_report(results: list[dict[str, Any]]) -> str:
    parts = []
    for r in results:
        if not r["ok"]:
            status = "timed out" if r["timed_out"] else f"exit code {r['exit_code']}"
            parts.append(f"$ {r['command']}\n[{status}]\n{r['output']}")
    return "\n\n".join(parts)


def report_output(ctx: JobContext, command: str, tail: str) -> None:
    """A running command's latest output, for live logs (the full output comes at the end)."""
    last_line = tail.rstrip().rsplit("\n", 1)[-1][:200]
    ctx.emit("command.output", f"{command}: {last_line}", command=command, tail=tail)
