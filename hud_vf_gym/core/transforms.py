"""Value transforms for action mappings: named transforms and safely interpreted lambda strings.

An action mapping may turn the agent's argument into the MCP argument with `transform:`. Three forms are accepted:

- a registered name: `transform: split_plus` (see `NAMED_TRANSFORMS`);
- a list of names applied left to right: `transform: [strip, split_plus]`;
- a lambda string, as in the configs HUD published: `transform: "lambda x: int(x * 1000)"`.

Lambda strings are never given to `eval` or `exec`. They are parsed with `ast`, checked against an allow-list when
the config loads, and run by a small interpreter (`hud_vf_gym.core.safe_lambda`) that only knows the allowed node
types. Allowed: the
lambda's own parameters, literals, arithmetic, comparisons, `and`/`or`/`not`, conditional expressions, indexing and
slicing, list/tuple/dict displays, f-strings, calls to a few builtins (`SAFE_BUILTINS`) and to a few methods of
str/list/dict (`SAFE_METHODS`). Refused: any other name (`__import__`, `getattr`, `open`, ...), any attribute
starting with `_`, comprehensions, keyword-argument unpacking, and walrus assignments. Powers and sequence
repetition are bounded at run time, and constant sub-expressions are evaluated once at load, so `9**9**9` or
`"a" * 10**10` are refused when the config loads instead of hanging a rollout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hud_vf_gym.core.safe_lambda import compile_lambda, shorten
from hud_vf_gym.errors import TransformError

__all__ = ["NAMED_TRANSFORMS", "Transform", "TransformError", "compile_transform"]


def _to_number(value: Any) -> float:
    if isinstance(value, bool):
        raise TransformError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise TransformError(f"expected a number, got {value!r}")


def _seconds_to_ms(value: Any) -> int:
    return round(_to_number(value) * 1000)


def _to_int(value: Any) -> int:
    number = _to_number(value)
    if not math.isfinite(number):
        raise TransformError(f"expected a finite number, got {value!r}")
    return round(number)


def _split_plus(value: Any) -> list[str]:
    # "ctrl+a" -> ["ctrl", "a"]; a lone "+" key stays a key instead of splitting into two empty names
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    text = str(value).strip()
    if text == "+":
        return ["+"]
    return [part.strip() for part in text.split("+") if part.strip()]


def _split_comma(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _to_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "yes", "1", "on"}:
            return True
        if lowered in {"false", "no", "0", "off", ""}:
            return False
        raise TransformError(f"expected a boolean, got {value!r}")
    return bool(value)


def _to_str(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


NAMED_TRANSFORMS: Mapping[str, Callable[[Any], Any]] = {
    "bool": _to_bool,
    "float": _to_number,
    "int": _to_int,
    "list": _to_list,
    "lower": lambda value: _to_str(value).lower(),
    "seconds_to_ms": _seconds_to_ms,
    "split_comma": _split_comma,
    "split_plus": _split_plus,
    "str": _to_str,
    "strip": lambda value: _to_str(value).strip(),
    "upper": lambda value: _to_str(value).upper(),
}


@dataclass(frozen=True, slots=True)
class Transform:
    """A compiled transform: call it with the agent's value (and the agent's named arguments as context)."""

    source: str
    function: Callable[[Any, Mapping[str, Any]], Any]
    wants_context: bool

    def __call__(self, value: Any, context: Mapping[str, Any]) -> Any:
        """Convert `value`; `context` holds every argument of the call, by name."""
        try:
            return self.function(value, context)
        except TransformError:
            raise
        except (ArithmeticError, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise TransformError(f"transform {self.source!r} failed on {shorten(value)}: {shorten(exc)}") from exc


def compile_transform(spec: str | Sequence[str]) -> Transform:
    """Compile a transform spec (a name, a list of names, or a lambda string) or raise `TransformError`."""
    if not isinstance(spec, str):
        return _compile_chain(list(spec))
    text = spec.strip()
    if text in NAMED_TRANSFORMS:
        named = NAMED_TRANSFORMS[text]
        return Transform(text, lambda value, _context: named(value), wants_context=False)
    if text.startswith("lambda"):
        function, wants_context = compile_lambda(text)
        return Transform(text, function, wants_context=wants_context)
    raise TransformError(_unknown_name_message(text))


def _compile_chain(names: list[str]) -> Transform:
    if not names:
        raise TransformError("an empty list of transforms; give at least one name or leave 'transform' out")
    steps = [compile_transform(name) for name in names]
    if any(step.wants_context or name.startswith("lambda") for step, name in zip(steps, names, strict=True)):
        raise TransformError("a list of transforms may only hold names; put a lambda on its own")

    def run_chain(value: Any, context: Mapping[str, Any]) -> Any:
        for step in steps:
            value = step(value, context)
        return value

    return Transform(" | ".join(names), run_chain, wants_context=False)


def _unknown_name_message(text: str) -> str:
    import difflib

    names = sorted(NAMED_TRANSFORMS)
    close = difflib.get_close_matches(text, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown transform {text!r}; expected one of {', '.join(names)}, or a 'lambda x: ...' string{hint}"
