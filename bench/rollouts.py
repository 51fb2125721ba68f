"""Rollout throughput, per-turn harness cost and memory of HUDGym on the built-in 2048 server.

Work unit (the same as /work/shared/research/perf-baseline.md): one rollout = start a fresh text-2048 server,
setup(4x4, seed), 10 moves, evaluate(max_number, target 64). The model is `Play2048Policy(max_moves=10,
look_ahead=True)` behind `ScriptedChatServer` on 127.0.0.1 (instant, Nagle off), so every move succeeds and the
11th reply, done(), ends the rollout. Every task has its own seed, so the rewards are fixed and wrong work shows.

Measured in one process:

1. rollouts/s at each concurrency through `HUDGym` + verifiers' `env.evaluate` (a fresh server per rollout, as
   HUDGym does today), against the floor: a bare `mcp` client + the same chat server doing the same rollouts;
   with the CPU split (this process vs the servers), the reward check and where a rollout's time goes;
2. the harness time per turn inside HUDGym (parse + map + MCP round trip + state update; wall and CPU), against
   the bare `ClientSession.call_tool("move")` inside the floor's rollouts and in a tight loop on one server;
3. server and harness memory during one extra HUDGym batch at the highest concurrency;
4. the peer numbers of the research notes, quoted (not measured here).

Run: `python bench/rollouts.py [--rollouts 16] [--repeats 3] [--concurrency 1 4 16] [--json PATH] [--quick]`
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import math
import os
import pstats
import re
import resource
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import datasets
import psutil
import verifiers as vf
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from openai import AsyncOpenAI

from hud_vf_gym import HUDGym, Task, load_config, load_taskset
from hud_vf_gym.env import EPISODE_KEY, SUMMARY_KEY
from hud_vf_gym.episode import TurnOutcome
from hud_vf_gym.sessions import MCPSession
from hud_vf_gym.testing import Play2048Policy, ScriptedChatServer

SERVER_ARGS = ["-m", "hud_vf_gym.environments.text_2048"]
TEMPLATE_TASK_ID = "2048_target_64"  # the built-in 4x4 task with target 64; copied with a distinct seed per rollout
FIRST_SEED = 1000
MOVES_PER_ROLLOUT = 10
MAX_TURNS = 12  # 10 moves + done() = 11 turns; one spare, so done() (not truncation) ends every rollout
SAMPLING = {"temperature": 0.0, "max_tokens": 64}
MEMORY_SAMPLE_INTERVAL_S = 0.05  # psutil reads /proc per child; 20 samples/s costs little next to 16 servers
ROLLOUT_TIMEOUT_S = 120.0  # a floor rollout takes ~1 s alone and ~6 s at c=16 on 2 cores
WARM_UP_CALLS = 20  # a fresh server answers its first moves slower (~1.1 ms, then ~0.7 ms): untimed
TARGET_TURN_RATIO = 1.1  # issue 3: harness time per turn within 1.1x of the bare round trip
PROFILE_FILTER = (
    "hud_vf_gym|verifiers/legacy/envs|openai/_base_client|mcp/client"  # --profile: the layers we own or wrap
)
_DONE_CALL = re.compile(r"<tool>\s*done\(\s*\)\s*</tool>")
_MOVE_CALL = re.compile(r"<tool>\s*(left|right|up|down)\(\s*\)\s*</tool>")

# perf-baseline.md, 2 cores, verifiers 0.3.1 MCPEnv with setup/evaluate glue and the bare-client floors; quoted.
PEER_BASELINE = (
    ("peer MCPEnv + glue (1 shared server)", "14.4 (13.3-15.1)", "19.0 (17.1-19.5)*", "15.2 (14.6-15.8)*"),
    ("floor (c) fresh server per rollout", "1.6 (1.6-1.6)", "3.0 (2.9-3.1)", "2.6 (2.5-2.6)"),
    ("floor (d) warm server per slot", "27.0 (25.5-31.0)", "44.7 (43.1-46.2)", "39.1 (38.1-40.2)"),
)
PEER_PER_TURN = (
    ("bare call_tool('move') round trip", "2.8 ms (p90 3.3)"),
    ("peer MCPEnv env span per tool call, c=1", "3.2-3.7 ms (1.15-1.3x)"),
    ("bare spawn + initialize", "483 ms (572 ms server CPU)"),
)


# ---------------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One timed batch of rollouts at one concurrency."""

    harness: str
    concurrency: int
    rollouts: int
    wall_s: float
    harness_cpu_s: float  # this process: harness, verifiers, openai client and the in-process chat server
    server_cpu_s: float  # reaped children: the MCP servers
    rewards: list[float]
    moves: list[int]  # moves executed per rollout
    errors: int
    load_1min: float = 0.0  # the machine's 1-minute load average when the batch ended (2 cores)
    phases_s: list[dict[str, float]] = field(default_factory=list)  # HUDGym: the EpisodeRecord timings per rollout
    close_s: list[float] = field(default_factory=list)  # HUDGym: TaskEpisode.close (server shutdown) per rollout

    @property
    def rollouts_per_s(self) -> float:
        """Throughput of the batch."""
        return self.rollouts / self.wall_s


# One timed call: (wall seconds, CPU seconds of the event-loop thread). The CPU excludes the server processes and
# the chat server's threads, so it shows the client side's own cost, and it is far less sensitive to machine load.
Sample = tuple[float, float]


class Stopwatch:
    """Wall and event-loop-thread CPU time of a block: `with Stopwatch() as watch: ...`, then `watch.sample`."""

    def __enter__(self) -> Stopwatch:
        """Start both clocks."""
        self._wall, self._cpu = time.perf_counter(), time.thread_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop both clocks."""
        self.sample: Sample = (time.perf_counter() - self._wall, time.thread_time() - self._cpu)


@dataclass
class TurnTiming:
    """One executed move inside HUDGym."""

    parse: Sample  # TaskEpisode.record_turn: parse the reply once and record it
    act_s: float  # TaskEpisode.act as the harness times it (wall): map + MCP call + classify
    env_hook: Sample  # HUDGym.env_response: act + observation + message
    model_hook: Sample  # HUDGym.add_model_response: verifiers' own bookkeeping + record_turn

    @property
    def harness(self) -> Sample:
        """Parse + map + MCP round trip + state update: what HUDGym adds to a turn."""
        return self.parse[0] + self.env_hook[0], self.parse[1] + self.env_hook[1]


@dataclass
class MemoryPeak:
    """Peaks seen by `MemorySampler` during one run."""

    live_servers: int = 0
    servers_rss_mib: float = 0.0
    largest_server_rss_mib: float = 0.0
    harness_rss_before_mib: float = 0.0
    harness_rss_peak_mib: float = 0.0
    samples: int = 0


# ---------------------------------------------------------------------------------------------------------------
# Tasks and the timed environment
# ---------------------------------------------------------------------------------------------------------------


def build_tasks(count: int) -> list[Task]:
    """`count` copies of the built-in 4x4 target-64 task, each with its own seed and this interpreter."""
    template = next(task for task in load_taskset("2048").tasks if task.id == TEMPLATE_TASK_ID)
    row = {
        "prompt": template.prompt,
        "mcp_config": {"text_2048": {"command": sys.executable, "args": SERVER_ARGS}},
        "evaluate_tool": {"name": "evaluate", "arguments": {"name": "max_number", "arguments": {"target": 64}}},
    }
    return [
        Task.from_row(
            {
                **row,
                "id": f"2048_4x4_target_64_seed_{seed}",
                "setup_tool": {"name": "setup", "arguments": {"name": "board", "arguments": _board(seed)}},
            },
            index=index,
        )
        for index, seed in enumerate(seeds(count))
    ]


def seeds(count: int) -> list[int]:
    """The game seeds of the first `count` rollouts (shared by HUDGym and the floor)."""
    return [FIRST_SEED + index for index in range(count)]


def _board(seed: int) -> dict[str, int]:
    return {"board_size": 4, "seed": seed}


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


# ---------------------------------------------------------------------------------------------------------------
# Measurement 1: rollouts/s (HUDGym and the bare floor), with CPU and the reward check
# ---------------------------------------------------------------------------------------------------------------


async def _measured(
    harness: str, concurrency: int, run: Callable[[], Awaitable[list[tuple[float, int, bool]]]]
) -> RunResult:
    """Time `run` (which returns reward, moves and error per rollout) and take the CPU of this process and servers."""
    self_before, children_before = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    started = time.perf_counter()
    outcomes = await run()
    wall_s = time.perf_counter() - started
    self_after, children_after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return RunResult(
        harness=harness,
        concurrency=concurrency,
        rollouts=len(outcomes),
        wall_s=wall_s,
        harness_cpu_s=_cpu(self_after) - _cpu(self_before),
        server_cpu_s=_cpu(children_after) - _cpu(children_before),
        rewards=[reward for reward, _, _ in outcomes],
        moves=[moves for _, moves, _ in outcomes],
        errors=sum(error for _, _, error in outcomes),
        load_1min=os.getloadavg()[0],
    )


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


async def run_hudgym(env: TimedHUDGym, client: vf.Client, concurrency: int, rollouts: int = -1) -> RunResult:
    """The first `rollouts` tasks (-1: all) once each through verifiers' `env.evaluate` at `concurrency`."""
    phases: list[dict[str, float]] = []
    env.close_s = []

    async def evaluate() -> list[tuple[float, int, bool]]:
        results = await env.evaluate(
            client,
            "scripted",
            sampling_args=SAMPLING,
            num_examples=rollouts,
            max_concurrent=concurrency,
            state_columns=[SUMMARY_KEY],
            on_start=_ignore,  # no tqdm bar
            on_progress=_ignore,
        )
        phases.extend(output[SUMMARY_KEY]["timing"] for output in results["outputs"])
        return [_hudgym_outcome(output) for output in results["outputs"]]

    result = await _measured("HUDGym + env.evaluate", concurrency, evaluate)
    result.phases_s, result.close_s = phases, env.close_s
    return result


def _ignore(*args: Any, **kwargs: Any) -> None:
    """A verifiers callback that does nothing (replaces the progress bar)."""


def _hudgym_outcome(output: dict[str, Any]) -> tuple[float, int, bool]:
    moves = sum(turn["outcome"] == TurnOutcome.EXECUTED.value for turn in output[SUMMARY_KEY]["turns"])
    return output["metrics"]["task_completion"], moves, output.get("error") is not None


async def run_floor(
    chat: AsyncOpenAI, rollouts: int, concurrency: int, move_timings: list[Sample] | None = None
) -> RunResult:
    """The same rollouts without a framework: bare `mcp` client + the same chat server; optionally time each move."""
    limit = asyncio.Semaphore(concurrency)

    async def one(seed: int) -> tuple[float, int, bool]:
        async with limit:
            try:
                return await asyncio.wait_for(floor_rollout(chat, seed, move_timings), ROLLOUT_TIMEOUT_S)
            except Exception:  # the bench boundary: a failed rollout is counted, not fatal
                logging.exception("floor rollout (seed %d) failed", seed)
                return 0.0, 0, True

    async def run() -> list[tuple[float, int, bool]]:
        return list(await asyncio.gather(*(one(seed) for seed in seeds(rollouts))))

    return await _measured("bare mcp + openai", concurrency, run)


async def floor_rollout(chat: AsyncOpenAI, seed: int, move_timings: list[Sample] | None) -> tuple[float, int, bool]:
    """One bare rollout: fresh server, setup, one chat call per action (as in HUDGym), evaluate."""
    params = StdioServerParameters(command=sys.executable, args=SERVER_ARGS)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        setup = await session.call_tool("setup", {"name": "board", "arguments": _board(seed)})
        messages = [{"role": "user", "content": _text(setup)}]
        moves = 0
        while not _DONE_CALL.search(reply := await _ask(chat, messages)):
            direction = _MOVE_CALL.search(reply)
            if direction is None:
                raise RuntimeError(f"the policy made no move: {reply!r}")
            with Stopwatch() as watch:
                result = await session.call_tool("move", {"direction": direction.group(1)})
            if move_timings is not None:
                move_timings.append(watch.sample)
            messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": _text(result)}]
            moves += 1
        grade = await session.call_tool("evaluate", {"name": "max_number", "arguments": {"target": 64}})
    reward = (grade.structuredContent or {}).get("reward", 0.0)
    return float(reward), moves, bool(grade.isError)


async def _ask(chat: AsyncOpenAI, messages: list[dict[str, str]]) -> str:
    completion = await chat.chat.completions.create(model="scripted", messages=messages, **SAMPLING)
    return completion.choices[0].message.content or ""


def _text(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


# ---------------------------------------------------------------------------------------------------------------
# Measurement 2: one tool call outside HUDGym (bare ClientSession, and our MCPSession without the harness)
# ---------------------------------------------------------------------------------------------------------------


async def time_moves(call: Callable[[str, dict[str, Any]], Awaitable[Any]], count: int) -> list[Sample]:
    """Time `count` move calls; a fresh game every 10 moves (untimed), as in a rollout; directions from the policy."""
    policy = Play2048Policy(look_ahead=True)
    timings: list[Sample] = []
    board = ""
    for index in range(count):
        if index % MOVES_PER_ROLLOUT == 0 or "GAME OVER" in board:
            board = _text_of(await call("setup", {"name": "board", "arguments": _board(FIRST_SEED + index)}))
        direction = _MOVE_CALL.search(policy([{"role": "user", "content": board}]))
        with Stopwatch() as watch:
            result = await call("move", {"direction": direction.group(1) if direction else "down"})
        timings.append(watch.sample)
        board = _text_of(result)
    return timings


def _text_of(result: Any) -> str:
    return result.text if hasattr(result, "text") else _text(result)


async def time_bare_calls(count: int) -> tuple[list[Sample], float]:
    """`ClientSession.call_tool("move")` round trips on one server; also the server's USS (MiB) afterwards."""
    params = StdioServerParameters(command=sys.executable, args=SERVER_ARGS)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await time_moves(session.call_tool, WARM_UP_CALLS)
        timings = await time_moves(session.call_tool, count)
        servers = psutil.Process().children()
        uss_mib = servers[0].memory_full_info().uss / 2**20 if len(servers) == 1 else float("nan")
    return timings, uss_mib


async def time_session_calls(count: int) -> list[Sample]:
    """The same loop through our `MCPSession.call_tool` (session layer only, no parse, map or verifiers)."""
    config = {"text_2048": {"command": sys.executable, "args": SERVER_ARGS}}
    async with await MCPSession.open(config) as session:
        await time_moves(session.call_tool, WARM_UP_CALLS)
        return await time_moves(session.call_tool, count)


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
class Report:
    """Everything one bench run measured; printed as tables and optionally saved as JSON."""

    options: dict[str, Any]
    load_average: dict[str, list[float]] = field(default_factory=dict)
    env_construct_s: float = 0.0
    runs: list[RunResult] = field(default_factory=list)
    turns: list[list[TurnTiming]] = field(default_factory=list)  # HUDGym c=1, one list per repeat
    floor_moves: list[list[Sample]] = field(default_factory=list)  # bare move calls in c=1 floor rollouts
    bare_calls: list[list[Sample]] = field(default_factory=list)  # tight loop, one list per repeat
    session_calls: list[list[Sample]] = field(default_factory=list)
    server_uss_mib: float = 0.0
    harness_rss_mib: dict[str, float] = field(default_factory=dict)  # this process at start and end
    memory: MemoryPeak | None = None
    memory_run: RunResult | None = None


async def measure(options: argparse.Namespace) -> Report:
    """Run every measurement with one chat server and one environment; everything started here is stopped here."""
    report = Report(options=vars(options))
    report.load_average["start"] = list(os.getloadavg())
    report.harness_rss_mib["start"] = psutil.Process().memory_info().rss / 2**20
    started = time.perf_counter()
    env = TimedHUDGym(load_config("2048", max_turns=MAX_TURNS), build_tasks(options.rollouts))
    report.env_construct_s = time.perf_counter() - started
    with ScriptedChatServer(Play2048Policy(max_moves=MOVES_PER_ROLLOUT, look_ahead=True)) as chat_server:
        async with AsyncOpenAI(base_url=chat_server.base_url, api_key="x", max_retries=0) as chat:
            client = vf.OpenAIChatCompletionsClient(chat)
            warm_up = min(2, len(env.tasks))
            await run_hudgym(env, client, warm_up, rollouts=warm_up)  # warm-up: imports, caches, the connection
            await run_floor(chat, warm_up, warm_up)
            for repeat in range(options.repeats):
                await _one_repeat(report, env, chat, client, repeat)
            with MemorySampler() as sampler:
                report.memory_run = await run_hudgym(env, client, max(options.concurrency))
            report.memory = sampler.peak
            if options.profile:
                await profile_batch(env, client)
    report.load_average["end"] = list(os.getloadavg())
    report.harness_rss_mib["end"] = psutil.Process().memory_info().rss / 2**20
    return report


async def _one_repeat(report: Report, env: TimedHUDGym, chat: AsyncOpenAI, client: vf.Client, repeat: int) -> None:
    """One repeat of every measurement, interleaved so that load drifts hit HUDGym and the baselines alike."""
    options = report.options
    for concurrency in options["concurrency"]:
        env.recording, env.turns, floor_moves = concurrency == 1, [], []
        hudgym = run_hudgym(env, client, concurrency)
        floor = run_floor(chat, options["rollouts"], concurrency, floor_moves)
        for batch in (hudgym, floor) if repeat % 2 == 0 else (floor, hudgym):
            report.runs.append(await batch)
        env.recording = False
        if concurrency == 1:
            report.turns.append(env.turns)
            report.floor_moves.append(floor_moves)
    for loop in (_bare_loop, _session_loop) if repeat % 2 == 0 else (_session_loop, _bare_loop):
        await loop(report, options["calls"])


async def _bare_loop(report: Report, calls: int) -> None:
    timings, report.server_uss_mib = await time_bare_calls(calls)
    report.bare_calls.append(timings)


async def _session_loop(report: Report, calls: int) -> None:
    report.session_calls.append(await time_session_calls(calls))


async def profile_batch(env: TimedHUDGym, client: vf.Client) -> None:
    """Profile one c=1 HUDGym batch (this process only; the servers are other processes) and print the top."""
    profiler = cProfile.Profile()
    profiler.enable()
    await run_hudgym(env, client, 1)
    profiler.disable()
    print("\ncProfile of one c=1 HUDGym batch (this process; waits on servers and the chat server not counted):")
    print("coroutine 'cumtime' is CPU between suspensions; each resumption counts as a call")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(PROFILE_FILTER, 30)


# ---------------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _median_range(values: Sequence[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def print_throughput(report: Report) -> None:
    """Table 1: rollouts/s per concurrency, HUDGym against the bare floor, with CPU and the reward check."""
    options = report.options
    print(
        f"\n1. Rollouts/s, {options['rollouts']} rollouts per batch, each: fresh server, setup, "
        f"{MOVES_PER_ROLLOUT} moves, done(), evaluate.\n   Median of {options['repeats']} repeats [min-max]. "
        "Baseline (floor): a bare mcp client + the same chat server,\n   policy and seeds, in this process, "
        "alternating with HUDGym. ratio: HUDGym/floor within each repeat.\n"
        "   CPU ms/rollout: this process (harness, verifiers, openai, chat server) + servers."
    )
    print(
        f"{'conc':>4}  {'HUDGym+evaluate':>17}  {'floor':>17}  {'ratio':>17}  {'wall s':>6}  "
        f"{'CPU HUDGym':>10}  {'CPU floor':>10}  {'load':>4}"
    )
    for concurrency in options["concurrency"]:
        batches = [run for run in report.runs if run.concurrency == concurrency]
        ours = [run for run in batches if run.harness.startswith("HUDGym")]
        floor = [run for run in batches if not run.harness.startswith("HUDGym")]
        ratios = [mine.rollouts_per_s / bare.rollouts_per_s for mine, bare in zip(ours, floor, strict=True)]
        print(
            f"{concurrency:>4}  {_median_range([run.rollouts_per_s for run in ours], 2):>17}  "
            f"{_median_range([run.rollouts_per_s for run in floor], 2):>17}  {_median_range(ratios, 2):>17}  "
            f"{statistics.median(run.wall_s for run in ours):>6.2f}  {_cpu_split(ours):>10}  {_cpu_split(floor):>10}  "
            f"{statistics.median(run.load_1min for run in batches):>4.1f}"
        )
    _print_reward_check(report.runs)
    _print_phases(report.runs, options["concurrency"])


def _cpu_split(runs: Sequence[RunResult]) -> str:
    harness = statistics.median(run.harness_cpu_s / run.rollouts for run in runs)
    servers = statistics.median(run.server_cpu_s / run.rollouts for run in runs)
    return f"{harness * 1000:.0f} + {servers * 1000:.0f}"


def _print_phases(runs: Sequence[RunResult], concurrencies: Sequence[int]) -> None:
    """Where a HUDGym rollout's time goes: the EpisodeRecord's timings and the close (median ms per rollout)."""
    print("   HUDGym rollout phases, median ms per rollout (the rest of a rollout: 11 chat calls and verifiers):")
    print(
        f"   {'conc':>4}  {'rollout':>7}  {'setup: spawn+init+setup':>23}  {'env: 11 turns':>13}  {'evaluate':>8}  "
        f"{'close':>6}"
    )
    for concurrency in concurrencies:
        mine = [run for run in runs if run.concurrency == concurrency and run.phases_s]
        phases = [phase for run in mine for phase in run.phases_s]
        # one rollout's latency is only known at c=1 (wall / rollouts); at c>1 rollouts overlap
        latency = statistics.median(run.wall_s / run.rollouts for run in mine) * 1000 if concurrency == 1 else None
        setup, env, evaluate = (
            _median_ms(phase[key] for phase in phases) for key in ("setup_s", "env_s", "evaluate_s")
        )
        close = _median_ms(seconds for run in mine for seconds in run.close_s)
        print(
            f"   {concurrency:>4}  {'-' if latency is None else f'{latency:.0f}':>7}  {setup:>23}  {env:>13}  "
            f"{evaluate:>8}  {close:>6}"
        )


def _median_ms(seconds: Iterable[float]) -> str:
    return f"{statistics.median(seconds) * 1000:.1f}"


def _print_reward_check(runs: Sequence[RunResult]) -> None:
    """Rewards, moves and errors of every timed batch: identical work or not."""
    for name in dict.fromkeys(run.harness for run in runs):
        mine = [run for run in runs if run.harness == name]
        means = [statistics.fmean(run.rewards) for run in mine]
        moves = [move for run in mine for move in run.moves]
        errors = sum(run.errors for run in mine)
        print(
            f"   reward check, {name}: mean task_completion {min(means):.4f}-{max(means):.4f} over {len(mine)} "
            f"batches; moves/rollout {min(moves)}-{max(moves)}; errors {errors}"
        )
    reward_sets = {tuple(sorted(round(reward, 6) for reward in run.rewards)) for run in runs}
    same = "yes" if len(reward_sets) == 1 else f"NO ({len(reward_sets)} different reward sets)"
    print(f"   every batch of both harnesses got the same rewards: {same}")


def _per_turn_rows(report: Report) -> list[tuple[str, list[list[Sample]]]]:
    """Each row: a name and its samples, one list per repeat."""

    def inside(attribute: str) -> list[list[Sample]]:
        return [[getattr(timing, attribute) for timing in repeat] for repeat in report.turns]

    return [
        ('bare call_tool("move") in bare rollouts', report.floor_moves),
        ('bare call_tool("move"), tight loop', report.bare_calls),
        ("MCPSession.call_tool, tight loop", report.session_calls),
        ("HUDGym parse (record_turn)", inside("parse")),
        ("HUDGym act (map + MCP call + classify)", [[(t.act_s, math.nan) for t in r] for r in report.turns]),
        ("HUDGym env_response (act + observation)", inside("env_hook")),
        ("HUDGym harness/turn = parse + env_response", inside("harness")),
        ("verifiers add_model_response (incl. parse)", inside("model_hook")),
    ]


def _median_of(repeats: Sequence[Sequence[Sample]], index: int) -> float:
    """The median wall (index 0) or CPU (index 1) time over every repeat."""
    return statistics.median(sample[index] for repeat in repeats for sample in repeat)


def print_per_turn(report: Report) -> None:
    """Table 2: the harness time per turn inside HUDGym against the bare round trip."""
    baseline_wall, baseline_cpu = _median_of(report.floor_moves, 0), _median_of(report.floor_moves, 1)
    tight = _median_of(report.bare_calls, 0)
    print(
        "\n2. Per turn at c=1, ms. Wall: median, p10, p90 over all repeats, and the range of per-repeat medians;\n"
        "   CPU: the event-loop thread's CPU time (client side only; robust to machine load).\n"
        "   HUDGym rows: executed moves inside env.evaluate (fresh server per rollout, a chat call between moves).\n"
        '   "in bare rollouts": the same moves, servers and chat calls without a framework: the like-for-like\n'
        '   baseline ("/rollout"). "tight loop": back-to-back calls on one warm server ("/tight").'
    )
    header = f"{'measurement':<44} {'wall':>6} {'p10':>6} {'p90':>6} {'repeat medians':>14}"
    print(f"{header} {'/rollout':>8} {'/tight':>6} {'CPU':>6} {'/rollout':>8}")
    for name, repeats in _per_turn_rows(report):
        walls = [wall for repeat in repeats for wall, _ in repeat]
        medians = [statistics.median(wall for wall, _ in repeat) for repeat in repeats if repeat]
        wall, cpu = statistics.median(walls), _median_of(repeats, 1)
        print(
            f"{name:<44} {_ms(wall):>6} {_ms(_percentile(walls, 0.1)):>6} {_ms(_percentile(walls, 0.9)):>6} "
            f"{_ms(min(medians)) + '-' + _ms(max(medians)):>14} {wall / baseline_wall:>7.2f}x {wall / tight:>5.2f}x "
            + (f"{_ms(cpu):>6} {cpu / baseline_cpu:>7.2f}x" if not math.isnan(cpu) else f"{'-':>6} {'-':>8}")
        )
    harness = [timing.harness for repeat in report.turns for timing in repeat]
    ratio = statistics.median(wall for wall, _ in harness) / baseline_wall
    cpu_ratio = statistics.median(cpu for _, cpu in harness) / baseline_cpu
    verdict = "within" if ratio <= TARGET_TURN_RATIO else "OVER"
    print(
        f"   harness/turn vs a bare call in bare rollouts: wall {ratio:.2f}x (target <= {TARGET_TURN_RATIO}x: "
        f"{verdict}), CPU {cpu_ratio:.2f}x; wall vs the tight loop {ratio * baseline_wall / tight:.2f}x"
    )


def print_memory(report: Report) -> None:
    """Table 3: memory per concurrent session and the CPU split of the sampled run."""
    peak, run = report.memory, report.memory_run
    if peak is None or run is None:
        return
    growth = peak.harness_rss_peak_mib - peak.harness_rss_before_mib
    per_server = peak.servers_rss_mib / peak.live_servers if peak.live_servers else float("nan")
    print(
        f"\n3. Memory: one extra HUDGym batch at c={run.concurrency} ({run.rollouts} rollouts, "
        f"{run.rollouts_per_s:.2f} rollouts/s), RSS sampled every {MEMORY_SAMPLE_INTERVAL_S * 1000:.0f} ms "
        f"({peak.samples} samples)."
    )
    print(f"{'live MCP servers at peak':<34}{peak.live_servers}")
    print(
        f"{'servers RSS at peak':<34}{peak.servers_rss_mib:.0f} MiB total, {per_server:.1f} MiB per live server, "
        f"largest {peak.largest_server_rss_mib:.1f} MiB"
    )
    print(f"{'one idle server USS':<34}{report.server_uss_mib:.1f} MiB (private; RSS also counts shared pages)")
    print(
        f"{'harness process RSS':<34}{peak.harness_rss_before_mib:.0f} MiB before, {peak.harness_rss_peak_mib:.0f} "
        f"MiB peak, +{growth:.1f} MiB (+{growth / run.concurrency:.2f} MiB per concurrent session)"
    )
    start, end = report.harness_rss_mib["start"], report.harness_rss_mib["end"]
    print(f"{'harness RSS over the whole bench':<34}{start:.0f} MiB after imports, {end:.0f} MiB at the end")
    harness_ms, server_ms = run.harness_cpu_s / run.rollouts * 1000, run.server_cpu_s / run.rollouts * 1000
    share = server_ms / (harness_ms + server_ms)
    print(f"{'CPU per rollout':<34}harness {harness_ms:.0f} ms + servers {server_ms:.0f} ms ({share:.0%} in servers)")


def print_peer_baseline() -> None:
    """Table 4: the research notes' numbers, quoted."""
    print(
        "\n4. Peer baseline FROM RESEARCH NOTES (perf-baseline.md), NOT MEASURED IN THIS RUN; rollouts/s, 16 rollouts"
    )
    print("   x 10 moves, median of 3 [min-max]; * = wrong work (rollouts share one game).")
    print(f"{'':<40}  {'c=1':>17}  {'c=4':>18}  {'c=16':>18}")
    for name, *cells in PEER_BASELINE:
        print(f"{name:<40}  {cells[0]:>17}  {cells[1]:>18}  {cells[2]:>18}")
    for name, value in PEER_PER_TURN:
        print(f"{name:<40}  {value}")


def print_header(report: Report) -> None:
    """The machine, the load and the settings, so numbers from different runs can be compared."""
    options = report.options
    start, end = report.load_average["start"][0], report.load_average["end"][0]
    print(
        f"bench/rollouts.py: Python {sys.version.split()[0]}, {os.cpu_count()} cores, verifiers {vf.__version__}; "
        f"1-min load average {start:.2f} at start, {end:.2f} at end"
    )
    print(
        f"rollouts {options['rollouts']}, repeats {options['repeats']}, concurrency {options['concurrency']}, "
        f"bare calls {options['calls']}/repeat, max_turns {MAX_TURNS}; HUDGym() built in "
        f"{report.env_construct_s * 1000:.0f} ms (no I/O); one untimed warm-up batch of each kind first"
    )


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; `--quick` shrinks every size for a smoke run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=16, help="Rollouts (distinct seeds) per batch.")
    parser.add_argument("--repeats", type=int, default=3, help="Repeats of every measurement; medians are shown.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="Concurrency levels.")
    parser.add_argument("--calls", type=int, default=300, help="Timed bare move calls per repeat.")
    parser.add_argument("--json", metavar="PATH", help="Also write every measurement as JSON.")
    parser.add_argument("--profile", action="store_true", help="Also cProfile one c=1 HUDGym batch.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 3 rollouts, 1 repeat, c=1 and 3, 50 calls.")
    options = parser.parse_args(argv)
    if options.quick:
        options.rollouts, options.repeats, options.concurrency, options.calls = 3, 1, [1, 3], 50
    if 1 not in options.concurrency:
        parser.error("--concurrency must include 1: the per-turn timings are taken at c=1")
    if min(options.rollouts, options.repeats, options.calls, *options.concurrency) < 1:
        parser.error("--rollouts, --repeats, --calls and --concurrency must be at least 1")
    return options


def _reap_leftovers() -> int:
    """Kill any child process still running (there should be none); return how many there were."""
    leftovers = psutil.Process().children(recursive=True)
    for process in leftovers:
        process.kill()
    psutil.wait_procs(leftovers, timeout=5)
    return len(leftovers)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench, print the tables, optionally save JSON; every process started here is gone at exit."""
    options = parse_options(argv)
    logging.basicConfig(level=logging.WARNING)
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
