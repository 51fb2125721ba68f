"""Command-line flags from an options dataclass: one `--flag-name` per field, its help from `metadata["help"]`.

This is the small part of TRL's `TrlParser` the base install needs (TRL itself is a `train` extra). A field typed
`int | None` or `str | None` accepts the word `none`; a `bool` field that defaults to False is a switch. Flags the
user did not give are left out of the parsed namespace, so a caller can tell given values from defaults.

A field's metadata may also say `positional=True` (an argument, not a flag), `short="-o"` (a one-letter alias),
`choices=(...)` and `metavar="PATH"`. A field without a default is a required flag (or a required positional).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

__all__ = ["add_dataclass_arguments", "given_values", "to_argv"]

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
    """Add one flag (or positional argument) per field of `options_class`, in field order."""
    hints = typing.get_type_hints(options_class)
    for item in dataclasses.fields(options_class):
        kind, optional = _field_type(hints[item.name])
        if item.metadata.get("positional"):
            parser.add_argument(
                item.name,
                type=_converter(kind, optional),
                metavar=item.metadata.get("metavar", item.name.upper()),
                help=item.metadata.get("help", ""),
            )
            continue
        names = [item.metadata["short"]] if "short" in item.metadata else []
        names.append("--" + item.name.replace("_", "-"))
        parser.add_argument(*names, dest=item.name, default=argparse.SUPPRESS, **_flag_settings(item, kind, optional))


def _flag_settings(item: dataclasses.Field[Any], kind: type, optional: bool) -> dict[str, Any]:
    """The `add_argument` keywords of one non-positional field: a switch for a bool, a typed value otherwise."""
    help_text = item.metadata.get("help", "")
    if kind is bool:
        return {"action": "store_true", "help": help_text}
    required = item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
    if not required and "(default" not in help_text:  # a help text that explains its default says it better
        default = "none" if item.default is None else item.default
        help_text = f"{help_text} (default: {default})"
    return {
        "type": _converter(kind, optional),
        "metavar": item.metadata.get("metavar", None if "choices" in item.metadata else item.name.upper()),
        "choices": item.metadata.get("choices"),
        "required": required,
        "help": help_text,
    }


def given_values(namespace: argparse.Namespace, options_class: type) -> dict[str, Any]:
    """The fields the user gave on the command line, by field name."""
    names = {item.name for item in dataclasses.fields(options_class)}
    return {name: value for name, value in vars(namespace).items() if name in names}


def to_argv(options: Any) -> list[str]:
    """The flags that rebuild `options` through `add_dataclass_arguments`: every field that differs from its default.

    A switch is its flag alone, a None in place of another default is the word `none`, positionals come first.
    """
    positionals: list[str] = []
    flags: list[str] = []
    for item in dataclasses.fields(options):
        value = getattr(options, item.name)
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            default = dataclasses.MISSING
        if item.metadata.get("positional"):
            positionals.append(str(value))
            continue
        if value == default:
            continue
        flag = "--" + item.name.replace("_", "-")
        if isinstance(value, bool):
            flags += [flag] if value else []
            continue
        flags += [flag, "none" if value is None else str(value)]
    return [*positionals, *flags]
