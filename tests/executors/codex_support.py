"""The real Codex CLI for the tests: found on PATH, or the test is skipped with the reason
(a failure under ``ERRANDS_TEST_SERVICES=require``, where ``.ci/run`` installs it); and a
scripted model that drives it through a subtask the way a coding model would."""

from __future__ import annotations

import json
import os
import shutil

import httpx
import pytest

from errands.executors.codex_cli import CODEX_INSTALL
from errands.testing import ChatRequest, Reply
from tests.support import CalcScript


def codex_or_skip() -> str:
    path = shutil.which("codex")
    if path is None:
        message = f"the Codex CLI is not installed ({CODEX_INSTALL})"
        if os.environ.get("ERRANDS_TEST_SERVICES") == "require":
            pytest.fail(message)
        pytest.skip(message)
    return path


def report(summary: str, *decisions: str, no_change_reason: str | None = None) -> Reply:
    """Codex's final message: the JSON its output schema asks for."""
    text = json.dumps(
        {"summary": summary, "decisions": list(decisions), "no_change_reason": no_change_reason}
    )
    return Reply.say(text)


def shell(command: str) -> Reply:
    """A call of Codex's shell tool."""
    return Reply.call("exec_command", cmd=command)


def last_turn_results(request: ChatRequest) -> list[str]:
    """The tool results since the last user message: what this turn's commands printed."""
    results: list[str] = []
    for message in request.messages:
        if message.get("role") == "user":
            results = []
        elif message.get("role") == "tool":
            results.append(str(message.get("content")))
    return results


def codex_phase(request: ChatRequest) -> str:
    """The Errands phase Codex is in: the last one named, whether by the session's developer
    instructions or, in a resumed session, at the head of a later turn's prompt."""
    phase = "unknown"
    for message in request.messages:
        if message.get("role") in ("system", "developer", "user"):
            for line in str(message.get("content")).splitlines():
                if line.startswith("Errands phase: "):
                    phase = line.removeprefix("Errands phase: ").rstrip(".")
    return phase


# -- the calc task, typed by Codex ------------------------------------------------------

ADD_MULTIPLY = (
    "python3 -c \"import pathlib; p = pathlib.Path('calc.py'); "
    "p.write_text(p.read_text() + '\\n\\ndef multiply(a, b):\\n    return a * b\\n')\""
)


def write_test(product: int) -> str:
    return (
        "mkdir -p tests && printf 'from calc import multiply\\n\\n\\ndef test_multiply():\\n"
        f"    assert multiply(3, 4) == {product}\\n' > tests/test_multiply.py"
    )


FIX_TEST = "sed -i 's/== 13/== 12/' tests/test_multiply.py && python3 -m pytest -q"
DOCUMENT = (
    "python3 -c \"import pathlib; p = pathlib.Path('calc.py'); "
    "p.write_text(p.read_text().replace('def multiply(a, b):\\n', "
    '\'def multiply(a, b):\\n    \\"\\"\\"Return the product of a and b.\\"\\"\\"\\n\'))"'
)


class CodexCalcScript(CalcScript):
    """The calc task: research and plan natively (CalcScript), each subtask and the revise
    round by Codex (Responses API) with shell commands. Subtask 1 also looks around the
    sandbox: its environment, and whether anything but the proxy's model route answers."""

    def __init__(self, *, probe: bool = True, fail_once: bool = True) -> None:
        super().__init__()
        self.probe = probe  # look around the sandbox in subtask 1 (the bench does not)
        self.fail_once = fail_once  # subtask 2's test is wrong until verification fails
        self.upstream_port = 0  # the scripted server's own port on the host's loopback
        self.client: httpx.Client | None = None
        self.cap_task = 0  # lower this task's cap when Codex first asks for it

    def __call__(self, req: ChatRequest) -> Reply:
        if req.api != "responses":
            return super().__call__(req)
        phase = codex_phase(req)
        self.phases.append(f"codex-{phase}")
        prompt = req.last_user or ""
        done = last_turn_results(req)
        if "Add multiply again" in prompt and self.client is not None:
            if not done:  # lowered below what the task has spent: the next call must not go
                lowered = self.client.put(f"/api/tasks/{self.cap_task}/budget", json={"usd": 1e-6})
                assert lowered.status_code == 200, lowered.text
                return shell("echo working")
            return report("should never be asked")
        if phase == "execute" and "subtask 1 of 2" in prompt:
            probes = [
                shell("env | sort"),
                # Another host, the scripted server itself on the host's loopback, and a path
                # of the proxy that is not a model call.
                shell(
                    "curl -sS --max-time 5 https://example.com/ ; echo curl-exit=$? ; "
                    f"curl -sS --max-time 5 http://127.0.0.1:{self.upstream_port}/v1/models ; "
                    "echo loopback-exit=$? ; "
                    'curl -sS --max-time 5 "$OPENAI_BASE_URL/../elsewhere" ; echo proxy-exit=$?'
                ),
            ]
            steps = [
                shell(ADD_MULTIPLY),
                *(probes if self.probe else []),
                report("Added multiply(a, b).", "Kept it a plain product."),
            ]
            return steps[min(len(done), len(steps) - 1)]
        if phase == "execute" and "verify commands fail" in prompt:
            # The fix turn, in the same session: the failure report is the prompt.
            assert "assert 12 == 13" in prompt, prompt
            return [shell(FIX_TEST), report("Fixed the expected product.")][min(len(done), 1)]
        if phase == "execute" and "subtask 2 of 2" in prompt:
            product = 13 if self.fail_once else 12
            return [shell(write_test(product)), report("Tested multiply.")][min(len(done), 1)]
        if phase == "revise":
            return [shell(DOCUMENT), report("Documented multiply.", "Docstring as asked.")][
                min(len(done), 1)
            ]
        raise AssertionError(f"unexpected Codex request in phase {phase}: {prompt[:300]!r}")
