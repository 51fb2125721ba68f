"""A counter MCP server in the style of HUD's hud-blank, with actions that fail on purpose for rollout tests.

Run it by path: `python tests/servers/counter.py [--marker=X]` (stdio). `--marker` is ignored; tests put a unique
one on the command line to find leftover processes.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio

from hud_vf_gym.runtime.mcp_compat import create_server, run_server

mcp = create_server("counter", log_level="WARNING")
_state = {"count": 0}


@mcp.tool()
def setup(start: int = 0) -> str:
    """Reset the counter (a plain, non-hub setup tool)."""
    _state["count"] = start
    return f"Counter reset to {start}"


@mcp.tool()
def act(step: int = 1) -> str:
    """Add `step` to the counter."""
    _state["count"] += step
    return f"Action performed. Current count: {_state['count']}"


@mcp.tool()
def fail() -> str:
    """Answer with a text-level error, as text-2048 does."""
    return "ERROR: this action always fails"


@mcp.tool()
def crash() -> str:
    """Kill the server in the middle of a call."""
    os._exit(3)


@mcp.tool()
async def hang() -> str:
    """Never answer in time."""
    await anyio.sleep(3600)
    return "too late"


@mcp.tool()
def evaluate(target: int = 3, broken: bool = False) -> dict[str, Any]:
    """Grade the count against `target`; `broken` reports a failed evaluation inside the result, as HUD does."""
    count = _state["count"]
    return {
        "reward": 0.0 if broken else min(1.0, count / target),
        "done": count >= target,
        "content": f"count {count} of {target}",
        "isError": broken,
    }


def main() -> None:
    """Serve over stdio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--marker", default="")
    parser.parse_args()
    run_server(mcp)


if __name__ == "__main__":
    main()
