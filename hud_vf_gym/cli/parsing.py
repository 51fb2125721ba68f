"""The argparse parser every `hud-vf-gym` command uses: no abbreviations, its own usage on errors, did-you-mean.

Plain argparse, as used by a parent parser with subcommands, has three habits that cost a new user time:

- a prefix of a flag is accepted as the flag (`--rollouts` for `--rollouts-per-task`): `allow_abbrev=False`;
- a flag the subcommand does not know is reported by the parent, with the parent's usage (`usage: hud-vf-gym
  [-h] COMMAND ...`): here the subcommand reports it, with its own usage;
- a typo gets no hint: here an unknown flag, subcommand or choice names the closest one (`did you mean
  --concurrency?`), found with `difflib` among the names that exist.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["CommandLineParser", "closest"]

_CUTOFF = 0.6  # difflib's similarity floor: `--concurency` -> `--concurrency`, but `--xyz` suggests nothing


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like `word`, or None when none is close enough to be a likely typo."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=_CUTOFF)
    return matches[0] if matches else None


def _hint(word: str, candidates: Iterable[str]) -> str:
    match = closest(word, candidates)
    return f"; did you mean {match}?" if match else ""


class CommandLineParser(argparse.ArgumentParser):
    """An `ArgumentParser` that refuses abbreviations, reports unknown flags itself and suggests the closest name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As `argparse.ArgumentParser`, with `allow_abbrev=False` unless given."""
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]  # typeshed's overloads; same behaviour for a list of strings
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse, and refuse leftover arguments here, so the error shows this (sub)command's usage."""
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self._unrecognized(extras))
        return parsed, extras

    def _unrecognized(self, extras: list[str]) -> str:
        message = f"unrecognized arguments: {' '.join(extras)}"
        flags = [option for action in self._actions for option in action.option_strings if option.startswith("--")]
        for extra in extras:
            if extra.startswith("-"):
                return message + _hint(extra.split("=", 1)[0], flags)
        return message

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """Refuse a value outside `choices` (a subcommand name is one), naming the closest choice."""
        if action.choices is None or value in action.choices:
            return
        choices = [str(choice) for choice in action.choices]
        message = f"invalid choice: {value!r} (choose from {', '.join(choices)})"
        raise argparse.ArgumentError(action, message + _hint(str(value), choices))
