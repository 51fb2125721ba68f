"""The `hud-vf-gym` command: a thin dispatcher over the subcommands listed in `COMMAND_MODULES`.

```
hud-vf-gym eval [--taskset 2048] [--config 2048] [--num-tasks 5] [--base-url URL --model NAME] ...
hud-vf-gym init SERVER [-o configs/NAME.yaml]
hud-vf-gym dataset TASKS --name NAME [--push]
hud-vf-gym train [--gpus 8xH100 --provider prime] [--plan] ...
hud-vf-gym serve [--host 127.0.0.1] [--port 8000] [--state-dir .hud-vf-gym]
```

Adding a subcommand: write a module that defines `COMMAND = Command(...)` (see `hud_vf_gym.cli.command`) and add
its name to `COMMAND_MODULES`. User errors (bad options, config, taskset, a missing extra) end with one
`hud-vf-gym <cmd>: error: ...` line and exit status 2; no traceback. A mistyped flag or subcommand is answered
with that (sub)command's usage and the closest name (`hud_vf_gym.cli.parsing`).

`hud-vf-gym --help` and `hud-vf-gym eval --help` import only this module, the command modules and their options
dataclasses: no verifiers, pydantic or torch (tests/cli/test_app.py checks it), so help answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hud_vf_gym.cli.command import Command
from hud_vf_gym.cli.parsing import CommandLineParser
from hud_vf_gym.errors import HUDGymError

__all__ = ["COMMAND_MODULES", "commands", "main", "make_parser"]

USAGE_ERROR = 2  # argparse's own status for bad usage; user errors found later exit the same way
INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)

# Every subcommand, in the order `hud-vf-gym --help` lists them; each module defines `COMMAND`.
COMMAND_MODULES = (
    "hud_vf_gym.cli.eval.command",
    "hud_vf_gym.cli.init.options",
    "hud_vf_gym.cli.dataset.options",
    "hud_vf_gym.cli.train.command",
    "hud_vf_gym.cli.serve",
    "hud_vf_gym.integrations.art.command",
)


def commands() -> dict[str, Command]:
    """Every registered subcommand by name."""
    found: dict[str, Command] = {}
    for module_name in COMMAND_MODULES:
        command: Command = importlib.import_module(module_name).COMMAND
        found[command.name] = command
    return found


def make_parser(registered: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    """The `hud-vf-gym` parser with one subparser per registered subcommand."""
    parser = CommandLineParser(prog="hud-vf-gym", description="HUD environments as RL environments.")
    # subcommand parsers are CommandLineParsers too (argparse makes them of the parent's class)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (registered or commands()).values():
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hud-vf-gym` console script; returns the exit status."""
    registered = commands()
    namespace = make_parser(registered).parse_args(argv)
    try:
        return registered[namespace.command](namespace)
    except HUDGymError as exc:  # a user error: one clear message, no traceback
        print(f"hud-vf-gym {namespace.command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"hud-vf-gym {namespace.command}: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
