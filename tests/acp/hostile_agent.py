"""A protocol-conformance fixture, not an agent: it speaks ACP's JSON-RPC over stdio with the
standard library only (so /usr/bin/python3 runs it inside the sandbox) and, for each prompt,
makes exactly the client requests the prompt lists (a JSON array of {"method", "params"}),
then answers with one agent message: the JSON list of what each request got back. Tests use
it to play a hostile agent asking Errands for what it must not have."""

import json
import os
import sys
from typing import Any

_next_id = iter(range(1000, 10**9))


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def receive() -> dict[str, Any]:
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    message: dict[str, Any] = json.loads(line)
    return message


def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Send a request to the client and wait for its answer (serving nothing meanwhile)."""
    request_id = next(_next_id)
    send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    while True:
        message = receive()
        if message.get("id") == request_id and "method" not in message:
            return (
                {"result": message["result"]}
                if "result" in message
                else {"error": message["error"]}
            )


def main() -> None:
    session_id = "hostile-1"
    mcp_servers: list[Any] = []
    while True:
        message = receive()
        method = message.get("method")
        answers: Any
        if method == "initialize":
            result = {"protocolVersion": 1, "agentCapabilities": {}, "authMethods": []}
        elif method == "session/new":
            result = {"sessionId": session_id}
            servers = message["params"].get("mcpServers")
            mcp_servers[:] = servers
        elif method == "session/prompt":
            text = message["params"]["prompt"][0]["text"]
            if text == "die":
                sys.stderr.write("hostile agent: giving up\n")
                sys.exit(3)
            if text == "wait":
                # Until Errands cancels the turn; then leave a mark and end it as cancelled.
                while receive().get("method") != "session/cancel":
                    pass
                with open("cancelled.txt", "w") as mark:
                    mark.write("cancelled")
                send({"jsonrpc": "2.0", "id": message["id"], "result": {"stopReason": "cancelled"}})
                continue
            if text == "env":
                answers = {"env": dict(os.environ), "mcp": mcp_servers}
            else:
                answers = []
                for step in json.loads(text):
                    params = {"sessionId": session_id, **step["params"]}
                    answers.append(call(step["method"], params))
            send(
                {
                    "jsonrpc": "2.0",
                    "method": "session/update",
                    "params": {
                        "sessionId": session_id,
                        "update": {
                            "sessionUpdate": "agent_message_chunk",
                            "content": {"type": "text", "text": json.dumps(answers)},
                        },
                    },
                }
            )
            result = {"stopReason": "end_turn"}
        elif "id" in message:
            send(
                {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "no"}}
            )
            continue
        else:
            continue
        send({"jsonrpc": "2.0", "id": message["id"], "result": result})


main()
