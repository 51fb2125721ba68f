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
   includes starting its pool; `warm (steady)` runs the same rollouts again on the pool the warm run left (no
   start). All must give the same rewards, and no Chromium may be left after the close.
3. with `--cpu`: the CPU seconds per rollout of every process kind (harness, MCP server, Playwright's node driver,
   Chromium's browser/renderer/GPU/utility processes) during each rollout run, polled over the process tree.
4. per turn (always): where the wall time of one `click` goes, measured in this process on the server's own
   `BrowserSession` (action, settle wait, screenshot capture, base64) against the same call over MCP.

Run: `python bench/browser.py [--calls 20] [--rollouts 8] [--concurrency 1 4] [--cpu] [--no-actions] [--json PATH]
[--quick]`. The servers are `python -m hud_vf_gym.environments.browser` in this directory, so run it from the
checkout whose server code you mean to measure (the current directory comes first on a `-m` server's path).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
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
from hud_vf_gym.environments.browser.computer import ComputerCall, run_action
from hud_vf_gym.environments.browser.session import BrowserSession, ServerSettings
from hud_vf_gym.runtime.mcp_compat import is_error
from hud_vf_gym.testing import FixedRepliesPolicy, ScriptedChatServer

from lib.process_cpu import TreeCpu

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


async def _evaluate(env: HUDGym, client: vf.OpenAIChatCompletionsClient, concurrency: int) -> list[dict[str, Any]]:
    results = await env.evaluate(
        client, "scripted", sampling_args=SAMPLING, num_examples=-1, rollouts_per_example=1,
        max_concurrent=concurrency,
    )  # fmt: skip
    return list(results["outputs"])


async def measure_rollouts(
    rollouts: int, concurrency: int, reuse: Any, *, cpu: bool
) -> list[tuple[str, float, list[dict[str, Any]], TreeCpu | None]]:
    """Run `rollouts` rollouts at `concurrency` (twice when warm: with the pool's start, then on the warm pool).

    Returns (label, wall seconds, outputs, CPU sampler or None) per run; the Chromiums left are counted after close.
    """
    tasks = load_taskset("browser").tasks[:rollouts]
    env = HUDGym(load_config("default", max_turns=len(ROLLOUT_REPLIES), session_reuse=reuse), tasks)
    runs: list[tuple[str, float, list[dict[str, Any]], TreeCpu | None]] = []
    labels = ["warm", "warm (steady)"] if reuse else ["fresh"]
    with ScriptedChatServer(FixedRepliesPolicy(list(ROLLOUT_REPLIES))) as chat:
        async with AsyncOpenAI(base_url=chat.base_url, api_key="x", max_retries=0) as openai_client:
            client = vf.OpenAIChatCompletionsClient(openai_client)
            try:
                for label in labels:
                    sampler = TreeCpu() if cpu else None
                    if sampler:
                        sampler.start()
                    started = time.perf_counter()
                    try:
                        outputs = await _evaluate(env, client, concurrency)
                    finally:
                        if sampler:
                            sampler.stop()
                    runs.append((label, time.perf_counter() - started, outputs, sampler))
            finally:
                await env.harness.close_all()  # the warm servers (and their browsers) close with the environment
    return runs


async def measure_turn(calls: int) -> dict[str, list[float]]:
    """Where one `click` turn's wall time goes, on the server's own `BrowserSession` in this process.

    Parts: the input itself (`run_action`), the settle wait, the screenshot capture, base64; `whole session call`
    is `BrowserSession.computer` end to end (what the server's tool does); the MCP round trip of the same call is in
    the per-action table (`click`), so the difference is the protocol and transfer.
    """
    session = BrowserSession(ServerSettings())
    session.start()
    parts: dict[str, list[float]] = {
        "action (click)": [], "settle wait": [], "screenshot capture": [], "base64 encode": [],
        "whole session call": [],
    }  # fmt: skip
    try:
        await session.open_task("log-in", 0)
        tab = session._tab  # the bench reads the open tab to time the parts of one call
        assert tab is not None
        call = ComputerCall(action="click", x=190, y=148)
        for _ in range(calls):
            marks = [time.perf_counter()]
            await run_action(tab, call)
            marks.append(time.perf_counter())
            await tab.settle()
            marks.append(time.perf_counter())
            shot = await tab.screenshot()
            marks.append(time.perf_counter())
            base64.b64encode(shot).decode("ascii")
            marks.append(time.perf_counter())
            for name, before, after in zip(list(parts)[:4], marks[:-1], marks[1:], strict=True):
                parts[name].append(after - before)
            started = time.perf_counter()
            await session.computer(call, None)
            parts["whole session call"].append(time.perf_counter() - started)
    finally:
        await session.close()
    return parts


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
    if not options.no_actions:
        print(
            f"Per action (one server, log-in page, {options.calls} calls each; median and p90 as the client sees it):"
        )
        timings, sizes = await measure_actions(options.calls)
        for name, samples in timings.items():
            report["actions"][name] = {"median_ms": statistics.median(samples) * 1000, "samples": len(samples)}
            print(f"  {name:38s} {_milliseconds(samples)}")
        report["screenshot_bytes"] = sizes
        print(
            "\nScreenshot PNG size (1280x800): "
            + ", ".join(f"{task} {size / 1024:.0f} KiB" for task, size in sizes.items())
        )
        print(f"\nOne click turn, part by part (the server's BrowserSession in this process, {options.calls} turns):")
        report["turn"] = {}
        for name, samples in (await measure_turn(options.calls)).items():
            report["turn"][name] = {"median_ms": statistics.median(samples) * 1000, "samples": len(samples)}
            print(f"  {name:38s} {_milliseconds(samples)}")
    print(f"\nRollouts through HUDGym (default config, {len(ROLLOUT_REPLIES)} turns; warm includes its pool's start,")
    print("warm (steady) runs the same rollouts again on the warm pool):")
    for concurrency in options.concurrency:
        rewards = {}
        for reuse in (False, "per_slot"):
            runs = await measure_rollouts(options.rollouts, concurrency, reuse, cpu=options.cpu)
            left = len(_chromium_left())
            for label, elapsed, outputs, sampler in runs:
                errors = sum(output.get("error") is not None for output in outputs)
                rate = len(outputs) / elapsed
                rewards[label] = sorted((output["example_id"], output["reward"]) for output in outputs)
                report["rollouts"][f"{label} c={concurrency}"] = {
                    "rollouts": len(outputs), "seconds": elapsed, "per_second": rate, "chromium_left": left,
                    "errors": errors, "load_1min": os.getloadavg()[0],
                    "cpu_s": sampler.seconds_by_kind() if sampler else None,
                }  # fmt: skip
                summary = f"{len(outputs)} rollouts in {elapsed:6.1f} s = {rate:5.2f} rollouts/s, {errors} errors"
                load = os.getloadavg()[0]
                print(f"  {label:13s} c={concurrency}: {summary}, {left} Chromium left after close, load {load:.2f}")
                if sampler:
                    print(sampler.table(len(outputs)))
        rates = {label: report["rollouts"][f"{label} c={concurrency}"]["per_second"] for label in rewards}
        same = all(rewards[label] == rewards["fresh"] for label in rewards)
        print(
            f"  c={concurrency}: warm / fresh = {rates['warm'] / rates['fresh']:.2f}x with the pool's start, "
            f"{rates['warm (steady)'] / rates['fresh']:.2f}x steady; same rewards per task: {same}"
        )
    return report


def make_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None, allow_abbrev=False)
    parser.add_argument("--calls", type=int, default=20, help="Timed calls per action (default 20).")
    parser.add_argument("--rollouts", type=int, default=8, help="Rollouts per concurrency level (default 8).")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], help="Concurrency levels (1 4).")
    parser.add_argument("--json", default=None, help="Also write the numbers to this JSON file.")
    parser.add_argument("--cpu", action="store_true", help="Also print CPU seconds per rollout per process kind.")
    parser.add_argument("--no-actions", action="store_true", help="Skip the per-action and per-turn timings.")
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
