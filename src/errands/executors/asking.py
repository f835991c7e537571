"""Questions from an agent running in its own CLI (Claude Code, Codex, an ACP agent) in the
middle of a subtask.

The native loop offers an ``ask_human`` output tool; an external agent gets the same tool from
an MCP server Errands hands it (``errands``, beside the project's own servers), which the
agent starts inside its sandbox like any other: a stdlib-only script run by the sandbox's
python3. A call writes the question, as JSON, to a file in the task's ask directory (bound
writable into the sandbox) and tells the agent to end its turn. When the turn ends the
session takes the question (:func:`take_question`) and raises ``QuestionAsked``: the workflow
then pauses the task, or past the task's bound tells the agent to go on with its leaning,
exactly as for the native loop (errands.workflow.asking).

The file is the agent's, like everything the sandbox writes: it is read without following a
link, only if it is a regular file, at most ``MAX_QUESTION_BYTES``, and must validate as a
``ClarifyingQuestion``; anything else is dropped, and the agent is not believed to have asked.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path

from pydantic import ValidationError

from errands.agent.schemas import ClarifyingQuestion
from errands.mcp import RESERVED_NAME, McpServer

SERVER_NAME = RESERVED_NAME
TOOL = "ask_human"
MAX_QUESTION_BYTES = 256 * 1024
_PYTHON = "/usr/bin/python3"  # the system's, as the egress forwarder's: always in the sandbox

TOOL_DESCRIPTION = (
    "Stop and ask the human a question whose answer changes what you implement, when the "
    "task, its answered questions and the code leave a real choice open. Give 2-4 options, "
    "each with the requirement it implies, and the one you recommend. After calling it, end "
    "your turn at once, changing nothing more: the task pauses until the human answers, then "
    "this subtask is redone from its start with the answer."
)
TOOL_REPLY = (
    "Your question is recorded for the human. End your turn now without further changes; "
    "the subtask is redone with the answer."
)

# JSON-RPC 2.0 over stdio, one message per line: the subset of MCP a client needs for tools.
_SERVER = r"""
import json, os, sys

QUESTION_FILE = sys.argv[1]
TOOL = {tool}

def reply(msg_id, result=None, error=None):
    body = {{"jsonrpc": "2.0", "id": msg_id}}
    body.update({{"error": error}} if error else {{"result": result}})
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()

for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if not isinstance(msg, dict) or "id" not in msg:
        continue  # a notification (notifications/initialized, cancellations)
    method, params = msg.get("method"), msg.get("params") or {{}}
    if method == "initialize":
        reply(msg["id"], {{
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {{"tools": {{}}}},
            "serverInfo": {{"name": "errands", "version": "1"}},
        }})
    elif method == "tools/list":
        reply(msg["id"], {{"tools": [TOOL]}})
    elif method == "tools/call" and params.get("name") == TOOL["name"]:
        temporary = QUESTION_FILE + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(params.get("arguments") or {{}}, handle)
        os.replace(temporary, QUESTION_FILE)
        reply(msg["id"], {{"content": [{{"type": "text", "text": {reply!r}}}]}})
    elif method == "ping":
        reply(msg["id"], {{}})
    else:
        reply(msg["id"], error={{"code": -32601, "message": "unknown method"}})
"""


def ask_dir(state_dir: Path) -> Path:
    """Where the server and the question live: bind it writable into the agent's sandbox."""
    return state_dir / "ask"


def ask_server(state_dir: Path) -> McpServer:
    """The MCP server offering ``ask_human``, written into the task's ask directory (made
    here); any question left from an earlier turn is dropped."""
    directory = ask_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    tool = {
        "name": TOOL,
        "description": TOOL_DESCRIPTION,
        "inputSchema": ClarifyingQuestion.model_json_schema(),
    }
    script = directory / "server.py"
    script.unlink(missing_ok=True)  # the sandbox may have left a link here
    script.write_text(_SERVER.format(tool=json.dumps(tool), reply=TOOL_REPLY), encoding="utf-8")
    _question_file(state_dir).unlink(missing_ok=True)
    return McpServer(
        name=SERVER_NAME, command=_PYTHON, args=(str(script), str(_question_file(state_dir)))
    )


def take_question(state_dir: Path) -> ClarifyingQuestion | None:
    """The question the agent asked during the turn that just ended, removing it; None if it
    asked none (or left something that is not a question: see the module)."""
    path = _question_file(state_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ELOOP):
            raise
        if exc.errno == errno.ELOOP:
            path.unlink(missing_ok=True)
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, MAX_QUESTION_BYTES + 1)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):  # a directory the agent made there stays
            path.unlink()
    if len(data) > MAX_QUESTION_BYTES:
        return None
    try:
        return ClarifyingQuestion.model_validate_json(data)
    except ValidationError:
        return None


def _question_file(state_dir: Path) -> Path:
    return ask_dir(state_dir) / "question.json"
