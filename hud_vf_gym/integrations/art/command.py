"""`hud-vf-gym export-art RESULTS`: an evaluation's results.jsonl as ART trajectory groups (JSONL, ART's format).

Cheap to import (the parser imports every command module): ART is imported only when the command runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from hud_vf_gym.cli.command import Command

__all__ = ["COMMAND", "ExportOptions", "run_export"]

DEFAULT_FILE = "art-groups.jsonl"  # written inside the results folder unless -o says otherwise

HELP = "Export a `hud-vf-gym eval` results folder as ART trajectory groups (one group per task, JSONL)."
EXAMPLES = """\
examples:
  hud-vf-gym export-art results/20261206-101500                 # writes results/20261206-101500/art-groups.jsonl
  hud-vf-gym export-art results/20261206-101500 -o groups.jsonl

Each finished rollout becomes an art.Trajectory (messages, reward, metrics, task id and rollout index); a rollout
that failed for infrastructure reasons becomes one of its group's exceptions. Read the file back with
art.utils.trajectory_migration.deserialize_trajectory_groups. Needs the art extra (Python 3.12+).
"""


@dataclass
class ExportOptions:
    """Options of `hud-vf-gym export-art`."""

    results: str = field(
        metadata={"help": "The results folder of a `hud-vf-gym eval` run.", "positional": True, "metavar": "RESULTS"}
    )
    output: str | None = field(
        default=None, metadata={"help": f"The JSONL file to write (default: RESULTS/{DEFAULT_FILE}).", "short": "-o"}
    )


def run_export(options: ExportOptions) -> int:
    """Convert and write the groups; print where they went and what they hold."""
    from hud_vf_gym.integrations.art.export import results_to_groups, write_groups

    folder = Path(options.results)
    groups = results_to_groups(folder)
    target = write_groups(groups, Path(options.output) if options.output else folder / DEFAULT_FILE)
    trajectories = sum(len(group.trajectories) for group in groups)
    failures = sum(len(group.exceptions) for group in groups)
    sys.stdout.write(
        f"wrote {len(groups)} group(s), {trajectories} trajectories and {failures} infrastructure failure(s) "
        f"to {target}\n"
    )
    return 0


COMMAND = Command(name="export-art", help=HELP, options=ExportOptions, run=run_export, examples=EXAMPLES)
