"""`hud-vf-gym eval` as a `Command`: flags from `EvalOptions`, `--resume` merged with the saved run's options."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hud_vf_gym.cli.command import Command
from hud_vf_gym.cli.eval.options import EvalOptions

__all__ = ["COMMAND", "run_eval"]

HELP = "Evaluate a model on a taskset (default: the embedded SmolLM2 on the 2048 taskset)."


def build_eval_options(options_class: type, given: Mapping[str, Any]) -> EvalOptions:
    """The options of this run: with `--resume`, the earlier run's own options plus any flag given again."""
    if given.get("resume") is not None:
        from hud_vf_gym.cli.eval.results import ResultsFolder

        saved = ResultsFolder(Path(given["resume"])).read_run().get("options", {})
        return EvalOptions.from_run(saved, dict(given))
    return EvalOptions(**given)


def run_eval(options: EvalOptions) -> int:
    """Run `hud-vf-gym eval`: print the results table (or the dry-run report) and return the exit status."""
    from hud_vf_gym.cli.eval.evaluation import run_eval as evaluate

    report = evaluate(options)
    sys.stdout.write(report.table + "\n")
    if not options.dry_run:
        sys.stdout.write(f"\nresults: {report.output}\n")
    return report.exit_code


COMMAND = Command(name="eval", help=HELP, options=EvalOptions, run=run_eval, build_options=build_eval_options)
