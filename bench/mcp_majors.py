"""Per-turn cost on mcp 1 vs mcp 2: the same work in each interpreter given, one after the other, one table.

For the interpreter it runs in, it times on the built-in 2048 server:

- server start: `MCPSession.open` of a fresh server (initialize + tools/list), median of a few;
- session call: one `MCPSession.call_tool("move")` round trip (the MCP layer only);
- harness turn: one `TaskEpisode.step("<tool>left()</tool>")` (parse, map, call, classify: a whole turn), and the
  2048 server's own CPU per turn over the same turns.

Each call gives wall time and the event loop thread's CPU time (far less sensitive to machine load); the table
shows medians. With `--pythons`, the script runs itself under each interpreter (a venv with mcp 1.x, one with
mcp 2.x) and prints the comparison, the first interpreter being the baseline.

Run: `python bench/mcp_majors.py --pythons .venv/bin/python .venv-mcp2/bin/python [--calls 300]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from lib.bare_floor import time_session_calls
from lib.common import SERVER_ARGS, SERVER_COMMAND, Sample

STARTS = 5
DEFAULT_CALLS = 300


def _median_ms(samples: list[Sample], index: int) -> float:
    return statistics.median(sample[index] for sample in samples) * 1000


async def _time_starts() -> list[float]:
    from hud_vf_gym.runtime.session import MCPSession

    config = {"text_2048": {"command": SERVER_COMMAND[0], "args": SERVER_ARGS}}
    starts = []
    for _ in range(STARTS):
        began = time.perf_counter()
        session = await MCPSession.open(config)
        starts.append(time.perf_counter() - began)
        await session.aclose()
    return starts


async def _time_turns(count: int) -> tuple[list[Sample], float]:
    from hud_vf_gym.config import load_config
    from hud_vf_gym.core.harness import Harness
    from hud_vf_gym.tasks.loading import load_taskset

    harness = Harness(load_config("2048", session_reuse=False))
    [task] = load_taskset("2048", num_tasks=1).tasks
    episode = harness.episode(task)
    samples: list[Sample] = []
    try:
        await episode.start()
        assert episode.session is not None
        server = psutil.Process(episode.session.process_groups[0])  # the server leads its process group
        server_cpu = sum(server.cpu_times()[:2])
        moves = ["<tool>left()</tool>", "<tool>down()</tool>", "<tool>right()</tool>", "<tool>up()</tool>"]
        for index in range(count):
            wall, cpu = time.perf_counter(), time.thread_time()
            await episode.step(moves[index % len(moves)])
            samples.append((time.perf_counter() - wall, time.thread_time() - cpu))
        server_cpu = sum(server.cpu_times()[:2]) - server_cpu
    finally:
        await episode.close()
        await harness.close_all()
    return samples, server_cpu / count


def measure(calls: int) -> dict[str, Any]:
    """This interpreter's numbers."""
    starts = asyncio.run(_time_starts())
    session = asyncio.run(time_session_calls(calls))
    turns, server_cpu_s = asyncio.run(_time_turns(calls))
    return {
        "python": sys.executable,
        "mcp": metadata.version("mcp"),
        "start_s": statistics.median(starts),
        "session_ms": _median_ms(session, 0),
        "session_cpu_ms": _median_ms(session, 1),
        "turn_ms": _median_ms(turns, 0),
        "turn_cpu_ms": _median_ms(turns, 1),
        "server_cpu_ms": server_cpu_s * 1000,
    }


def compare(pythons: list[str], calls: int) -> None:
    """Run `measure` under each interpreter and print one table (ratios against the first)."""
    script = str(Path(__file__).resolve())
    rows = []
    for python in pythons:
        completed = subprocess.run([python, script, "--calls", str(calls), "--json"], capture_output=True, text=True)
        if completed.returncode != 0:
            sys.exit(f"{python} failed:\n{completed.stderr[-2000:]}")
        rows.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print(f"2048 server, {calls} calls each, medians (ratio against mcp {base['mcp']})")
    print("| mcp | server start s | session call ms (cpu) | harness turn ms (cpu) | server cpu ms per turn |")
    print("|---|---|---|---|---|")
    for row in rows:
        ratio = row["turn_cpu_ms"] / base["turn_cpu_ms"]
        print(
            f"| {row['mcp']} | {row['start_s']:.2f} | {row['session_ms']:.2f} ({row['session_cpu_ms']:.2f}) | "
            f"{row['turn_ms']:.2f} ({row['turn_cpu_ms']:.2f}, x{ratio:.2f}) | {row['server_cpu_ms']:.2f} |"
        )


def main() -> None:
    """Parse the command line; measure here, or compare interpreters."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="timed calls per measurement")
    parser.add_argument("--pythons", nargs="+", help="interpreters to compare (the first is the baseline)")
    parser.add_argument("--json", action="store_true", help="print this interpreter's numbers as one JSON line")
    options = parser.parse_args()
    if options.pythons:
        compare(options.pythons, options.calls)
    elif options.json:
        print(json.dumps(measure(options.calls)))
    else:
        print(json.dumps(measure(options.calls), indent=2))


if __name__ == "__main__":
    main()
