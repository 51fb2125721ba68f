"""How long `hud-vf-gym --help` and `hud-vf-gym eval --help` take, against a bare interpreter's start.

Each command runs `--repeats` times in a fresh interpreter (`python -m hud_vf_gym.cli ...`, what the console script
runs); the table shows the median and the slowest wall time, and the baseline `python -c pass` in the same run, so
the difference is what hud-vf-gym's imports cost. `tests/cli/test_app.py` checks the reason help is fast (no
verifiers, pydantic, torch... imported before a command runs); this script is where the time comes from.

Run: `python bench/cli_help.py [--repeats 10]`
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass (baseline)": ["-c", "pass"],
    "hud-vf-gym --help": ["-m", "hud_vf_gym.cli", "--help"],
    "hud-vf-gym eval --help": ["-m", "hud_vf_gym.cli", "eval", "--help"],
    "hud-vf-gym eval --concurency 2": ["-m", "hud_vf_gym.cli", "eval", "--concurency", "2"],
}


def time_once(arguments: list[str]) -> float:
    """Wall seconds of one run of `python <arguments>` (its exit status is not checked: a usage error is 2)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, *arguments], capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> int:
    """Print a Markdown table: command, median and slowest wall time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--repeats", type=int, default=10, help="runs per command (default: 10)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average: {os.getloadavg()[0]:.1f}")
    print("| command | median | slowest |")
    print("|---|---|---|")
    for label, arguments in COMMANDS.items():
        times = [time_once(arguments) for _ in range(args.repeats)]
        print(f"| `{label}` | {statistics.median(times):.2f} s | {max(times):.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
