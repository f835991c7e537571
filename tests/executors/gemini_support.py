"""The real Gemini CLI (``gemini --acp``, an ACP agent) for the tests: found on PATH, or the
test is skipped with the reason (a failure under ``ERRANDS_TEST_SERVICES=require``, where
``.ci/run`` installs it); and a scripted model that drives it through the calc task with its
own tools (read_file, replace, write_file, run_shell_command)."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from errands.testing.scripted_llm import ChatRequest, Reply
from tests.executors.claude_support import turn_of
from tests.support import CalcScript

REAL_KEY = "AIza-real-google-key-never-in-the-sandbox-0001"
GEMINI = "GeminiCLI"  # Gemini CLI's user agent
COMMAND = "gemini --acp --model gemini-2.5-flash"


def gemini_problem() -> str | None:
    if shutil.which("gemini"):
        return None
    return "Gemini CLI is not installed (npm install -g @google/gemini-cli)"


def require_gemini() -> None:
    problem = gemini_problem()
    if problem is None:
        return
    if os.environ.get("ERRANDS_TEST_SERVICES") == "require":
        pytest.fail(problem)
    pytest.skip(problem)


PROBE = """
import os, urllib.request
print("KEY", os.environ.get("GEMINI_API_KEY"), "BASE", os.environ.get("GOOGLE_GEMINI_BASE_URL"))
print("REAL" if "{real}" in str(os.environ) else "NO-REAL-KEY")
for url in ("http://127.0.0.1:{port}/v1/models", "http://example.com/",
            os.environ["GOOGLE_GEMINI_BASE_URL"] + "/v1beta/files"):
    try:
        urllib.request.urlopen(url, timeout=5)
        print("REACHED", url)
    except Exception as exc:
        print("REFUSED", url, type(exc).__name__, str(exc)[:200])
"""


def report(summary: str, *decisions: str) -> Reply:
    body = {"summary": summary, "decisions": list(decisions), "no_change_reason": None}
    return Reply.say(f"Done.\n{json.dumps(body)}")


class GeminiScript(CalcScript):
    """Research and planning (native) as in the calc script; Gemini CLI's requests (its user
    agent) edit with its own tools, which it serves through Errands' ACP client (files) or
    runs itself inside its sandbox (shell). ``probe``: subtask 1 probes the sandbox (its
    key, its way out); ``fail_once``: subtask 2's test first expects a wrong product, so
    verification fails and the fix goes back to the same ACP session."""

    def __init__(self, *, probe: bool = True, fail_once: bool = True) -> None:
        super().__init__()
        self.probe = probe
        self.fail_once = fail_once
        self.port = 0
        self.gemini: list[ChatRequest] = []

    def __call__(self, req: ChatRequest) -> Reply:
        if not req.headers.get("user-agent", "").startswith(GEMINI):
            return super().__call__(req)
        self.gemini.append(req)
        context = "\n".join(str(m.get("content")) for m in req.messages if m.get("role") == "user")
        found = re.search(r"Workspace Directories:\*\*\s*-\s*(.+?)\s*$", context, re.MULTILINE)
        assert found, "Gemini CLI names its workspace in its session context"
        here = found.group(1)
        prompt, step = turn_of(req)

        def read(path: str) -> Reply:
            return Reply.call("read_file", file_path=f"{here}/{path}")

        def edit(path: str, old: str, new: str) -> Reply:
            return Reply.call(
                "replace",
                file_path=f"{here}/{path}",
                instruction="As the subtask asks.",
                old_string=old,
                new_string=new,
            )

        if "verify commands fail" in prompt:
            return [
                read("tests/test_multiply.py"),
                edit("tests/test_multiply.py", "== 13", "== 12"),
                report("Fixed the expected product in the test."),
            ][min(step, 2)]
        if "subtask 1 of 2" in prompt:
            probe = PROBE.format(real=REAL_KEY, port=self.port)
            steps = [
                read("calc.py"),
                edit(
                    "calc.py",
                    "    return a + b\n",
                    "    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n",
                ),
                Reply.call(
                    "run_shell_command",
                    command=f"python3 - <<'EOF'\n{probe}\nEOF",
                    description="probe the sandbox",
                ),
                report("Added multiply(a, b).", "Kept it a plain product."),
            ]
            if not self.probe:
                del steps[2]
            return steps[min(step, len(steps) - 1)]
        if "subtask 2 of 2" in prompt:
            test = "from calc import multiply\n\n\ndef test_multiply():\n"
            test += f"    assert multiply(3, 4) == {13 if self.fail_once else 12}\n"
            return [
                Reply.call("write_file", file_path=f"{here}/tests/test_multiply.py", content=test),
                report("Tested multiply."),
            ][min(step, 1)]
        if "<review>" in prompt:
            return [
                edit(
                    "calc.py",
                    "def multiply(a, b):\n",
                    'def multiply(a, b):\n    """Return the product of a and b."""\n',
                ),
                report("Documented multiply.", "Docstring as asked."),
            ][min(step, 1)]
        raise AssertionError(f"unexpected Gemini CLI prompt: {prompt[:300]}")
