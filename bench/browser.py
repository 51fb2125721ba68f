"""Latency of each `computer` action on the built-in browser server, and browser rollouts/s through HUDGym.

Work units:

1. per action: one server over a bare `mcp` client (no harness), task `log-in` (seed 0) open; every action is
   timed `--calls` times as a client sees it (MCP round trip + the action + the settle wait + the screenshot or the
   text description). `setup` and `evaluate` are timed the same way, for our page and for a MiniWoB++ page; server
   start is spawn + initialize + the first setup (which waits for the browser launch).
2. rollouts/s: `HUDGym` + verifiers' `env.evaluate` with the default config and a fixed 6-turn policy (screenshot,
   click, type, key, scroll, done) behind `ScriptedChatServer`, on the first tasks of the built-in `browser`
   taskset, at each concurrency twice: a fresh server (and Chromium) per rollout (`sessions.reuse: false`, the
   baseline) and a warm one per slot (`per_slot`: the same browser, a new context per rollout's setup). Warm
   includes starting its pool. Both must give the same rewards, and no Chromium may be left after the close.

Run: `python bench/browser.py [--calls 20] [--rollouts 8] [--concurrency 1 4] [--json PATH] [--quick]`
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import verifiers as vf
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, ImageContent
from openai import AsyncOpenAI

from hud_vf_gym import HUDGym, load_config, load_taskset
from hud_vf_gym.runtime.mcp_compat import is_error
from hud_vf_gym.testing import FixedRepliesPolicy, ScriptedChatServer

SERVER_ARGS = ["-m", "hud_vf_gym.environments.browser"]
SAMPLING = {"temperature": 0.0, "max_tokens": 64}
CALL_TIMEOUT_S = 60.0
ROLLOUT_REPLIES = (
    "<think>Look first.</think><tool>screenshot()</tool>",
    "<think>Into the field.</think><tool>click(190, 148)</tool>",
    '<think>Type it.</think><tool>type("maya7")</tool>',
    '<think>Select all.</think><tool>key("ctrl+a")</tool>',
    '<think>Look below.</think><tool>scroll("down", 3)</tool>',
    "<think>Finished.</think><tool>done()</tool>",
)
# name -> computer arguments; each is timed on the open log-in page
ACTIONS: dict[str, dict[str, Any]] = {
    "screenshot": {"action": "screenshot"},
    "screenshot (text)": {"action": "screenshot", "observation": "text"},
    "screenshot (both)": {"action": "screenshot", "observation": "both"},
    "click": {"action": "click", "x": 190, "y": 148},
    "write": {"action": "write", "text": "maya7"},
    "press": {"action": "press", "keys": ["ctrl", "a"]},
    "scroll": {"action": "scroll", "x": 640, "y": 400, "scroll_y": 3},
    "move": {"action": "move", "x": 300, "y": 300},
    "drag": {"action": "drag", "path": [[100, 300], [400, 320]]},
    "wait (0 ms)": {"action": "wait", "time": 0},
}


def _milliseconds(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:8.1f} ms  (p90 {p90 * 1000:7.1f} ms, n={len(ordered)})"


async def _timed(call: Callable[[], Awaitable[CallToolResult]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        result = await asyncio.wait_for(call(), CALL_TIMEOUT_S)
        samples.append(time.perf_counter() - started)
        if is_error(result):
            raise RuntimeError(f"call failed: {result.content}")
    return samples


async def _server_start() -> float:
    """Spawn + initialize + the first setup of a fresh server (the cost every rollout pays)."""
    started = time.perf_counter()
    parameters = StdioServerParameters(command=sys.executable, args=SERVER_ARGS)
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("setup", {"name": "open_task", "arguments": {"task": "log-in"}})
        return time.perf_counter() - started


async def _screenshot_bytes(session: ClientSession, tasks: list[str]) -> dict[str, int]:
    """The PNG size of one screenshot of each task's first screen (what every image observation costs)."""
    sizes = {}
    for task in tasks:
        await session.call_tool("setup", {"name": "open_task", "arguments": {"task": task}})
        result = await session.call_tool("computer", {"action": "screenshot"})
        [image] = [block for block in result.content if isinstance(block, ImageContent)]
        sizes[task] = len(base64.b64decode(image.data))
    return sizes


async def measure_actions(calls: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Time every action, setup and evaluate on one server; also measure screenshot sizes."""
    results: dict[str, list[float]] = {"server start (spawn+init+first setup)": [await _server_start()]}
    parameters = StdioServerParameters(command=sys.executable, args=SERVER_ARGS)
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
        await session.initialize()

        def setup(task: str) -> Callable[[], Awaitable[CallToolResult]]:
            arguments = {"name": "open_task", "arguments": {"task": task}}
            return lambda: session.call_tool("setup", arguments)

        await setup("log-in")()  # waits for the browser launch: not part of any sample
        results["setup (own page)"] = await _timed(setup("log-in"), calls)
        results["setup (MiniWoB++)"] = await _timed(setup("miniwob/login-user"), calls)
        await setup("log-in")()
        for name, arguments in ACTIONS.items():
            results[name] = await _timed(lambda arguments=arguments: session.call_tool("computer", arguments), calls)
        evaluate = {"name": "task_reward", "arguments": {}}
        results["evaluate (task_reward)"] = await _timed(lambda: session.call_tool("evaluate", evaluate), calls)
        sizes = await _screenshot_bytes(session, ["log-in", "triage-inbox", "scroll-to-find", "miniwob/login-user"])
    return results, sizes


async def measure_rollouts(rollouts: int, concurrency: int, reuse: Any) -> tuple[float, list[dict[str, Any]], int]:
    """Run `rollouts` rollouts at `concurrency`; return the wall time, the outputs and the Chromiums left after."""
    tasks = load_taskset("browser").tasks[:rollouts]
    env = HUDGym(load_config("default", max_turns=len(ROLLOUT_REPLIES), session_reuse=reuse), tasks)
    with ScriptedChatServer(FixedRepliesPolicy(list(ROLLOUT_REPLIES))) as chat:
        async with AsyncOpenAI(base_url=chat.base_url, api_key="x", max_retries=0) as openai_client:
            started = time.perf_counter()
            try:
                results = await env.evaluate(
                    vf.OpenAIChatCompletionsClient(openai_client),
                    "scripted",
                    sampling_args=SAMPLING,
                    num_examples=-1,
                    rollouts_per_example=1,
                    max_concurrent=concurrency,
                )
                elapsed = time.perf_counter() - started
            finally:
                await env.harness.close_all()  # the warm servers (and their browsers) close with the environment
    return elapsed, list(results["outputs"]), len(_chromium_left())


def _chromium_left() -> list[psutil.Process]:
    """Chromium processes this bench started that still run (children of its servers, at any depth)."""
    left = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "chrom" in child.name() and child.status() != psutil.STATUS_ZOMBIE:
                left.append(child)
        except psutil.Error:
            continue
    return left


async def main(options: argparse.Namespace) -> dict[str, Any]:
    """Run both measurements and print them."""
    report: dict[str, Any] = {"actions": {}, "rollouts": {}}
    print(f"Per action (one server, log-in page, {options.calls} calls each; median and p90 as the client sees it):")
    timings, sizes = await measure_actions(options.calls)
    for name, samples in timings.items():
        report["actions"][name] = {"median_ms": statistics.median(samples) * 1000, "samples": len(samples)}
        print(f"  {name:38s} {_milliseconds(samples)}")
    report["screenshot_bytes"] = sizes
    print(
        "\nScreenshot PNG size (1280x800): "
        + ", ".join(f"{task} {size / 1024:.0f} KiB" for task, size in sizes.items())
    )
    print(f"\nRollouts through HUDGym (default config, {len(ROLLOUT_REPLIES)} turns; warm includes its pool's start):")
    for concurrency in options.concurrency:
        rewards = {}
        for label, reuse in (("fresh", False), ("warm", "per_slot")):
            elapsed, outputs, left = await measure_rollouts(options.rollouts, concurrency, reuse)
            errors = sum(output.get("error") is not None for output in outputs)
            rate = len(outputs) / elapsed
            rewards[label] = sorted((output["example_id"], output["reward"]) for output in outputs)
            report["rollouts"][f"{label} c={concurrency}"] = {
                "rollouts": len(outputs), "seconds": elapsed, "per_second": rate, "chromium_left": left,
            }  # fmt: skip
            summary = f"{len(outputs)} rollouts in {elapsed:6.1f} s = {rate:5.2f} rollouts/s, {errors} errors"
            print(f"  {label:5s} c={concurrency}: {summary}, {left} Chromium left after close")
        fresh, warm = (report["rollouts"][f"{label} c={concurrency}"]["per_second"] for label in ("fresh", "warm"))
        same = rewards["fresh"] == rewards["warm"]
        print(f"  c={concurrency}: warm / fresh = {warm / fresh:.2f}x, same rewards per task: {same}")
    return report


def make_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None, allow_abbrev=False)
    parser.add_argument("--calls", type=int, default=20, help="Timed calls per action (default 20).")
    parser.add_argument("--rollouts", type=int, default=8, help="Rollouts per concurrency level (default 8).")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], help="Concurrency levels (1 4).")
    parser.add_argument("--json", default=None, help="Also write the numbers to this JSON file.")
    parser.add_argument("--quick", action="store_true", help="5 calls per action and 4 rollouts: a smoke run.")
    return parser


if __name__ == "__main__":
    arguments = make_parser().parse_args()
    if arguments.quick:
        arguments.calls, arguments.rollouts = 5, 4
    numbers = asyncio.run(main(arguments))
    if arguments.json:
        with open(arguments.json, "w", encoding="utf-8") as handle:
            json.dump(numbers, handle, indent=2)
