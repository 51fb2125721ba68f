"""Compare `hud-vf-gym eval` result folders: per-component means with 95% confidence intervals, and a plot.

```
python eval/compare.py results/baseline results/trained [--labels base,trained] [--plot comparison.png]
```

For each folder it reads `results.jsonl`, leaves out rollouts that ended in an infrastructure error (as the eval
summary does), and prints a Markdown table: one row per measure (reward, each rubric component, success, turns),
one column per folder, each cell `mean [low, high]`, where [low, high] is a percentile bootstrap interval (10,000
resamples of the rollouts, seeded, so the table is reproducible). A folder with one rollout gets no interval.

With `--plot` it also writes a PNG: the distribution of rewards (left) and of turns (right) per folder. Plotting
needs matplotlib: `pip install "hud-vf-gym[report]"`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hud_vf_gym.cli.eval.summary import COMPONENTS, error_kind, is_success, turns_of

RESULTS_FILE = "results.jsonl"
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # a fixed seed: the same folders always give the same intervals
MEASURES = ("reward", *COMPONENTS, "success", "turns")
INSTALL_REPORT = 'pip install "hud-vf-gym[report]"'


@dataclass(frozen=True)
class Run:
    """One results folder: its label and, per measure, one value per scored rollout."""

    label: str
    values: dict[str, np.ndarray]
    infra_errors: int

    @property
    def scored(self) -> int:
        """Rollouts that count (no infrastructure error)."""
        return len(self.values["reward"])


def _metric(row: dict[str, Any], name: str) -> float:
    metrics = row.get("metrics") or {}
    value = metrics.get(name, row.get(name, 0.0))
    return float(value) if isinstance(value, int | float) else 0.0


def load_run(folder: Path, label: str) -> Run:
    """Read a results folder's rollouts into per-measure arrays (infrastructure errors left out, but counted)."""
    results = folder / RESULTS_FILE
    if not results.is_file():
        raise SystemExit(f"compare: {folder}: no {RESULTS_FILE}; expected the --output folder of `hud-vf-gym eval`")
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    scored = [row for row in rows if error_kind(row) != "infra"]
    values = {
        "reward": [float(row.get("reward") or 0.0) for row in scored],
        **{name: [_metric(row, name) for row in scored] for name in COMPONENTS},
        "success": [1.0 if is_success(row) else 0.0 for row in scored],
        "turns": [float(turns_of(row)) for row in scored],
    }
    return Run(
        label, {name: np.asarray(column, dtype=float) for name, column in values.items()}, len(rows) - len(scored)
    )


def bootstrap_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean; None with fewer than two values."""
    if len(values) < 2:
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = rng.choice(values, size=(BOOTSTRAP_RESAMPLES, len(values)), replace=True).mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def _cell(values: np.ndarray) -> str:
    if len(values) == 0:
        return "-"
    interval = bootstrap_interval(values)
    mean = float(values.mean())
    return f"{mean:.3f}" if interval is None else f"{mean:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def render_table(runs: Sequence[Run]) -> str:
    """The comparison as a Markdown table, one row per measure and one column per run."""
    header = "| measure | " + " | ".join(f"{run.label} (n={run.scored})" for run in runs) + " |"
    lines = [header, "|" + "|".join("---" for _ in range(len(runs) + 1)) + "|"]
    lines += [
        "| " + " | ".join([measure, *(_cell(run.values[measure]) for run in runs)]) + " |" for measure in MEASURES
    ]
    lines.append("")
    lines.append(
        f"cells: mean [{CONFIDENCE:.0%} bootstrap interval]; infrastructure errors left out: "
        + ", ".join(f"{run.label} {run.infra_errors}" for run in runs)
    )
    return "\n".join(lines)


def plot(runs: Sequence[Run], output: Path) -> None:
    """Write a PNG with the reward distribution (left) and the turns distribution (right) of every run."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display is needed or wanted
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise SystemExit(f"compare: --plot needs matplotlib, which is not installed; run: {INSTALL_REPORT}") from None
    figure, (rewards, turns) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [f"{run.label}\n(n={run.scored})" for run in runs]
    for axis, measure, title in ((rewards, "reward", "Reward per rollout"), (turns, "turns", "Turns per rollout")):
        data = [run.values[measure] if len(run.values[measure]) else np.zeros(0) for run in runs]
        axis.boxplot(data, tick_labels=labels, showmeans=True)
        for position, values in enumerate(data, start=1):  # every rollout as a point, jittered sideways
            jitter = np.random.default_rng(position).uniform(-0.08, 0.08, len(values))
            axis.scatter(position + jitter, values, s=12, alpha=0.5)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    turns.yaxis.set_major_locator(MaxNLocator(integer=True))  # turns are whole numbers
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, print the table and write the plot if asked."""
    parser = argparse.ArgumentParser(description="Compare hud-vf-gym eval result folders.", allow_abbrev=False)
    parser.add_argument("folders", nargs="+", type=Path, help="Results folders written by hud-vf-gym eval.")
    parser.add_argument("--labels", help="Comma-separated labels, one per folder (default: the folder names).")
    parser.add_argument("--plot", type=Path, help="Write the reward and turns distributions to this PNG file.")
    options = parser.parse_args(argv)
    labels = options.labels.split(",") if options.labels else [folder.name for folder in options.folders]
    if len(labels) != len(options.folders):
        parser.error(f"--labels has {len(labels)} labels for {len(options.folders)} folders; give one per folder")
    runs = [load_run(folder, label) for folder, label in zip(options.folders, labels, strict=True)]
    print(render_table(runs))
    if options.plot is not None:
        plot(runs, options.plot)
        print(f"\nplot: {options.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
