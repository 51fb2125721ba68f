"""Command-line flags from an options dataclass: one `--flag-name` per field, its help from `metadata["help"]`.

This is the small part of TRL's `TrlParser` the base install needs (TRL itself is a `train` extra). A field typed
`int | None` or `str | None` accepts the word `none`; a `bool` field that defaults to False is a switch. Flags the
user did not give are left out of the parsed namespace, so a caller can tell given values from defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

__all__ = ["add_dataclass_arguments", "given_values"]

_NONE_WORDS = frozenset({"none", "None", "all"})


def _converter(kind: type, optional: bool) -> Any:
    def convert(text: str) -> Any:
        if optional and text in _NONE_WORDS:
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {kind.__name__}{' or none' if optional else ''}, got {text!r}"
            ) from None

    convert.__name__ = kind.__name__  # argparse names the type in its own messages
    return convert


def _field_type(annotation: Any) -> tuple[type, bool]:
    """The base type of a field and whether it may be None (`int | None` gives `(int, True)`)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        if len(members) != 1:
            raise TypeError(f"unsupported option type {annotation!r}: only X or X | None")
        return members[0], True
    return annotation, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, options_class: type) -> None:
    """Add one flag per field of `options_class`, in field order."""
    hints = typing.get_type_hints(options_class)
    for item in dataclasses.fields(options_class):
        flag = "--" + item.name.replace("_", "-")
        help_text = item.metadata.get("help", "")
        kind, optional = _field_type(hints[item.name])
        if kind is bool:
            parser.add_argument(flag, dest=item.name, action="store_true", default=argparse.SUPPRESS, help=help_text)
            continue
        default = "none" if item.default is None else item.default
        if "(default" not in help_text:  # a help text that explains its default says it better than the value
            help_text = f"{help_text} (default: {default})"
        parser.add_argument(
            flag,
            dest=item.name,
            type=_converter(kind, optional),
            default=argparse.SUPPRESS,
            metavar=item.name.upper(),
            help=help_text,
        )


def given_values(namespace: argparse.Namespace, options_class: type) -> dict[str, Any]:
    """The fields the user gave on the command line, by field name."""
    names = {item.name for item in dataclasses.fields(options_class)}
    return {name: value for name, value in vars(namespace).items() if name in names}
