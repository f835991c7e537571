"""The real Claude Code CLI for the tests and the benchmark: found on PATH, or the test is
skipped with the reason (a failure under ``ERRANDS_TEST_SERVICES=require``, where ``.ci/run``
installs it); and a scripted model that drives it through the calc task with its own tools."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from errands.testing.scripted_llm import ChatRequest, Reply, ToolCall
from tests.support import CalcScript

REAL_KEY = "sk-ant-real-key-never-in-the-sandbox-0001"
CLAUDE = "claude-cli/"  # Claude Code's user agent


def require(problem: str | None) -> None:
    """Skip with ``problem`` (fail where CI must have everything)."""
    if problem is None:
        return
    if os.environ.get("ERRANDS_TEST_SERVICES") == "require":
        pytest.fail(problem)
    pytest.skip(problem)


def claude_problem() -> str | None:
    if shutil.which("claude"):
        return None
    return "the Claude Code CLI is not installed (npm install -g @anthropic-ai/claude-code)"


MARKERS = ("You are doing subtask", "verify commands fail", "<review>", "You changed no file")


def turn_of(req: ChatRequest) -> tuple[str, int]:
    """The prompt Errands sent last in this Claude Code session, and how many model answers
    followed it (Claude Code adds its own reminders to user messages: look for ours)."""
    for index in range(len(req.messages) - 1, -1, -1):
        message = req.messages[index]
        text = str(message.get("content") or "")
        if message.get("role") == "user" and any(m in text for m in MARKERS):
            after = req.messages[index + 1 :]
            return text, sum(1 for m in after if m.get("role") == "assistant")
    raise AssertionError(f"no Errands prompt in {req!r}")


PROBE = """
import os, urllib.request
print("KEY", os.environ.get("ANTHROPIC_API_KEY"), "BASE", os.environ.get("ANTHROPIC_BASE_URL"))
print("REAL" if "{real}" in str(os.environ) else "NO-REAL-KEY")
for url in ("http://127.0.0.1:{port}/v1/models", "http://example.com/",
            os.environ["ANTHROPIC_BASE_URL"] + "/api/event_logging/batch"):
    try:
        urllib.request.urlopen(url, timeout=5)
        print("REACHED", url)
    except Exception as exc:
        print("REFUSED", url, type(exc).__name__, str(exc)[:200])
"""


# What subtask 1 asks with ``ask``, and the option the test answers.
ASKED = {"label": "Round", "requirement": "multiply rounds its result to 6 places (ASKED)"}
QUESTION = {
    "question": "Should multiply round floating-point results?",
    "reasoning": "0.1 * 3 is 0.30000000000000004; callers may want 0.3.",
    "options": [ASKED, {"label": "Exact", "requirement": "multiply returns the raw product"}],
    "recommended": 2,
}


class ClaudeScript(CalcScript):
    """Research and planning (native) as in the calc script; Claude Code's requests (its
    user agent) edit with its own tools: Read, Edit, Write, Bash, StructuredOutput.

    ``probe``: subtask 1 also runs a Bash probe of the sandbox (its key, its way out);
    ``fail_once``: subtask 2's test first expects a wrong product, so verification fails and
    the fix goes back to the session; ``mcp``: subtask 1 calls the project's MCP server
    ``probe`` (``MCP_SERVER``); ``ask``: subtask 1 first asks the human with Errands'
    ``ask_human`` MCP tool, and goes on once its prompt holds the answer (``ASKED``).
    Without them, it is the calc script's task."""

    def __init__(
        self, *, probe: bool = True, fail_once: bool = True, mcp: bool = False, ask: bool = False
    ) -> None:
        super().__init__()
        self.mcp = mcp
        self.ask = ask
        self.probe = probe
        self.fail_once = fail_once
        self.port = 0
        self.claude: list[ChatRequest] = []

    def __call__(self, req: ChatRequest) -> Reply:
        if not req.headers.get("user-agent", "").startswith(CLAUDE):
            return super().__call__(req)
        self.claude.append(req)
        last = req.messages[-1]
        if last.get("role") == "tool" and "Structured output" in str(last.get("content")):
            return Reply.say("Done.")
        cwd = re.search(r"Primary working directory: (\S+)", req.system)
        assert cwd, "Claude Code names its working directory in the system prompt"
        here = cwd.group(1)
        prompt, step = turn_of(req)

        def read(path: str) -> Reply:
            return Reply.call("Read", file_path=f"{here}/{path}")

        def edit(path: str, old: str, new: str) -> Reply:
            return Reply.call("Edit", file_path=f"{here}/{path}", old_string=old, new_string=new)

        def report(summary: str, *decisions: str) -> Reply:
            return Reply.call("StructuredOutput", summary=summary, decisions=list(decisions))

        if "subtask 1 of 2" in prompt and self.ask and ASKED["requirement"] not in prompt:
            return [Reply.call("mcp__errands__ask_human", **QUESTION), report("Asked.")][
                min(step, 1)
            ]
        if "subtask 1 of 2" in prompt:
            probe = PROBE.format(real=REAL_KEY, port=self.port)
            bash = {"command": f"python3 - <<'EOF'\n{probe}\nEOF", "description": "probe"}
            steps = [
                read("calc.py"),
                *([Reply.call("mcp__probe__where")] if self.mcp else []),
                edit(
                    "calc.py",
                    "    return a + b\n",
                    "    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n",
                ),
                *([Reply.calls(ToolCall("Bash", bash))] if self.probe else []),
                report("Added multiply(a, b).", "Kept it a plain product."),
            ]
            return steps[min(step, len(steps) - 1)]
        if "verify commands fail" in prompt:
            return [
                read("tests/test_multiply.py"),
                edit("tests/test_multiply.py", "== 13", "== 12"),
                report("Fixed the expected product in the test."),
            ][min(step, 2)]
        if "subtask 2 of 2" in prompt:
            test = "from calc import multiply\n\n\ndef test_multiply():\n"
            test += f"    assert multiply(3, 4) == {13 if self.fail_once else 12}\n"
            return [
                Reply.call("Write", file_path=f"{here}/tests/test_multiply.py", content=test),
                report("Tested multiply."),
            ][min(step, 1)]
        if "<review>" in prompt:
            return [
                read("calc.py"),
                edit(
                    "calc.py",
                    "def multiply(a, b):\n",
                    'def multiply(a, b):\n    """Return the product of a and b."""\n',
                ),
                report("Documented multiply.", "Docstring as asked."),
            ][min(step, 2)]
        raise AssertionError(f"unexpected Claude Code prompt: {prompt[:300]}")


# A project's MCP server, committed in the repository and declared in its .errands.toml: a
# minimal stdio server (JSON-RPC lines) whose one tool says where it runs.
MCP_SERVER = """
import json, os, socket, sys
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    method = msg.get("method")
    if method == "initialize":
        result = {"protocolVersion": msg["params"]["protocolVersion"],
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "probe", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": [{"name": "where", "description": "Where this server runs.",
                             "inputSchema": {"type": "object", "properties": {}}}]}
    elif method == "tools/call":
        text = f"MCP host={socket.gethostname()} uid={os.getuid()} cwd={os.getcwd()}"
        result = {"content": [{"type": "text", "text": text}]}
    else:
        result = {}
    print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)
"""
MCP_CONFIG = '[mcp_servers.probe]\ncommand = "python3"\nargs = ["tools/mcp_probe.py"]\n'
