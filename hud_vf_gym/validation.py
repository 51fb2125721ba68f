"""One way to turn a pydantic `ValidationError` into our messages: `location: what is wrong`, one line each.

Used for the environment config, `mcp_config` server entries and the built-in servers' hub arguments, so a bad key
reads the same everywhere: its dotted location, pydantic's message without its prefixes, `unknown key; expected one
of ... (did you mean ...?)` for a typo, the field's purpose for a missing key, and the input only where it is safe
to quote (a resolved `mcp_config` may hold secrets). A value that fits no member of a union is reported once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

__all__ = ["count_header", "validation_problems"]

# the last location part pydantic adds for each member of a union (`transform.str`, `passthrough_tools.list[str]`)
_UNION_MEMBER = re.compile(r"str|int|float|bool|none|(list|dict|literal|tuple)\[.*\]")
_QUOTED_INPUT_CHARS = 80  # longer inputs are cut in a message


def count_header(source: str, problems: Collection[str]) -> str:
    """`source: N problems` followed by the problems, one indented line each (pydantic's count header)."""
    count = len(problems)
    lines = "\n".join(f"  {problem}" for problem in problems)
    return f"{source}: {count} problem{'s' if count != 1 else ''}\n{lines}"


def validation_problems(
    exc: ValidationError, model: type[BaseModel], *, quote_input: bool = True, hidden: Collection[str] = ()
) -> list[str]:
    """One `location: message` line per error of `exc`, raised while validating `model`.

    Args:
        exc: the error pydantic raised.
        model: the model validated, so unknown keys can list the allowed ones and missing keys their purpose.
        quote_input: whether to show the bad input (never for values that may hold secrets).
        hidden: location parts left out of the dotted location (a wrapper field the user never writes).
    """
    lines = []
    for error in _merge_union_members(exc.errors(include_url=False)):
        message = _message(error, model, quote_input)
        if not error["loc"] and error["type"] == "value_error":
            lines += message.splitlines()  # whole-model checks name their own keys
            continue
        parts = [str(part) for part in error["loc"] if str(part) not in hidden]
        lines.append(f"{'.'.join(parts) or '(top level)'}: {message}")
    return lines


def _merge_union_members(errors: list[Any]) -> list[Any]:
    """Report a value that fits no member of a union once, without pydantic's member tags in the location.

    When one member got further (a list whose item is wrong), only its errors are kept; otherwise the members'
    expectations are joined: `Input should be a valid string or a valid list`.
    """
    ordered: list[Any] = []
    groups: dict[tuple[int | str, ...], list[Any]] = {}
    for error in errors:
        loc = tuple(error["loc"])
        tag = next((i for i, part in enumerate(loc) if _UNION_MEMBER.fullmatch(str(part))), None)
        if tag is None or error["type"] == "value_error":
            ordered.append(error)
            continue
        prefix = loc[:tag]
        if prefix not in groups:
            groups[prefix] = []
            ordered.append(prefix)  # a placeholder, replaced below by the group's errors
        groups[prefix].append({**error, "loc": prefix + loc[tag + 1 :]})
    merged: list[Any] = []
    for item in ordered:
        if not isinstance(item, tuple):
            merged.append(item)
            continue
        members = groups[item]
        deeper = [error for error in members if len(error["loc"]) > len(item)]
        if deeper:
            merged += deeper
            continue
        expected = " or ".join(str(error["msg"]).removeprefix("Input should be ") for error in members)
        merged.append({**members[0], "msg": f"Input should be {expected}"})
    return merged


def _message(error: Mapping[str, Any], root: type[BaseModel], quote_input: bool) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"unknown key; {_allowed_keys_hint(root, error['loc'])}"
    if error["type"] == "missing":
        return f"required key is missing{_field_purpose(root, error['loc'])}"
    if error["type"] == "value_error" or not quote_input:
        return message
    shown = repr(error.get("input"))
    if len(shown) > _QUOTED_INPUT_CHARS:
        shown = shown[: _QUOTED_INPUT_CHARS - 3] + "..."
    return f"{message} [input: {shown}]"


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """Follow a validation error's location through the schema to the model that owns its last key."""
    current: Any = root
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        elif get_origin(current) is dict:
            current = get_args(current)[1]  # `part` is a key of the dict; continue with its value type
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _field_purpose(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    model = _model_at(root, loc[:-1])
    field = model.model_fields.get(str(loc[-1])) if model else None
    if field is None or not field.description:
        return ""
    description = field.description.rstrip(".")
    return f" ({description[0].lower()}{description[1:]})"


def _allowed_keys_hint(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    model = _model_at(root, loc[:-1])
    if model is None:
        return "check the spelling against the README's schema"
    allowed = sorted((field.alias or name) for name, field in model.model_fields.items() if not field.exclude)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"expected one of {', '.join(allowed)}{hint}"
