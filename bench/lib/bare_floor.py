"""The floors for bench/rollouts.py: the same rollouts with a bare `mcp` client and the same chat server.

- fresh: each rollout starts its own server (spawn + initialize), plays, evaluates, closes it (perf-baseline (c));
- warm: C workers, each owning one server for every rollout it takes from a queue, reset by setup (perf-baseline
  (d)); servers are started before the clock starts and closed after it stops, as HUDGym's warm pool is;
- tight loops: back-to-back `move` calls on one server, through `ClientSession` and through our `MCPSession`.

No framework, no parsing beyond one regex, the chat calls as plain HTTP (`httpx.AsyncClient`, keep-alive): what is
left is the cost of the work itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psutil
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from hud_vf_gym.runtime.mcp_compat import is_error, structured_content
from hud_vf_gym.runtime.session import MCPSession
from hud_vf_gym.testing import Play2048Policy

from lib.common import (
    DONE_CALL,
    EVALUATE_ARGUMENTS,
    FIRST_SEED,
    MOVE_CALL,
    MOVES_PER_ROLLOUT,
    ROLLOUT_TIMEOUT_S,
    SAMPLING,
    SERVER_ARGS,
    SERVER_COMMAND,
    Outcome,
    RunResult,
    Sample,
    Stopwatch,
    board_arguments,
    measured,
    seeds,
)

__all__ = ["run_floor_fresh", "run_floor_warm", "time_bare_calls", "time_session_calls"]

WARM_UP_CALLS = 20  # a fresh server answers its first moves slower (~1.1 ms, then ~0.7 ms): untimed
_PARAMETERS = StdioServerParameters(command=SERVER_COMMAND[0], args=SERVER_ARGS)


async def play(
    chat: httpx.AsyncClient, session: ClientSession, seed: int, move_timings: list[Sample] | None
) -> Outcome:
    """One rollout on an initialised session: setup, one chat call per action (as in HUDGym), evaluate."""
    setup = await session.call_tool("setup", board_arguments(seed))
    messages = [{"role": "user", "content": text_of(setup)}]
    moves = 0
    while not DONE_CALL.search(reply := await _ask(chat, messages)):
        direction = MOVE_CALL.search(reply)
        if direction is None:
            raise RuntimeError(f"the policy made no move: {reply!r}")
        with Stopwatch() as watch:
            result = await session.call_tool("move", {"direction": direction.group(1)})
        if move_timings is not None:
            move_timings.append(watch.sample)
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": text_of(result)}]
        moves += 1
    grade = await session.call_tool("evaluate", EVALUATE_ARGUMENTS)
    reward = (structured_content(grade) or {}).get("reward", 0.0)
    return float(reward), moves, bool(is_error(grade))


async def _ask(chat: httpx.AsyncClient, messages: list[dict[str, str]]) -> str:
    """One chat completion over plain keep-alive HTTP.

    Not the openai client: its request transform costs ~2 ms of CPU per call on a 20-message history, which is the
    client's cost, not the work's.
    """
    response = await chat.post("chat/completions", json={"model": "scripted", "messages": messages, **SAMPLING})
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"] or "")


def text_of(result: Any) -> str:
    """The text of a bare `CallToolResult` or of our `ToolResult`."""
    if hasattr(result, "text"):
        return str(result.text)
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def run_floor_fresh(
    chat: httpx.AsyncClient, rollouts: int, concurrency: int, move_timings: list[Sample] | None = None
) -> RunResult:
    """Every rollout with a server of its own: spawn + initialize, play, close."""
    limit = asyncio.Semaphore(concurrency)

    async def rollout(seed: int) -> Outcome:
        async with stdio_client(_PARAMETERS) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await play(chat, session, seed, move_timings)

    async def one(seed: int) -> Outcome:
        async with limit:
            return await _bounded(rollout(seed), seed)

    async def run() -> list[Outcome]:
        return list(await asyncio.gather(*(one(seed) for seed in seeds(rollouts))))

    return await measured("bare fresh", concurrency, run)


async def run_floor_warm(
    chat: httpx.AsyncClient, rollouts: int, concurrency: int, move_timings: list[Sample] | None = None
) -> RunResult:
    """C workers, each with one warm server for all the rollouts it takes from a shared queue (setup resets it).

    Each worker opens and closes its own session: anyio cancel scopes must exit in the task that entered them.
    """
    queue: asyncio.Queue[int] = asyncio.Queue()
    for seed in seeds(rollouts):
        queue.put_nowait(seed)
    outcomes: dict[int, Outcome] = {}
    ready, go, done = [asyncio.Event() for _ in range(concurrency)], asyncio.Event(), asyncio.Event()

    async def worker(index: int) -> None:
        async with stdio_client(_PARAMETERS) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            ready[index].set()
            await go.wait()
            while not queue.empty():
                seed = queue.get_nowait()
                outcomes[seed] = await _bounded(play(chat, session, seed, move_timings), seed)
            await done.wait()  # closed after the clock stops, as the warm pool closes after its batches

    async def run() -> list[Outcome]:
        go.set()
        while len(outcomes) < rollouts and not all(task.done() for task in workers):
            await asyncio.sleep(0.001)
        return [outcomes[seed] for seed in seeds(rollouts) if seed in outcomes]

    workers = [asyncio.create_task(worker(index)) for index in range(concurrency)]
    try:
        await asyncio.gather(*(event.wait() for event in ready))
        return await measured("bare warm", concurrency, run)
    finally:
        done.set()
        await asyncio.gather(*workers, return_exceptions=True)


async def _bounded(rollout: Awaitable[Outcome], seed: int) -> Outcome:
    """One rollout under the bench's timeout; a failure is counted, not fatal (the bench boundary)."""
    try:
        return await asyncio.wait_for(rollout, ROLLOUT_TIMEOUT_S)
    except Exception:
        logging.exception("bare rollout (seed %d) failed", seed)
        return 0.0, 0, True


async def time_moves(call: Callable[[str, dict[str, Any]], Awaitable[Any]], count: int) -> list[Sample]:
    """Time `count` move calls; a fresh game every 10 moves (untimed), as in a rollout; directions from the policy."""
    policy = Play2048Policy(look_ahead=True)
    timings: list[Sample] = []
    board = ""
    for index in range(count):
        if index % MOVES_PER_ROLLOUT == 0 or "GAME OVER" in board:
            board = text_of(await call("setup", board_arguments(FIRST_SEED + index)))
        direction = MOVE_CALL.search(policy([{"role": "user", "content": board}]))
        with Stopwatch() as watch:
            result = await call("move", {"direction": direction.group(1) if direction else "down"})
        timings.append(watch.sample)
        board = text_of(result)
    return timings


async def time_bare_calls(count: int) -> tuple[list[Sample], float]:
    """`ClientSession.call_tool("move")` round trips on one server; also the server's USS (MiB) afterwards."""
    others = {child.pid for child in psutil.Process().children()}  # warm pools may hold servers meanwhile
    async with stdio_client(_PARAMETERS) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await time_moves(session.call_tool, WARM_UP_CALLS)
        timings = await time_moves(session.call_tool, count)
        servers = [child for child in psutil.Process().children() if child.pid not in others]
        uss_mib = servers[0].memory_full_info().uss / 2**20 if len(servers) == 1 else float("nan")
    return timings, uss_mib


async def time_session_calls(count: int) -> list[Sample]:
    """The same loop through our `MCPSession.call_tool` (session layer only, no parse, map or verifiers)."""
    config = {"text_2048": {"command": SERVER_COMMAND[0], "args": SERVER_ARGS}}
    async with await MCPSession.open(config) as session:
        await time_moves(session.call_tool, WARM_UP_CALLS)
        return await time_moves(session.call_tool, count)
