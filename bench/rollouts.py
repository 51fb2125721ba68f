"""Rollout throughput, per-turn harness cost and memory of HUDGym on the built-in 2048 server, against baselines.

Work unit (the same as the research notes' perf-baseline.md, see lib/common.py): one rollout = setup(4x4, seed),
10 moves, done(), evaluate(max_number, target 64). The model is `Play2048Policy(max_moves=10, look_ahead=True)`
behind `ScriptedChatServer` on 127.0.0.1 in its own process (lib/policy_server.py; instant: Nagle off, one write per
response), as a real model server would be, so every move succeeds and the harness has this process to itself.

Six harnesses do the same rollouts (the same seeds, policy and chat server), interleaved in one run:

- HUDGym pooled: `HUDGym` + verifiers' `env.evaluate` with `sessions.reuse: per_slot` (a warm server per slot);
- pooled, 2 workers: the same behind verifiers' env server with 2 worker processes, as `vf-eval hud_vf_gym -w 2`
  runs it (lib/env_server.py): the harness then uses both cores instead of one;
- HUDGym fresh: the same with `sessions.reuse: false` (a server started and stopped per rollout);
- bare warm: a bare `mcp` client, one warm server per worker (the floor for pooled; lib/bare_floor.py);
- bare fresh: a bare `mcp` client, a server per rollout (the floor for fresh);
- peer MCPEnv: verifiers' own MCPEnv with minimal setup/evaluate glue (lib/peer_mcpenv.py). It shares ONE server and
  so one game between all rollouts: at concurrency > 1 it does the wrong work, and the reward check says so.

Measured: 1. rollouts/s per concurrency with the CPU split and the reward check, and what starting the pool costs;
2. the harness time per turn (parse + map + MCP round trip + state update) against a bare `call_tool` round trip;
3. memory during one extra pooled batch at the highest concurrency; 4. the research notes' peer numbers, quoted.

Run: `python bench/rollouts.py [--rollouts 16] [--repeats 3] [--concurrency 1 4 16] [--json PATH] [--quick]`
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import pstats
import sys
import threading
import time
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import datasets
import httpx
import psutil
import verifiers as vf
from openai import AsyncOpenAI
from verifiers.legacy.types import ClientConfig

from hud_vf_gym import HUDGym, Task, load_config, load_taskset
from hud_vf_gym.core.record import TurnOutcome
from hud_vf_gym.env import EPISODE_KEY, SUMMARY_KEY

from lib.bare_floor import run_floor_fresh, run_floor_warm, time_bare_calls, time_session_calls
from lib.common import (
    EVALUATE_ARGUMENTS,
    MAX_TURNS,
    ROLLOUT_TIMEOUT_S,
    SERVER_ARGS,
    Outcome,
    RunResult,
    Stopwatch,
    board_arguments,
    measured,
    seeds,
)
from lib.env_server import chat_config, evaluate_outputs, outcome, run_env_server, start_env_server
from lib.peer_mcpenv import Peer2048Env, moves_of
from lib.policy_server import policy_process
from lib.rollout_report import (
    FRESH,
    MEMORY_SAMPLE_INTERVAL_S,
    PEER,
    POOLED,
    POOLED_SERVED,
    MemoryPeak,
    Report,
    TurnTiming,
    print_header,
    print_memory,
    print_peer_baseline,
    print_per_turn,
    print_throughput,
)

TEMPLATE_TASK_ID = "2048_target_64"  # the built-in 4x4 task with target 64; copied with a distinct seed per rollout
PROFILE_FILTER = "hud_vf_gym|verifiers/legacy/envs|openai/_base_client|mcp/client"  # --profile: our layers
# ---------------------------------------------------------------------------------------------------------------
# Tasks and the timed environment
# ---------------------------------------------------------------------------------------------------------------


def build_tasks(count: int) -> list[Task]:
    """`count` copies of the built-in 4x4 target-64 task, each with its own seed and this interpreter."""
    template = next(task for task in load_taskset("2048").tasks if task.id == TEMPLATE_TASK_ID)
    row = {
        "prompt": template.prompt,
        "mcp_config": {"text_2048": {"command": sys.executable, "args": SERVER_ARGS}},
        "evaluate_tool": {"name": "evaluate", "arguments": EVALUATE_ARGUMENTS},
    }
    return [
        Task.from_row(
            {
                **row,
                "id": f"2048_4x4_target_64_seed_{seed}",
                "setup_tool": {"name": "setup", "arguments": board_arguments(seed)},
            },
            index=index,
        )
        for index, seed in enumerate(seeds(count))
    ]


class TimedHUDGym(HUDGym):
    """HUDGym that times each executed move: parse, act, and both verifiers hooks (only while `recording`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Build the environment; `turns` collects one `TurnTiming` per executed move."""
        super().__init__(*args, **kwargs)
        self.recording = False
        self.turns: list[TurnTiming] = []
        self.close_s: list[float] = []

    async def setup_state(self, state: vf.State) -> vf.State:
        """Start the episode, then time its `record_turn` (the parse) and `close` for this rollout only."""
        state = await super().setup_state(state)
        episode = state[EPISODE_KEY]
        record_turn, close = episode.record_turn, episode.close

        def timed_record_turn(text: str) -> Any:
            with Stopwatch() as watch:
                turn = record_turn(text)
            state["bench_parse"] = watch.sample
            return turn

        async def timed_close() -> None:
            with Stopwatch() as watch:
                await close()
            self.close_s.append(watch.sample[0])

        # instance attributes: they shadow the methods for this episode only
        episode.record_turn, episode.close = timed_record_turn, timed_close
        return state

    async def add_model_response(self, state: vf.State, prompt_messages: vf.Messages, response: Any) -> None:
        """Time the whole hook (verifiers' own part + our parse)."""
        with Stopwatch() as watch:
            await super().add_model_response(state, prompt_messages, response)
        state["bench_model_hook"] = watch.sample

    async def env_response(self, messages: vf.Messages, state: vf.State, **kwargs: Any) -> vf.Messages:
        """Time the hook; keep the timings of turns that executed a move."""
        with Stopwatch() as watch:
            reply = await super().env_response(messages, state, **kwargs)
        turn = state[EPISODE_KEY].record.turns[-1]
        if self.recording and turn.outcome is TurnOutcome.EXECUTED:
            timing = TurnTiming(state["bench_parse"], turn.env_seconds, watch.sample, state["bench_model_hook"])
            self.turns.append(timing)
        return reply


def hudgym(reuse: bool | str, count: int) -> TimedHUDGym:
    """A timed HUDGym over `count` seeded tasks, with or without the session pool."""
    return TimedHUDGym(load_config("2048", max_turns=MAX_TURNS, session_reuse=reuse), build_tasks(count))


# ---------------------------------------------------------------------------------------------------------------
# Measurement 1: rollouts/s of the verifiers harnesses (the bare floors are in lib/bare_floor.py)
# ---------------------------------------------------------------------------------------------------------------


async def run_hudgym(env: TimedHUDGym, client: vf.Client, concurrency: int, name: str, rollouts: int = -1) -> RunResult:
    """The first `rollouts` tasks (-1: all) once each through verifiers' `env.evaluate` at `concurrency`."""
    phases: list[dict[str, float]] = []
    env.close_s = []

    async def evaluate() -> list[Outcome]:
        outputs = await evaluate_outputs(env, client, concurrency, rollouts, state_columns=[SUMMARY_KEY])
        phases.extend(output[SUMMARY_KEY]["timing"] for output in outputs)
        return [outcome(output) for output in outputs]

    result = await measured(name, concurrency, evaluate)
    result.phases_s, result.close_s = phases, env.close_s
    return result


async def run_peer(env: Peer2048Env, client: vf.Client, concurrency: int, rollouts: int = -1) -> RunResult:
    """The same rollouts through verifiers' MCPEnv (one server shared by all of them)."""

    async def evaluate() -> list[Outcome]:
        outputs = await evaluate_outputs(env, client, concurrency, rollouts)
        return [(float(output["reward"]), moves_of(output), output.get("error") is not None) for output in outputs]

    return await measured(PEER, concurrency, evaluate)


# ---------------------------------------------------------------------------------------------------------------
# Measurement 3: memory during a run
# ---------------------------------------------------------------------------------------------------------------


class MemorySampler:
    """Samples, in a thread, the RSS of this process and of its children (the MCP servers) until stopped."""

    def __init__(self) -> None:
        """Record this process's RSS as the baseline."""
        self.process = psutil.Process()
        self.peak = MemoryPeak(harness_rss_before_mib=self.process.memory_info().rss / 2**20)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, name="memory-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        """Start sampling."""
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop sampling and wait for the thread."""
        self._stop.set()
        self._thread.join()

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_INTERVAL_S):
            rss = []
            for child in self.process.children():
                try:
                    # a child forked but not yet exec'd still shows this process's command line and memory
                    if SERVER_ARGS[-1] in child.cmdline():
                        rss.append(child.memory_info().rss / 2**20)
                except psutil.Error:  # exited between listing and reading
                    continue
            peak = self.peak
            peak.samples += 1
            peak.harness_rss_peak_mib = max(peak.harness_rss_peak_mib, self.process.memory_info().rss / 2**20)
            if rss:
                peak.live_servers = max(peak.live_servers, len(rss))
                peak.servers_rss_mib = max(peak.servers_rss_mib, sum(rss))
                peak.largest_server_rss_mib = max(peak.largest_server_rss_mib, max(rss))


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Harnesses:
    """The environments and chat clients every batch of a run uses."""

    fresh: TimedHUDGym
    pooled: dict[int, TimedHUDGym]  # one per concurrency, so each pool has exactly that many warm servers
    peer: Peer2048Env
    chat: httpx.AsyncClient  # plain HTTP to the XML policy, for the bare floors
    client: vf.Client
    native_client: vf.Client  # native tool calls, for MCPEnv
    served: dict[int, vf.Environment]  # HUDGym in env-server workers, one env server per concurrency
    served_chat: ClientConfig  # the XML policy, as a config each worker builds its client from


async def measure(options: argparse.Namespace) -> Report:
    """Run every measurement with one chat server per format; everything started here is stopped here."""
    report = Report(options=vars(options))
    report.load_average["start"] = list(os.getloadavg())
    report.harness_rss_mib["start"] = psutil.Process().memory_info().rss / 2**20
    started = time.perf_counter()
    fresh = hudgym(False, options.rollouts)
    report.env_construct_s = time.perf_counter() - started
    pooled = {concurrency: hudgym("per_slot", options.rollouts) for concurrency in options.concurrency}
    started = time.perf_counter()
    peer = Peer2048Env(seeds(options.rollouts))
    report.peer_construct_s = time.perf_counter() - started
    served: dict[int, vf.Environment] = {}
    try:
        with policy_process("xml") as xml_url, policy_process("native") as native_url:
            async with (
                AsyncOpenAI(base_url=xml_url, api_key="x", max_retries=0) as openai_chat,
                AsyncOpenAI(base_url=native_url, api_key="x", max_retries=0) as native_chat,
                httpx.AsyncClient(base_url=f"{xml_url}/", timeout=ROLLOUT_TIMEOUT_S) as bare_chat,
            ):
                clients = (vf.OpenAIChatCompletionsClient(openai_chat), vf.OpenAIChatCompletionsClient(native_chat))
                for concurrency in options.concurrency:  # one env server each: workers' pools sized like `pooled`
                    served[concurrency] = await start_env_server(build_tasks(options.rollouts))
                served_chat = chat_config(xml_url, ROLLOUT_TIMEOUT_S)
                harnesses = Harnesses(fresh, pooled, peer, bare_chat, *clients, served, served_chat)
                await _warm_up(report, harnesses)
                for repeat in range(options.repeats):
                    await _one_repeat(report, harnesses, repeat)
                await _memory_batch(report, harnesses)
                if options.profile:
                    await profile_batch(pooled[1], harnesses.client)
    finally:
        await asyncio.gather(*(env.harness.close_all() for env in (fresh, *pooled.values())))
        await peer.teardown_mcp_servers()
        await asyncio.gather(*(env.stop_server() for env in served.values()))
    report.load_average["end"] = list(os.getloadavg())
    report.harness_rss_mib["end"] = psutil.Process().memory_info().rss / 2**20
    return report


async def _warm_up(report: Report, harnesses: Harnesses) -> None:
    """Untimed: imports, caches, connections; then each pooled env's first batch, which starts its pool (kept)."""
    warm_up = min(2, report.options["rollouts"])
    await run_hudgym(harnesses.fresh, harnesses.client, warm_up, FRESH, rollouts=warm_up)
    await run_floor_fresh(harnesses.chat, warm_up, warm_up)
    await run_peer(harnesses.peer, harnesses.native_client, 1, rollouts=warm_up)
    for concurrency, env in harnesses.pooled.items():
        report.pool_starts.append(await run_hudgym(env, harnesses.client, concurrency, POOLED))
    for concurrency, served in harnesses.served.items():
        report.pool_starts.append(await _run_served(harnesses, served, concurrency))


async def _one_repeat(report: Report, harnesses: Harnesses, repeat: int) -> None:
    """One repeat of every measurement, rotating the order so that load drifts hit every harness alike."""
    options = report.options
    rollouts = options["rollouts"]
    for concurrency in options["concurrency"]:
        pooled = harnesses.pooled[concurrency]
        pooled.recording, pooled.turns, floor_moves = concurrency == 1, [], []
        batches: list[Awaitable[RunResult]] = [  # coroutines, each awaited once below
            run_hudgym(pooled, harnesses.client, concurrency, POOLED),
            run_hudgym(harnesses.fresh, harnesses.client, concurrency, FRESH),
            run_floor_warm(harnesses.chat, rollouts, concurrency, floor_moves),
            run_floor_fresh(harnesses.chat, rollouts, concurrency),
            run_peer(harnesses.peer, harnesses.native_client, concurrency),
            _run_served(harnesses, harnesses.served[concurrency], concurrency),
        ]
        shift = repeat % len(batches)
        for batch in batches[shift:] + batches[:shift]:
            report.runs.append(await batch)
        pooled.recording = False
        if concurrency == 1:
            report.turns.append(pooled.turns)
            report.floor_moves.append(floor_moves)
    for loop in (_bare_loop, _session_loop) if repeat % 2 == 0 else (_session_loop, _bare_loop):
        await loop(report, options["calls"])


async def _run_served(harnesses: Harnesses, served: vf.Environment, concurrency: int) -> RunResult:
    return await run_env_server(served, harnesses.served_chat, concurrency, POOLED_SERVED)


async def _memory_batch(report: Report, harnesses: Harnesses) -> None:
    concurrency = max(harnesses.pooled)
    with MemorySampler() as sampler:
        report.memory_run = await run_hudgym(harnesses.pooled[concurrency], harnesses.client, concurrency, POOLED)
    report.memory = sampler.peak


async def _bare_loop(report: Report, calls: int) -> None:
    timings, report.server_uss_mib = await time_bare_calls(calls)
    report.bare_calls.append(timings)


async def _session_loop(report: Report, calls: int) -> None:
    report.session_calls.append(await time_session_calls(calls))


async def profile_batch(env: TimedHUDGym, client: vf.Client) -> None:
    """Profile one c=1 pooled HUDGym batch (this process only; the servers are other processes) and print the top."""
    profiler = cProfile.Profile()
    profiler.enable()
    await run_hudgym(env, client, 1, POOLED)
    profiler.disable()
    print("\ncProfile of one c=1 pooled HUDGym batch (this process; waits on servers and the chat server not counted):")
    print("coroutine 'cumtime' is CPU between suspensions; each resumption counts as a call")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(PROFILE_FILTER, 30)


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; `--quick` shrinks every size for a smoke run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--rollouts", type=int, default=16, help="Rollouts (distinct seeds) per batch.")
    parser.add_argument("--repeats", type=int, default=3, help="Repeats of every measurement; medians are shown.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="Concurrency levels.")
    parser.add_argument("--calls", type=int, default=300, help="Timed bare move calls per repeat.")
    parser.add_argument("--json", metavar="PATH", help="Also write every measurement as JSON.")
    parser.add_argument("--profile", action="store_true", help="Also cProfile one c=1 pooled HUDGym batch.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 4 rollouts, 1 repeat, c=1 and 4, 50 calls.")
    options = parser.parse_args(argv)
    if options.quick:
        options.rollouts, options.repeats, options.concurrency, options.calls = 4, 1, [1, 4], 50
    if 1 not in options.concurrency:
        parser.error("--concurrency must include 1: the per-turn timings are taken at c=1")
    if min(options.rollouts, options.repeats, options.calls, *options.concurrency) < 1:
        parser.error("--rollouts, --repeats, --calls and --concurrency must be at least 1")
    return options


def _reap_leftovers() -> int:
    """Kill any child process still running (there should be none); return how many there were.

    Not counted: multiprocessing's resource tracker, which the env server's spawn context starts once for this
    process and which exits with it.
    """
    leftovers = [process for process in psutil.Process().children(recursive=True) if not _is_resource_tracker(process)]
    for process in leftovers:
        process.kill()
    psutil.wait_procs(leftovers, timeout=5)
    return len(leftovers)


def _is_resource_tracker(process: psutil.Process) -> bool:
    try:
        return any("multiprocessing.resource_tracker" in argument for argument in process.cmdline())
    except psutil.Error:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench, print the tables, optionally save JSON; every process started here is gone at exit."""
    options = parse_options(argv)
    logging.basicConfig(level=logging.WARNING)
    # MCPEnv returns plain dicts and verifiers warns about it once per rollout; the peer is measured as it is
    logging.getLogger("verifiers").setLevel(logging.ERROR)
    datasets.disable_progress_bars()  # HUDGym builds its dataset on first use
    try:
        report = asyncio.run(measure(options))
    finally:
        leftovers = _reap_leftovers()
    print_header(report)
    print_throughput(report)
    print_per_turn(report)
    print_memory(report)
    print_peer_baseline()
    print(f"\nchild processes left at exit: {leftovers}")
    if options.json:
        with open(options.json, "w", encoding="utf-8") as file:
            json.dump(asdict(report), file, indent=2)
        print(f"wrote {options.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
