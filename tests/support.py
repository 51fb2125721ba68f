"""Paths and helpers shared by test modules (fixtures live in `tests/conftest.py`).

A plain module rather than fixtures, because module-level constants and parametrize lists need these at import time.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psutil

from hud_vf_gym.testing import Policy, ScriptedChatServer

TESTS = Path(__file__).resolve().parent
REPO_ROOT = TESTS.parent
SERVERS = TESTS / "servers"
DATA = TESTS / "data"

# Test MCP servers, run by path over stdio (see each file's docstring).
COUNTER_SERVER = SERVERS / "counter.py"  # a hud-blank style counter with actions that fail, crash or hang
ECHO_SERVER = SERVERS / "echo.py"  # FastMCP tools that misbehave on purpose; also serves HTTP and SSE
TINY_SERVER = SERVERS / "tiny.py"  # plain Python, starts in milliseconds; options that make it hard to stop
COMPUTER_STUB = SERVERS / "computer_stub.py"  # a HUD-style `computer` tool that records what it was asked
REAPER = TESTS / "reaper.py"  # runs a command as a child subreaper; see `run_reaping`

COUNTER_CONFIG = DATA / "counter.yaml"  # the environment config for COUNTER_SERVER
PUBLISHED_CONFIGS = DATA / "published"  # configs as HUD publishes them
CONFIGS = REPO_ROOT / "configs"
TASKSETS = REPO_ROOT / "hud_vf_gym" / "tasksets"

TEXT_2048_MODULE = "hud_vf_gym.environments.text_2048"  # `python -m` this for the built-in 2048 server

Serve = Callable[[Policy], ScriptedChatServer]
"""The type of the `serve` fixture: start a scripted chat server for a policy."""

# The counter server's happy path: three increments, then done().
ACT_THREE_TIMES = ["<tool>act()</tool>", "<tool>act(1)</tool>", "<tool>act(step=1)</tool>", "<tool>done()</tool>"]


def new_marker(prefix: str = "hud-vf-gym-test") -> str:
    """A unique string to put on a server's command line, so a test finds exactly the processes it started."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def processes_with(marker: str) -> list[psutil.Process]:
    """Running processes with `marker` in one of their command-line arguments (zombies have none, so never count)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in process.info["cmdline"] or []):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def run_reaping(command: Sequence[str], **run_kwargs: Any) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run a command (as `subprocess.run(..., text=True)`) and return it with the processes it left running.

    The command runs under `tests/reaper.py`, a child subreaper, so every process it starts stays a descendant even
    after its parent exits; those still running after it exits are returned (command lines) and killed. Only this
    command's processes count: a test stays correct while other jobs on the machine run the same servers.
    """
    with tempfile.TemporaryDirectory(prefix="hud-vf-gym-reaper-") as scratch:
        report = f"{scratch}/left.json"
        completed = subprocess.run([sys.executable, str(REAPER), report, "--", *command], text=True, **run_kwargs)
        with open(report, encoding="utf-8") as file:
            left: list[str] = json.load(file)
    return completed, left


def live_children() -> set[psutil.Process]:
    """This test process's descendants that still run (zombies and exited ones do not count)."""
    alive = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                alive.add(child)
        except psutil.NoSuchProcess:
            continue
    return alive


def counter_row(marker: str, task_id: str = "count-to-3", **fields: Any) -> dict[str, Any]:
    """A HUD task row on the counter server (its command line carries `marker`): count to 3, graded by evaluate."""
    row: dict[str, Any] = {
        "id": task_id,
        "prompt": "Increase the counter to 3, then call done().",
        "mcp_config": {"counter": {"command": sys.executable, "args": [str(COUNTER_SERVER), f"--marker={marker}"]}},
        "setup_tool": {"name": "setup", "arguments": {}},
        "evaluate_tool": {"name": "evaluate", "arguments": {"target": 3}},
    }
    row.update(fields)
    return row


@asynccontextmanager
async def http_echo_server(
    marker: str, transport: str = "streamable-http", *, start_timeout_s: float = 30.0
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """The echo server over HTTP on a free 127.0.0.1 port: its URL (the path selects the transport) and its process.

    The server is killed when the block ends.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [sys.executable, str(ECHO_SERVER), f"--transport={transport}", f"--port={port}", f"--marker={marker}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with anyio.fail_after(start_timeout_s):
            while True:
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await anyio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/{'sse' if transport == 'sse' else 'mcp'}", process
    finally:
        process.kill()
        process.wait()
