"""A minimal MCP stdio server in plain Python (no mcp import), so tests can start many of them cheaply.

It answers `initialize`, `tools/list` (one tool, `echo`) and `tools/call`, ignores notifications, and exits when
its stdin closes. Two options make it awkward to shut down:

- `--spawn-grandchild` starts a sleeping child process (with the same arguments) that outlives the server;
- `--stubborn` ignores SIGTERM and keeps running after stdin closes, so only SIGKILL ends it.

`--nap` also lists `nap(seconds)`, which blocks the server for that long before it answers.

`--paged` lists its tools one per `tools/list` page (echo, then shout), following MCP's pagination cursors.

Other command-line arguments (such as a test's `--marker=...`) are ignored.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

ECHO_TOOL = {
    "name": "echo",
    "description": "Return the text unchanged.",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
SHOUT_TOOL = {**ECHO_TOOL, "name": "shout", "description": "Return the text in capitals."}
NAP_TOOL = {
    "name": "nap",
    "description": "Sleep, then answer (blocking: the server reads nothing meanwhile).",
    "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}}, "required": ["seconds"]},
}


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """The JSON-RPC response to one request."""
    method, params = request["method"], request.get("params") or {}
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": params["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "tiny", "version": "0"},
        }
    elif method == "tools/list" and "--paged" not in sys.argv:
        result = {"tools": [ECHO_TOOL, NAP_TOOL] if "--nap" in sys.argv else [ECHO_TOOL]}
    elif method == "tools/list":
        result = (
            {"tools": [SHOUT_TOOL]}
            if params.get("cursor") == "page-2"
            else {"tools": [ECHO_TOOL], "nextCursor": "page-2"}
        )
    elif method == "tools/call" and params.get("name") in ("echo", "shout"):
        text = params["arguments"]["text"]
        text = text.upper() if params["name"] == "shout" else text
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    elif method == "tools/call" and params.get("name") == "nap":
        time.sleep(params["arguments"]["seconds"])
        result = {"content": [{"type": "text", "text": "rested"}], "isError": False}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": f"no method {method}"}}
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def main() -> None:
    """Answer requests line by line until stdin closes."""
    if "--spawn-grandchild" in sys.argv:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", *sys.argv[1:]])
    if "--stubborn" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for line in sys.stdin:
        message = json.loads(line)
        if "id" in message and "method" in message:
            sys.stdout.write(json.dumps(answer(message)) + "\n")
            sys.stdout.flush()
    if "--stubborn" in sys.argv:
        time.sleep(300)


if __name__ == "__main__":
    main()
