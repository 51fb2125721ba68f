"""What bench/rollouts.py and its baselines share: the work unit, the clocks and one timed batch's result.

Work unit (perf-baseline.md): one rollout = setup(4x4, seed) + 10 moves + done() + evaluate(max_number, target 64)
on the built-in text-2048 server, with an instant scripted policy. Every rollout has its own seed, so rewards are
fixed per seed and wrong work (two rollouts moving one game) shows in the reward check.
"""

from __future__ import annotations

import os
import re
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

SERVER_ARGS = ["-m", "hud_vf_gym.environments.text_2048"]
SERVER_COMMAND = [sys.executable, *SERVER_ARGS]
FIRST_SEED = 1000
MOVES_PER_ROLLOUT = 10
MAX_TURNS = 12  # 10 moves + done() = 11 turns; one spare, so done() (not truncation) ends every rollout
SAMPLING = {"temperature": 0.0, "max_tokens": 64}
ENV_SERVER_WORKERS = 2  # env_server.py: one worker process per core of the 2-core machine this bench is written for
ROLLOUT_TIMEOUT_S = 120.0  # a fresh-server rollout takes ~1 s alone and ~6 s at c=16 on 2 cores
EVALUATE_ARGUMENTS = {"name": "max_number", "arguments": {"target": 64}}
DONE_CALL = re.compile(r"<tool>\s*done\(\s*\)\s*</tool>")
MOVE_CALL = re.compile(r"<tool>\s*(left|right|up|down)\(\s*\)\s*</tool>")

# One rollout's outcome as every harness reports it: (task_completion reward, moves executed, failed).
Outcome = tuple[float, int, bool]
# One timed call: (wall seconds, CPU seconds of the event-loop thread). The CPU excludes the server processes and
# the chat server's threads, so it shows the client side's own cost, and it is far less sensitive to machine load.
Sample = tuple[float, float]


def seeds(count: int) -> list[int]:
    """The game seeds of the first `count` rollouts (shared by every harness)."""
    return [FIRST_SEED + index for index in range(count)]


def board_arguments(seed: int) -> dict[str, Any]:
    """The setup hub call's arguments for one rollout's game."""
    return {"name": "board", "arguments": {"board_size": 4, "seed": seed}}


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
class RunResult:
    """One timed batch of rollouts at one concurrency."""

    harness: str
    concurrency: int
    rollouts: int
    wall_s: float
    harness_cpu_s: float  # this process and any env-server processes: harness, verifiers and the openai client
    server_cpu_s: float  # the MCP servers: reaped children plus the growth of live ones (warm servers)
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


async def measured(
    harness: str,
    concurrency: int,
    run: Callable[[], Awaitable[list[Outcome]]],
    helpers: Sequence[psutil.Process] = (),
) -> RunResult:
    """Time `run` and take the CPU of this process and its `helpers`, and of the MCP servers (reaped and live).

    `helpers`: processes that run this harness's rollouts (an env server), counted with their descendants but the
    MCP servers. Servers that a helper starts and reaps during the batch are not seen (in pooled runs none are).
    """
    self_before, reaped_before = _own_cpu(), _reaped_cpu()
    servers_before, helpers_before = _live_servers_cpu(), _helpers_cpu(helpers)
    started = time.perf_counter()
    outcomes = await run()
    wall_s = time.perf_counter() - started
    live_growth = _growth(servers_before, _live_servers_cpu())
    helpers_growth = _growth(helpers_before, _helpers_cpu(helpers))
    return RunResult(
        harness=harness,
        concurrency=concurrency,
        rollouts=len(outcomes),
        wall_s=wall_s,
        harness_cpu_s=_own_cpu() - self_before + helpers_growth,
        server_cpu_s=_reaped_cpu() - reaped_before + live_growth,
        rewards=[reward for reward, _, _ in outcomes],
        moves=[moves for _, moves, _ in outcomes],
        errors=sum(error for _, _, error in outcomes),
        load_1min=os.getloadavg()[0],
    )


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reaped_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _growth(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU added by live processes: growth for one alive at both ends, all of it for one started in between."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _live_servers_cpu() -> dict[int, float]:
    """CPU seconds of each running MCP server among this process's descendants, by pid."""
    return _cpu_by_pid(psutil.Process().children(recursive=True), servers=True)


def _helpers_cpu(helpers: Sequence[psutil.Process]) -> dict[int, float]:
    """CPU seconds of each helper and of its descendants that are not MCP servers, by pid."""
    processes = [process for helper in helpers for process in (helper, *helper.children(recursive=True))]
    return _cpu_by_pid(processes, servers=False)


def _cpu_by_pid(processes: Sequence[psutil.Process], servers: bool) -> dict[int, float]:
    """CPU seconds of the MCP servers among `processes` (`servers`) or of the others, by pid."""
    cpu = {}
    for process in processes:
        try:
            if (SERVER_ARGS[-1] in process.cmdline()) != servers:
                continue
            times = process.cpu_times()
        except psutil.Error:  # exited while we looked; a server's CPU moves to the reaped total
            continue
        cpu[process.pid] = times.user + times.system
    return cpu
