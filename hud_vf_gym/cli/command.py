"""The one convention every `hud-vf-gym` subcommand follows: a `Command` built from an options dataclass.

A subcommand is a module (or package) under `hud_vf_gym/cli/` that defines `COMMAND = Command(...)`:

```python
COMMAND = Command(
    name="dataset",
    help="Check a task file and save it as a dataset with HUD's columns.",
    options=DatasetOptions,  # a dataclass; one flag per field, help from field metadata
    run=run_dataset,  # (DatasetOptions) -> exit status
    examples=EXAMPLES,
)
```

and is listed once in `hud_vf_gym.cli.app.COMMAND_MODULES`. Flags come from the dataclass (`hud_vf_gym.cli.flags`);
a field's metadata may add `positional`, `short`, `choices` and `metavar`. The module that defines `COMMAND` must
stay cheap to import (the parser imports every one to list them): heavy imports belong inside `run`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hud_vf_gym.cli.flags import add_dataclass_arguments, given_values

__all__ = ["Command"]


def _construct(options_class: type, given: Mapping[str, Any]) -> Any:
    return options_class(**given)


@dataclass(frozen=True, slots=True)
class Command:
    """One `hud-vf-gym <name>` subcommand: its help, its options dataclass and the function that runs it."""

    name: str
    help: str
    options: type
    run: Callable[[Any], int]
    examples: str = ""
    # Builds the options from the flags the user gave (defaults left out); `eval --resume` merges a saved run here.
    build_options: Callable[[type, Mapping[str, Any]], Any] = _construct

    def register(self, subparsers: Any) -> argparse.ArgumentParser:
        """Add this command's parser, with one flag per options field, to a `hud-vf-gym` subparsers object."""
        parser: argparse.ArgumentParser = subparsers.add_parser(
            self.name,
            help=self.help,
            description=self.help,
            epilog=self.examples or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,  # `--rollouts` must not quietly mean `--rollouts-per-task`
        )
        add_dataclass_arguments(parser, self.options)
        return parser

    def options_from(self, namespace: argparse.Namespace) -> Any:
        """Build the options dataclass from a parsed namespace; its `__post_init__` checks combinations."""
        return self.build_options(self.options, given_values(namespace, self.options))

    def __call__(self, namespace: argparse.Namespace) -> int:
        """Run the command on a parsed namespace and return its exit status."""
        return self.run(self.options_from(namespace))
