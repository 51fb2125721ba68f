"""The tables bench/rollouts.py prints: throughput, reward check, pool start, phases, per-turn cost, memory, peers.

Everything here reads a finished `Report`; nothing is measured.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import verifiers as vf

from lib.common import ENV_SERVER_WORKERS, MAX_TURNS, MOVES_PER_ROLLOUT, RunResult, Sample

MEMORY_SAMPLE_INTERVAL_S = 0.05  # psutil reads /proc per child; 20 samples/s costs little next to 16 servers
TARGET_TURN_RATIO = 1.1  # issue 9: harness time per turn within 1.1x of the bare round trip
TARGET_POOLED_RATE = 20.0  # issue 9: rollouts/s at c=4 with reuse on this 2-core machine
POOLED, FRESH, BARE_WARM, BARE_FRESH, PEER = "HUDGym pooled", "HUDGym fresh", "bare warm", "bare fresh", "peer MCPEnv"
POOLED_SERVED = f"pooled, {ENV_SERVER_WORKERS} workers"  # HUDGym pooled in verifiers' env server (env_server.py)
HARNESSES = (POOLED, POOLED_SERVED, FRESH, BARE_WARM, BARE_FRESH, PEER)

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


@dataclass
class Report:
    """Everything one bench run measured; printed as tables and optionally saved as JSON."""

    options: dict[str, Any]
    load_average: dict[str, list[float]] = field(default_factory=dict)
    env_construct_s: float = 0.0  # HUDGym(): no I/O
    peer_construct_s: float = 0.0  # MCPEnv(): starts its one shared server
    pool_starts: list[RunResult] = field(default_factory=list)  # each pooled env's first batch (starts the pool)
    runs: list[RunResult] = field(default_factory=list)
    turns: list[list[TurnTiming]] = field(default_factory=list)  # HUDGym pooled c=1, one list per repeat
    floor_moves: list[list[Sample]] = field(default_factory=list)  # bare move calls in c=1 bare warm rollouts
    bare_calls: list[list[Sample]] = field(default_factory=list)  # tight loop, one list per repeat
    session_calls: list[list[Sample]] = field(default_factory=list)
    server_uss_mib: float = 0.0
    harness_rss_mib: dict[str, float] = field(default_factory=dict)  # this process at start and end
    memory: MemoryPeak | None = None
    memory_run: RunResult | None = None


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


def _runs(report: Report, harness: str, concurrency: int) -> list[RunResult]:
    return [run for run in report.runs if run.harness == harness and run.concurrency == concurrency]


def _paired_ratio(report: Report, mine: str, baseline: str, concurrency: int) -> str:
    """rollouts/s of `mine` over `baseline`, paired within each repeat."""
    pairs = zip(_runs(report, mine, concurrency), _runs(report, baseline, concurrency), strict=True)
    return _median_range([a.rollouts_per_s / b.rollouts_per_s for a, b in pairs], 2)


def print_throughput(report: Report) -> None:
    """Table 1: rollouts/s per concurrency for every harness, the ratios, the CPU split and the reward check."""
    options = report.options
    print(
        f"\n1. Rollouts/s, {options['rollouts']} rollouts per batch ({MOVES_PER_ROLLOUT} moves, done(), evaluate "
        f"each), median of {options['repeats']} repeats [min-max],\n   all harnesses interleaved in one run. "
        "Pooled = HUDGym with sessions.reuse per_slot (its pool already warm), in this process;\n"
        f"   {POOLED_SERVED} = the same in verifiers' env server (vf-eval -w {ENV_SERVER_WORKERS}); bare warm = a bare "
        "mcp client on warm servers\n   (the floor of one process). * peer MCPEnv at c>1: WRONG work (one shared game)."
    )
    print(f"{'conc':>4}  " + "  ".join(f"{name:>17}" for name in HARNESSES) + f"  {'load':>4}")
    for concurrency in options["concurrency"]:
        cells = [
            _median_range([run.rollouts_per_s for run in _runs(report, name, concurrency)], 2) for name in HARNESSES
        ]
        if concurrency > 1:
            cells[-1] += "*"
        load = statistics.median(run.load_1min for run in report.runs if run.concurrency == concurrency)
        print(f"{concurrency:>4}  " + "  ".join(f"{cell:>17}" for cell in cells) + f"  {load:>4.1f}")
    ratios = ("pooled/bare warm", "pooled/fresh", "pooled/peer c=1", "workers/pooled")
    print("\n   paired ratios (rollouts/s):   " + "  ".join(f"{name:>17}" for name in ratios))
    for concurrency in options["concurrency"]:
        cells = [
            _paired_ratio(report, POOLED, BARE_WARM, concurrency),
            _paired_ratio(report, POOLED, FRESH, concurrency),
            _paired_ratio(report, POOLED, PEER, concurrency) if concurrency == 1 else "-",
            _paired_ratio(report, POOLED_SERVED, POOLED, concurrency),
        ]
        print(f"   c={concurrency:<4}{'':24}" + "  ".join(f"{cell:>17}" for cell in cells))
    print(
        "\n   CPU ms per rollout, harness (this process, for workers also the env-server processes: verifiers, the "
        "openai client, HUDGym) + MCP servers:"
    )
    print(f"   {'conc':>4}  " + "  ".join(f"{name:>15}" for name in HARNESSES))
    for concurrency in options["concurrency"]:
        cells = [_cpu_split(_runs(report, name, concurrency)) for name in HARNESSES]
        print(f"   {concurrency:>4}  " + "  ".join(f"{cell:>15}" for cell in cells))
    _print_target(report)
    _print_pool_start(report)
    _print_reward_check(report)
    _print_phases(report)


def _cpu_split(runs: Sequence[RunResult]) -> str:
    harness = statistics.median(run.harness_cpu_s / run.rollouts for run in runs)
    servers = statistics.median(run.server_cpu_s / run.rollouts for run in runs)
    return f"{harness * 1000:.0f} + {servers * 1000:.0f}"


def _print_target(report: Report) -> None:
    for name in (POOLED, POOLED_SERVED):
        runs = _runs(report, name, 4)
        if runs:
            rate = statistics.median(run.rollouts_per_s for run in runs)
            verdict = "met" if rate >= TARGET_POOLED_RATE else "NOT met"
            print(f"   target: >= {TARGET_POOLED_RATE:.0f} rollouts/s at c=4, {name:<17} -> {verdict} ({rate:.1f})")


def _print_pool_start(report: Report) -> None:
    """What the first pooled batch at each concurrency cost, servers' start-up included."""
    print("   pool start: each pooled env's first batch, which also starts its servers (one per slot):")
    for run in report.pool_starts:
        steady = statistics.median(r.rollouts_per_s for r in _runs(report, run.harness, run.concurrency))
        print(
            f"   {run.harness:<17} c={run.concurrency:<3} first batch {run.wall_s:.2f} s "
            f"({run.rollouts_per_s:.2f} rollouts/s), then {steady:.2f} rollouts/s warm"
        )


def _print_reward_check(report: Report) -> None:
    """Per-seed rewards and moves of every batch: identical work or not."""
    reference = _by_seed(_runs(report, BARE_FRESH, 1)[0])
    print("   reward check against bare fresh at c=1 (per seed: task_completion and moves):")
    for name in HARNESSES:
        mine = [run for run in report.runs if run.harness == name]
        differing = sorted({run.concurrency for run in mine if _by_seed(run) != reference})
        errors = sum(run.errors for run in mine)
        verdict = "identical in every batch" if not differing else f"DIFFERENT at c={differing}"
        print(f"   {name:<17} {verdict}; errors {errors}")


def _by_seed(run: RunResult) -> list[tuple[float, int]]:
    return [(round(reward, 6), moves) for reward, moves in zip(run.rewards, run.moves, strict=True)]


def _print_phases(report: Report) -> None:
    """Where a HUDGym rollout's time goes: the EpisodeRecord's timings and the close (median ms per rollout)."""
    print("   HUDGym rollout phases, median ms per rollout (the rest: 11 chat calls and verifiers):")
    print(f"   {'':14} {'conc':>4}  {'setup (open+setup)':>18}  {'env: 11 turns':>13}  {'evaluate':>8}  {'close':>6}")
    for name in (POOLED, FRESH):
        for concurrency in report.options["concurrency"]:
            runs = _runs(report, name, concurrency)
            phases = [phase for run in runs for phase in run.phases_s]
            setup, env, evaluate = (
                _median_ms(phase[key] for phase in phases) for key in ("setup_s", "env_s", "evaluate_s")
            )
            close = _median_ms(seconds for run in runs for seconds in run.close_s)
            print(f"   {name:<14} {concurrency:>4}  {setup:>18}  {env:>13}  {evaluate:>8}  {close:>6}")


def _median_ms(seconds: Iterable[float]) -> str:
    values = list(seconds)
    return f"{statistics.median(values) * 1000:.1f}" if values else "-"


def _per_turn_rows(report: Report) -> list[tuple[str, list[list[Sample]]]]:
    """Each row: a name and its samples, one list per repeat."""

    def inside(attribute: str) -> list[list[Sample]]:
        return [[getattr(timing, attribute) for timing in repeat] for repeat in report.turns]

    return [
        ('bare call_tool("move") in bare warm rollouts', report.floor_moves),
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
    """Table 2: the harness time per turn inside pooled HUDGym against the bare round trip."""
    baseline_wall, baseline_cpu = _median_of(report.floor_moves, 0), _median_of(report.floor_moves, 1)
    tight = _median_of(report.bare_calls, 0)
    print(
        "\n2. Per turn at c=1, ms. Wall: median, p10, p90 over all repeats, and the range of per-repeat medians;\n"
        "   CPU: the event-loop thread's CPU time (client side only; robust to machine load).\n"
        "   HUDGym rows: executed moves inside env.evaluate (pooled: warm server, a chat call between moves).\n"
        '   "in bare warm rollouts": the same moves, warm servers and chat calls without a framework: the\n'
        '   like-for-like baseline ("/rollout"). "tight loop": back-to-back calls on one warm server ("/tight").'
    )
    header = f"{'measurement':<46} {'wall':>6} {'p10':>6} {'p90':>6} {'repeat medians':>14}"
    print(f"{header} {'/rollout':>8} {'/tight':>6} {'CPU':>6} {'/rollout':>8}")
    for name, repeats in _per_turn_rows(report):
        walls = [wall for repeat in repeats for wall, _ in repeat]
        medians = [statistics.median(wall for wall, _ in repeat) for repeat in repeats if repeat]
        wall, cpu = statistics.median(walls), _median_of(repeats, 1)
        print(
            f"{name:<46} {_ms(wall):>6} {_ms(_percentile(walls, 0.1)):>6} {_ms(_percentile(walls, 0.9)):>6} "
            f"{_ms(min(medians)) + '-' + _ms(max(medians)):>14} {wall / baseline_wall:>7.2f}x {wall / tight:>5.2f}x "
            + (f"{_ms(cpu):>6} {cpu / baseline_cpu:>7.2f}x" if not math.isnan(cpu) else f"{'-':>6} {'-':>8}")
        )
    harness = [timing.harness for repeat in report.turns for timing in repeat]
    ratio = statistics.median(wall for wall, _ in harness) / baseline_wall
    cpu_ratio = statistics.median(cpu for _, cpu in harness) / baseline_cpu
    verdict = "within" if ratio <= TARGET_TURN_RATIO else "OVER"
    print(
        f"   harness/turn vs a bare call in bare warm rollouts: wall {ratio:.2f}x (target <= {TARGET_TURN_RATIO}x: "
        f"{verdict}), CPU {cpu_ratio:.2f}x; wall vs the tight loop {ratio * baseline_wall / tight:.2f}x"
    )


def print_memory(report: Report) -> None:
    """Table 3: memory per concurrent session (one pooled batch) and the CPU split of that batch."""
    peak, run = report.memory, report.memory_run
    if peak is None or run is None:
        return
    growth = peak.harness_rss_peak_mib - peak.harness_rss_before_mib
    per_server = peak.servers_rss_mib / peak.live_servers if peak.live_servers else float("nan")
    print(
        f"\n3. Memory: one extra pooled HUDGym batch at c={run.concurrency} ({run.rollouts} rollouts, "
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
        f"{report.env_construct_s * 1000:.0f} ms (no I/O), MCPEnv() in {report.peer_construct_s * 1000:.0f} ms "
        "(starts its server); untimed warm-up batches first"
    )
