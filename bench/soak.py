"""Soak: many 2048 rollouts through HUDGym while servers are killed at random; do errors stay explained and bounded?

Two phases, each at `--concurrency`: warm (`sessions.reuse: per_slot`, a pooled server per slot) and fresh (a server
started and stopped per rollout). The model is `Play2048Policy` behind the scripted chat server in its own process
(lib/policy_server.py). Meanwhile a killer sends SIGKILL, every `--kill-every-s` on average, to one text-2048 server
this process started: three times in four to a server a rollout holds, otherwise to an idle pooled one
(lib/soak_support.py says how each kill is attributed to its rollout).

Printed, per phase and overall:
- errors explained (the rollout whose server was killed failed with a connection or start error) / unexplained;
- kills (in use / idle) and the stall after an in-use kill: from the kill to the end of its rollout (max, p50);
- silent scores: rollouts that reported no error but did not finish the work unit (10 moves, a grade);
- RSS and open fds of this process at the start, the middle (after the warm phase) and the end;
- leftovers: server processes still running after the environments closed.

Done when (issue 15): every kill noticed within 1 s (max stall < 2 s over >= 50 kills), 0 unexplained errors,
0 silent scores, RSS growth < 10%, 0 leftovers; at least `MIN_KILLS` kills, or the run proves too little.

Run: `python bench/soak.py [--rollouts 1000] [--fresh-rollouts 200] [--concurrency 8] [--kill-every-s 1.5] [--json P]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import datasets
import psutil
import verifiers as vf
from openai import AsyncOpenAI, Timeout

from hud_vf_gym import load_config

from lib.common import MAX_TURNS
from lib.policy_server import policy_process
from lib.soak_support import (
    PhaseResult,
    SoakHUDGym,
    Verdict,
    build_tasks,
    judge,
    kill_now_and_then,
    live_servers,
    run_rollouts,
)

CLIENT_TIMEOUT = Timeout(120.0, connect=60.0)  # the chat server is local and instant; this only bounds a hang
FIRST_SEED = 5000
MIN_KILLS = 50  # the bar: a verdict over fewer kills could be luck


def resources() -> dict[str, float]:
    """RSS (MB) and open file descriptors of this process."""
    process = psutil.Process()
    return {"rss_mb": process.memory_info().rss / 2**20, "fds": float(process.num_fds())}


async def run_phase(
    name: str, reuse: bool | str, count: int, base_url: str, options: argparse.Namespace, rng: random.Random
) -> PhaseResult:
    """One phase: `count` seeded rollouts at the concurrency, with the killer running alongside."""
    env = SoakHUDGym(load_config("2048", max_turns=MAX_TURNS, session_reuse=reuse), build_tasks(count, FIRST_SEED))
    inputs = env.get_eval_dataset().to_list()
    phase, stop = PhaseResult(name), asyncio.Event()
    started = time.monotonic()
    async with AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=CLIENT_TIMEOUT) as openai_client:
        killer = asyncio.create_task(kill_now_and_then(env, phase, options.kill_every_s, stop, rng))
        try:
            await run_rollouts(env, vf.OpenAIChatCompletionsClient(openai_client), inputs, options.concurrency, phase)
        finally:
            stop.set()
            await killer
            await env.harness.close_all()
    phase.wall_s = time.monotonic() - started
    return phase


def print_phase(phase: PhaseResult, verdict: Verdict) -> None:
    """One phase's table rows."""
    stalls = sorted(verdict.stalls_s)
    max_stall = f"{stalls[-1]:.2f}" if stalls else "-"
    median = f"{statistics.median(stalls):.2f}" if stalls else "-"
    print(
        f"| {phase.name} | {len(phase.results)} | {phase.wall_s:.0f} | {verdict.errors} | {verdict.explained} | "
        f"{len(verdict.unexplained)} | {verdict.in_use_kills} / {verdict.idle_kills} | {max_stall} | {median} | "
        f"{len(verdict.silent_scores)} |"
    )


def report(phases: list[tuple[PhaseResult, Verdict]], samples: dict[str, dict[str, float]], leftovers: int) -> bool:
    """Print the tables; return whether every 'done when' condition of the issue holds."""
    print(
        "| phase | rollouts | wall s | errors | explained | unexplained | kills in use / idle | max stall s | "
        "p50 stall s | silent scores |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for phase, verdict in phases:
        print_phase(phase, verdict)
    print("\n| when | RSS MB | open fds |\n|---|---|---|")
    for when, sample in samples.items():
        print(f"| {when} | {sample['rss_mb']:.0f} | {sample['fds']:.0f} |")
    for phase, verdict in phases:
        for result in verdict.unexplained[:10]:
            print(
                f"unexplained error in {phase.name} rollout {result.example_id}: {result.error_type}: "
                f"{(result.error_message or '')[:300]}"
            )
        for result in verdict.silent_scores[:10]:
            print(
                f"silent score in {phase.name} rollout {result.example_id}: {result.moves} moves, "
                f"graded={result.graded}"
            )
    stalls = [stall for _, verdict in phases for stall in verdict.stalls_s]
    kills = sum(verdict.in_use_kills + verdict.idle_kills for _, verdict in phases)
    growth = samples["end"]["rss_mb"] / samples["start"]["rss_mb"] - 1.0
    print(
        f"\nkills: {kills}; max stall after a kill: {max(stalls, default=0.0):.2f} s; "
        f"RSS growth start->end: {growth:+.1%}; server processes left: {leftovers}"
    )
    return (
        kills >= MIN_KILLS  # fewer kills prove little: run longer (--rollouts) or kill more often (--kill-every-s)
        and max(stalls, default=0.0) < 2.0
        and all(not verdict.unexplained and not verdict.silent_scores for _, verdict in phases)
        and growth < 0.10
        and leftovers == 0
    )


async def soak(options: argparse.Namespace) -> tuple[list[tuple[PhaseResult, Verdict]], dict[str, dict[str, float]]]:
    """Both phases, with resource samples around them."""
    rng = random.Random(options.seed)
    samples: dict[str, dict[str, float]] = {}
    phases = []
    with policy_process("xml") as base_url:
        warm_up = await run_phase("warm-up", "per_slot", options.concurrency, base_url, options, random.Random(0))
        del warm_up  # only loads the code paths and caches, so "start" is measured warm
        samples["start"] = resources()
        warm = await run_phase("warm", "per_slot", options.rollouts, base_url, options, rng)
        phases.append((warm, judge(warm)))
        samples["middle"] = resources()
        fresh = await run_phase("fresh", False, options.fresh_rollouts, base_url, options, rng)
        phases.append((fresh, judge(fresh)))
        samples["end"] = resources()
    return phases, samples


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rollouts", type=int, default=1000, help="warm-phase rollouts")
    parser.add_argument("--fresh-rollouts", type=int, default=200, help="fresh-phase rollouts")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--kill-every-s", type=float, default=1.5, help="mean seconds between two kills")
    parser.add_argument("--seed", type=int, default=0, help="seeds the killer's choices")
    parser.add_argument("--json", help="also write the raw results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak and print its tables; the exit status is 0 when every condition of the issue holds."""
    options = parse_options(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("verifiers").setLevel(logging.CRITICAL)  # it logs each killed rollout; the tables count them
    datasets.disable_progress_bars()
    phases, samples = asyncio.run(soak(options))
    leftovers = len(live_servers())
    passed = report(phases, samples, leftovers)
    if options.json:
        raw: dict[str, Any] = {
            "phases": [{"phase": asdict(phase), "verdict": asdict(verdict)} for phase, verdict in phases],
            "resources": samples,
            "leftovers": leftovers,
        }
        with open(options.json, "w", encoding="utf-8") as file:
            json.dump(raw, file, indent=2)
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
