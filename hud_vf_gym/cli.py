"""The `hud-vf-gym` command: a thin dispatcher over subcommands, each a small function pair in `SUBCOMMANDS`.

```
hud-vf-gym eval [--taskset 2048] [--config 2048] [--num-tasks 5] [--base-url URL --model NAME] ...
```

Adding a subcommand: write `add_<name>_arguments(parser)` and `run_<name>(namespace) -> int`, and register them in
`SUBCOMMANDS`. A subcommand's options live in a dataclass in its own module (rule 14); this file only parses and
dispatches. User errors (bad options, config, taskset, a missing extra) end with one `hud-vf-gym <cmd>: error: ...`
line and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hud_vf_gym.errors import HUDGymError

__all__ = ["SUBCOMMANDS", "Subcommand", "main", "make_parser"]

USAGE_ERROR = 2  # argparse's own status for bad usage; user errors found later exit the same way


@dataclass(frozen=True, slots=True)
class Subcommand:
    """One `hud-vf-gym <name>` subcommand: its help line, how to add its flags, and how to run it."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of `hud-vf-gym eval` (one per `EvalOptions` field)."""
    from hud_vf_gym.cli_args import add_dataclass_arguments
    from hud_vf_gym.eval_options import EvalOptions

    add_dataclass_arguments(parser, EvalOptions)


def run_eval(namespace: argparse.Namespace) -> int:
    """Run `hud-vf-gym eval`: print the results table (or the dry-run report) and return the exit status."""
    from hud_vf_gym.cli_args import given_values
    from hud_vf_gym.eval_options import EvalOptions
    from hud_vf_gym.evaluation import run_eval as evaluate
    from hud_vf_gym.results import ResultsFolder

    given = given_values(namespace, EvalOptions)
    if given.get("resume") is not None:  # finish the earlier run with its own options, and any flag given again
        saved = ResultsFolder(Path(given["resume"])).read_run().get("options", {})
        options = EvalOptions.from_run(saved, given)
    else:
        options = EvalOptions(**given)
    report = evaluate(options)
    print(report.table)
    if not options.dry_run:
        print(f"\nresults: {report.output}")
    return report.exit_code


def _module_subcommand(module_name: str, help_text: str) -> Subcommand:
    """A subcommand whose module exposes `add_arguments(parser)` and `run(args)`; imported only when used."""
    import importlib

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        importlib.import_module(module_name).add_arguments(parser)

    def run(namespace: argparse.Namespace) -> int:
        status: int = importlib.import_module(module_name).run(namespace)
        return status

    return Subcommand(help=help_text, add_arguments=add_arguments, run=run)


SUBCOMMANDS: dict[str, Subcommand] = {
    "eval": Subcommand(
        help="Evaluate a model on a taskset (default: the embedded SmolLM2 on the 2048 taskset).",
        add_arguments=add_eval_arguments,
        run=run_eval,
    ),
    "init": _module_subcommand(
        "hud_vf_gym.init_config", "Write an environment config (YAML) for an MCP server by listing its tools."
    ),
    "dataset": _module_subcommand(
        "hud_vf_gym.dataset_tool",
        "Check a task file and save it as a dataset with HUD's columns (locally, or pushed to the hub).",
    ),
}


def make_parser() -> argparse.ArgumentParser:
    """The `hud-vf-gym` parser with one subparser per registered subcommand."""
    parser = argparse.ArgumentParser(prog="hud-vf-gym", description="HUD environments as RL environments.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, subcommand in SUBCOMMANDS.items():
        subparser = subparsers.add_parser(name, help=subcommand.help, description=subcommand.help)
        subcommand.add_arguments(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hud-vf-gym` console script; returns the exit status."""
    parser = make_parser()
    namespace = parser.parse_args(argv)
    try:
        return SUBCOMMANDS[namespace.command].run(namespace)
    except HUDGymError as exc:  # a user error: one clear message, no traceback
        print(f"hud-vf-gym {namespace.command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"hud-vf-gym {namespace.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
