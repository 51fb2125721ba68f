"""The soak's parts: seeded tasks, an env that names each rollout's server, the runner, the killer, the judge.

Attribution is exact rather than by timing: `SoakHUDGym` records the pid of each rollout's server when its setup
has run and forgets it when the rollout's cleanup starts; the killer picks its victim from those pids (an in-use
kill, whose rollout is then known) or from the servers of the pool's idle sessions (an idle kill: a warm server
that must simply never be handed out again). Servers still starting or closing are never picked.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
import verifiers as vf

from hud_vf_gym import HUDGym, Task, load_taskset
from hud_vf_gym.core.record import TurnOutcome
from hud_vf_gym.env import EPISODE_KEY, SUMMARY_KEY

from lib.common import EVALUATE_ARGUMENTS, MOVES_PER_ROLLOUT, SAMPLING, SERVER_ARGS, board_arguments

TEMPLATE_TASK_ID = "2048_target_64"
# Errors a kill -9 of the rollout's own server may surface as: its connection dropped, or (a kill during the
# session's start) it never finished starting.
KILL_ERRORS = frozenset({"ServerConnectionError", "ServerStartError", "TaskSetupError"})


def build_tasks(count: int, first_seed: int) -> list[Task]:
    """`count` copies of the built-in 4x4 target-64 task, each with its own seed (and so its own game)."""
    template = next(task for task in load_taskset("2048").tasks if task.id == TEMPLATE_TASK_ID)
    return [
        Task.from_row(
            {
                "id": f"2048_soak_seed_{seed}",
                "prompt": template.prompt,
                "mcp_config": {"text_2048": {"command": sys.executable, "args": SERVER_ARGS}},
                "setup_tool": {"name": "setup", "arguments": board_arguments(seed)},
                "evaluate_tool": {"name": "evaluate", "arguments": EVALUATE_ARGUMENTS},
            },
            index=index,
        )
        for index, seed in enumerate(range(first_seed, first_seed + count))
    ]


class SoakHUDGym(HUDGym):
    """HUDGym that knows which server process each running rollout holds (`in_use`: pid -> example id)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Build the environment; no rollout holds a server yet."""
        super().__init__(*args, **kwargs)
        self.in_use: dict[int, int] = {}

    async def setup_state(self, state: vf.State) -> vf.State:
        """Open and set up as usual, then note the server this rollout holds."""
        state = await super().setup_state(state)
        session = state[EPISODE_KEY].session
        for pid in session.process_groups if session is not None else ():
            self.in_use[pid] = int(state["example_id"])
        return state

    @vf.cleanup(priority=60)  # type: ignore[untyped-decorator]  # before finish_episode (50) closes the session
    async def release_pids(self, state: vf.State) -> None:
        """The rollout is ending: from here on its server is no longer its own."""
        example_id = state.get("example_id")
        for pid in [pid for pid, holder in self.in_use.items() if holder == example_id]:
            del self.in_use[pid]


@dataclass
class RolloutResult:
    """One rollout as the soak sees it."""

    example_id: int
    started: float
    ended: float
    error_type: str | None
    error_message: str | None
    moves: int
    graded: bool


@dataclass
class Kill:
    """One kill -9: when, which server, and the rollout that held it (None: the server was idle in the pool)."""

    at: float
    pid: int
    victim: int | None


@dataclass
class PhaseResult:
    """One phase (warm or fresh) of the soak."""

    name: str
    results: list[RolloutResult] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    wall_s: float = 0.0


def live_servers() -> list[psutil.Process]:
    """The text-2048 server processes among this process's descendants that still run."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if SERVER_ARGS[-1] in process.cmdline() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


async def run_rollouts(
    env: SoakHUDGym, client: vf.Client, inputs: Sequence[dict[str, Any]], concurrency: int, phase: PhaseResult
) -> None:
    """Run every input once, `concurrency` at a time, appending each rollout's result to `phase` as it ends."""
    slots = asyncio.Semaphore(concurrency)

    async def one(rollout_input: dict[str, Any]) -> None:
        async with slots:
            started = time.monotonic()
            output = await env.run_rollout(
                rollout_input, client, "scripted", SAMPLING, max_retries=0, state_columns=[SUMMARY_KEY]
            )
            phase.results.append(_result(rollout_input, output, started))

    await asyncio.gather(*(one(rollout_input) for rollout_input in inputs))


def _result(rollout_input: dict[str, Any], output: Any, started: float) -> RolloutResult:
    error = output.get("error")
    episode = output.get(SUMMARY_KEY) or {}
    turns = episode.get("turns") or []
    return RolloutResult(
        example_id=int(rollout_input["example_id"]),
        started=started,
        ended=time.monotonic(),
        error_type=str(error.get("error")) if isinstance(error, dict) else (type(error).__name__ if error else None),
        error_message=str(error.get("message")) if isinstance(error, dict) else (str(error) if error else None),
        moves=sum(turn.get("outcome") == TurnOutcome.EXECUTED.value for turn in turns),
        graded=episode.get("grade") is not None,
    )


async def kill_now_and_then(
    env: SoakHUDGym, phase: PhaseResult, every_s: float, stop: asyncio.Event, rng: random.Random
) -> None:
    """Until `stop`: wait about `every_s` (uniformly 0.5x to 1.5x), then SIGKILL one server this process started.

    Three kills in four hit a server a rollout holds; the rest hit an idle (pooled) one when there is one.
    """
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=rng.uniform(0.5 * every_s, 1.5 * every_s))
            return
        except TimeoutError:
            pass
        held = dict(env.in_use)
        pool = env.harness.pool
        idle = [pid for pid in (pool.idle_process_groups() if pool is not None else ()) if pid not in held]
        if held and (not idle or rng.random() < 0.75):
            pid = rng.choice(sorted(held))
            victim: int | None = held[pid]
        elif idle:
            pid, victim = rng.choice(idle), None
        else:
            continue
        env.in_use.pop(pid, None)  # a dead server is no one's to kill again
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended on its own just now
            continue
        phase.kills.append(Kill(time.monotonic(), pid, victim))


@dataclass
class Verdict:
    """What the kills did: errors explained or not, stalls, silent scores."""

    errors: int
    explained: int
    unexplained: list[RolloutResult]
    in_use_kills: int
    idle_kills: int
    stalls_s: list[float]
    silent_scores: list[RolloutResult]


def judge(phase: PhaseResult) -> Verdict:
    """Attribute every error to a kill of that rollout's server, and time how long each victim went on after it."""
    by_rollout = {result.example_id: result for result in phase.results}
    victims = {kill.victim: kill for kill in phase.kills if kill.victim is not None}
    errors = [result for result in phase.results if result.error_type is not None]
    explained = [r for r in errors if r.example_id in victims and r.error_type in KILL_ERRORS]
    stalls = [
        by_rollout[victim].ended - kill.at
        for victim, kill in victims.items()
        if victim in by_rollout and by_rollout[victim].error_type is not None
    ]
    # a rollout that reported no error but did not finish the work unit was scored as if nothing had happened
    silent = [
        result
        for result in phase.results
        if result.error_type is None and (result.moves < MOVES_PER_ROLLOUT or not result.graded)
    ]
    return Verdict(
        errors=len(errors),
        explained=len(explained),
        unexplained=[result for result in errors if result not in explained],
        in_use_kills=len(victims),
        idle_kills=sum(kill.victim is None for kill in phase.kills),
        stalls_s=stalls,
        silent_scores=silent,
    )
