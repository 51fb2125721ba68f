"""The README's first command, measured: wall time, peak memory and the rewards of `hud-vf-gym eval` with defaults.

Runs `hud-vf-gym eval` (the embedded SmolLM2 on 5 built-in 2048 tasks, 1 rollout, 10 turns) in a child process,
exactly as the README's command 1 ends, and prints:

- wall time, and CPU time (user + system, the command and every child it waited for: its 2048 servers): on a
  shared machine the wall time depends on the other jobs, the CPU time much less;
- peak RSS of the `hud-vf-gym` process (the kernel's `ru_maxrss`, what `/usr/bin/time -v` reports) and the peak
  of the whole process tree (the command plus its 2048 servers, sampled every 0.1 s);
- the overall reward and components from the run's `summary.json`;
- the load average before and after, so a reader can tell a quiet machine from a shared one.

`--fresh-cache` points `HUD_VF_GYM_CACHE` at an empty folder, so the run includes the one-time conversion of the
embedded model (the README's "first run"); without it the user's cache is used, as on every later run.
`--convert-only` times just that conversion (`hud_vf_gym.local_model.model.ensure_converted` in a child process).

Run: `python bench/first_run.py [--fresh-cache] [--convert-only] [--repeats 1]`
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

COMMAND = ["-m", "hud_vf_gym.cli", "eval"]  # what the `hud-vf-gym eval` console script runs, with no flags
CONVERT = [
    "-c",
    "from hud_vf_gym.local_model.model import embedded_gguf, ensure_converted; ensure_converted(embedded_gguf())",
]
SAMPLE_S = 0.1  # how often the process tree's RSS is summed
MIB = 2**20


@dataclass
class Measurement:
    """One run of the command: times, memory, its log lines and the rewards it wrote."""

    wall_s: float
    cpu_s: float
    main_peak_mib: float
    tree_peak_mib: float
    returncode: int
    summary: dict[str, object] = field(default_factory=dict)
    log_tail: str = ""


class TreeSampler(threading.Thread):
    """Sum the RSS of a process and its descendants every `SAMPLE_S` seconds; keep the largest sum."""

    def __init__(self, pid: int) -> None:
        """Watch the process `pid` (start the thread to sample)."""
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        """Sample until `stopped` is set or the process is gone."""
        while not self.stopped.is_set():
            total = 0
            try:
                for process in [self.root, *self.root.children(recursive=True)]:
                    try:
                        total += process.memory_info().rss
                    except psutil.Error:
                        continue
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            self.stopped.wait(SAMPLE_S)


def measure(arguments: list[str], environment: dict[str, str], cwd: Path) -> Measurement:
    """Run `python <arguments>` and measure it: wall time, the process's peak RSS, its tree's sampled peak."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *arguments], cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    sampler = TreeSampler(process.pid)
    sampler.start()
    stderr_lines: list[str] = []

    def read_stderr() -> None:
        assert process.stderr is not None
        stderr_lines.extend(raw.decode(errors="replace").rstrip() for raw in iter(process.stderr.readline, b""))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert process.stdout is not None
    stdout = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    sampler.stopped.set()
    sampler.join()
    reader.join(timeout=5)
    return Measurement(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        main_peak_mib=usage.ru_maxrss * 1024 / MIB,  # Linux reports kilobytes
        tree_peak_mib=max(sampler.peak, usage.ru_maxrss * 1024) / MIB,
        returncode=process.returncode,
        log_tail="\n".join([*stderr_lines[-5:], *stdout.splitlines()[-12:]]),
    )


def run_eval(environment: dict[str, str], workdir: Path) -> Measurement:
    """One `hud-vf-gym eval` with defaults, writing into `workdir/results`."""
    output = workdir / f"results-{time.strftime('%H%M%S')}-{os.getpid()}"
    result = measure([*COMMAND, "--output", str(output)], environment, workdir)
    summary_file = output / "summary.json"
    if summary_file.is_file():
        result.summary = json.loads(summary_file.read_text())
    return result


def print_row(label: str, result: Measurement) -> None:
    """One Markdown table row: times, memory, the overall reward and two components, the exit status."""
    summary = result.summary
    reward = summary.get("mean_reward", "?")
    found = summary.get("components")
    components = found if isinstance(found, dict) else {}
    print(
        f"| {label} | {result.wall_s:.0f} s ({result.wall_s / 60:.1f} min) | {result.cpu_s:.0f} s "
        f"| {result.main_peak_mib / 1024:.2f} GiB "
        f"| {result.tree_peak_mib / 1024:.2f} GiB | {_fmt(reward)} | {_fmt(components.get('tool_execution', '?'))} "
        f"| {_fmt(components.get('format_compliance', '?'))} | {result.returncode} |"
    )


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> int:
    """Measure the README's first command and print one table row per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--fresh-cache", action="store_true", help="convert the embedded model again (first run)")
    parser.add_argument("--convert-only", action="store_true", help="time only the one-time model conversion")
    parser.add_argument("--repeats", type=int, default=1, help="runs of the command (default: 1)")
    args = parser.parse_args()
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    print(f"machine: {os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="hud-vf-gym-first-run-") as scratch:
        workdir = Path(scratch)
        if args.fresh_cache or args.convert_only:
            environment["HUD_VF_GYM_CACHE"] = str(workdir / "cache")
        if args.convert_only:
            result = measure(CONVERT, environment, workdir)
            print(
                f"conversion: {result.wall_s:.1f} s wall, {result.cpu_s:.1f} s CPU, peak RSS "
                f"{result.main_peak_mib / 1024:.2f} GiB (exit {result.returncode})"
            )
            return result.returncode
        print("| run | wall time | CPU time | peak RSS, hud-vf-gym | peak RSS, with servers | reward | tool_execution "
              "| format_compliance | exit |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        status = 0
        for index in range(args.repeats):
            label = "first (converts)" if args.fresh_cache and index == 0 else "cached model"
            result = run_eval(environment, workdir)
            print_row(label, result)
            if result.returncode != 0:
                print(result.log_tail, file=sys.stderr)
                status = result.returncode
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return status


if __name__ == "__main__":
    sys.exit(main())
