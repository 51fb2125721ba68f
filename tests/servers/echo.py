"""An MCP test server whose tools misbehave on purpose: errors, hangs, crashes, images, odd grades.

Run it by path (`python tests/servers/echo.py [--marker=X] [--transport=stdio|streamable-http|sse] [--port=N]`).
`--marker` is ignored by the server; tests put a unique one on the command line to find leftover processes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from typing import Any

import anyio
from mcp.shared.exceptions import UrlElicitationRequiredError
from mcp.types import ElicitRequestURLParams, ImageContent, TextContent
from pydantic import Field

from hud_vf_gym.runtime.mcp_compat import create_server, run_server

# The smallest valid PNG: one transparent pixel.
PNG_PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100ffff03000006000557bfabd40000000049454e44ae426082"
    )
).decode()

mcp = create_server("echo", log_level="WARNING")


@mcp.tool()
def echo(text: str = Field(description="What to send back.")) -> str:
    """Return the text unchanged."""
    return text


@mcp.tool(structured_output=False)
def fail() -> str:
    """Fail the way text-2048 does: an ERROR: text with isError false."""
    return "ERROR: Cannot move left - no valid moves in that direction"


@mcp.tool()
def raise_error() -> str:
    """Raise inside the tool, which FastMCP turns into an isError result."""
    raise ValueError("the tool broke")


@mcp.tool()
def needs_login() -> str:
    """Answer with a JSON-RPC error (not a result), the way a protocol-level failure arrives."""
    raise UrlElicitationRequiredError(
        [ElicitRequestURLParams(mode="url", message="log in", url="https://example.invalid/login", elicitationId="1")]
    )


@mcp.tool()
def evaluate(reward: float = 1.0, done: bool = True) -> dict[str, Any]:
    """Return a HUD EvaluationResult as structuredContent (and as JSON text)."""
    return {"reward": reward, "done": done, "content": f"reward {reward}", "info": {"source": "echo"}}


@mcp.tool()
def evaluate_error() -> dict[str, Any]:
    """Return an evaluation that failed: isError true inside structuredContent, while the MCP isError is false."""
    return {"reward": 0.0, "done": False, "content": "sheet not found", "isError": True}


@mcp.tool(structured_output=False)
def grade_text(grade: float = 0.5) -> str:
    """Return a grade as JSON text only, with no structuredContent."""
    return json.dumps({"grade": grade, "done": False})


@mcp.tool(structured_output=False)
def image() -> list[TextContent | ImageContent]:
    """Return a text block and a PNG screenshot."""
    return [TextContent(type="text", text="clicked"), ImageContent(type="image", data=PNG_PIXEL, mimeType="image/png")]


@mcp.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then answer (tests give it more seconds than their timeout)."""
    await anyio.sleep(seconds)
    return "slept"


@mcp.tool()
def die(exit_code: int = 7) -> str:
    """Write a last word to stderr and exit the process mid-call, without answering."""
    sys.stderr.write("echo server: dying on purpose\n")
    sys.stderr.flush()
    os._exit(exit_code)


@mcp.tool()
def show_env(name: str) -> str:
    """Return an environment variable of the server process ("" when unset)."""
    return os.environ.get(name, "")


def main() -> None:
    """Serve over the transport named on the command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--marker", default="")
    parser.add_argument("--transport", default="stdio", choices=["stdio", "streamable-http", "sse"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--extra-tool", default="", help="also serve a tool of this name (it returns its name)")
    options = parser.parse_args()
    if options.extra_tool:
        mcp.add_tool(lambda: options.extra_tool, name=options.extra_tool, description="A tool only this server has.")
    run_server(mcp, options.transport, port=options.port)


if __name__ == "__main__":
    main()
