"""Tests for named transforms and the safe lambda interpreter (core/transforms.py, core/safe_lambda.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hud_vf_gym.core.safe_lambda import MAX_EXPONENT, MAX_FORMAT_WIDTH, MAX_INT_BITS, MAX_SEQUENCE_LENGTH
from hud_vf_gym.core.transforms import NAMED_TRANSFORMS, TransformError, compile_transform

SAFE_BUILTIN_NAMES = "['abs', 'bool', 'float', 'int', 'len', 'list', 'max', 'min', 'round', 'str', 'sum', 'tuple']"
SAFE_METHOD_NAMES = (
    "['capitalize', 'casefold', 'count', 'endswith', 'find', 'get', 'index', 'isdigit', 'items', 'join', 'keys', "
    "'lower', 'lstrip', 'removeprefix', 'removesuffix', 'replace', 'rsplit', 'rstrip', 'split', 'startswith', "
    "'strip', 'title', 'upper', 'values']"
)
TRANSFORM_NAMES = "bool, float, int, list, lower, seconds_to_ms, split_comma, split_plus, str, strip, upper"


def _full(message: str) -> str:
    return f"^{re.escape(message)}$"


def _run(spec: str | list[str], value: Any, context: dict[str, Any] | None = None) -> Any:
    return compile_transform(spec)(value, context or {})


# --- named transforms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("split_plus", "ctrl+a", ["ctrl", "a"]),
        ("split_plus", "ctrl + shift + t", ["ctrl", "shift", "t"]),
        ("split_plus", "+", ["+"]),
        ("split_plus", " + ", ["+"]),
        ("split_plus", "enter", ["enter"]),
        ("split_plus", ["ctrl", "a"], ["ctrl", "a"]),
        ("split_comma", "a, b,,c", ["a", "b", "c"]),
        ("seconds_to_ms", 2.5, 2500),
        ("seconds_to_ms", "2.5", 2500),
        ("seconds_to_ms", 1, 1000),
        ("seconds_to_ms", 0.0015, 2),
        ("int", 3, 3),
        ("int", 3.6, 4),
        ("int", " 42 ", 42),
        ("int", "-7.0", -7),
        ("float", "2.5", 2.5),
        ("lower", "LEFT", "left"),
        ("upper", "left", "LEFT"),
        ("strip", "  up \n", "up"),
        ("str", 12, "12"),
        ("list", "a", ["a"]),
        ("list", ("a", "b"), ["a", "b"]),
        ("bool", "yes", True),
        ("bool", "Off", False),
        ("bool", 0, False),
        (["strip", "split_plus"], "  ctrl+a  ", ["ctrl", "a"]),
        (["strip", "lower"], " LEFT ", "left"),
        (["float", "seconds_to_ms"], "0.5", 500),
    ],
    ids=[
        "split-plus-combo",
        "split-plus-spaces",
        "split-plus-lone-plus",
        "split-plus-padded-plus",
        "split-plus-single-key",
        "split-plus-list-passes",
        "split-comma",
        "seconds-to-ms-float",
        "seconds-to-ms-string",
        "seconds-to-ms-int",
        "seconds-to-ms-rounds",
        "int-int",
        "int-rounds-float",
        "int-padded-string",
        "int-negative-string",
        "float-string",
        "lower",
        "upper",
        "strip",
        "str",
        "list-wraps-scalar",
        "list-from-tuple",
        "bool-yes",
        "bool-off",
        "bool-zero",
        "chain-strip-split-plus",
        "chain-strip-lower",
        "chain-float-seconds-to-ms",
    ],
)
def test_compile_transform_named_converts_value(spec: str | list[str], value: Any, expected: Any) -> None:
    assert _run(spec, value) == expected


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        ("seconds_to_ms", "soon", "expected a number, got 'soon'"),
        ("int", True, "expected a number, got True"),
        ("int", "inf", "expected a finite number, got 'inf'"),
        ("int", [1], "expected a number, got [1]"),
        ("bool", "maybe", "expected a boolean, got 'maybe'"),
    ],
    ids=["seconds-to-ms-word", "int-bool", "int-infinite", "int-list", "bool-word"],
)
def test_compile_transform_named_refuses_bad_value(spec: str, value: Any, message: str) -> None:
    with pytest.raises(TransformError, match=_full(message)):
        _run(spec, value)


def test_named_transforms_are_all_compilable() -> None:
    for name in NAMED_TRANSFORMS:
        transform = compile_transform(name)
        assert transform.source == name
        assert transform.wants_context is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "splitplus",
            f"unknown transform 'splitplus'; expected one of {TRANSFORM_NAMES}, or a 'lambda x: ...' string "
            "(did you mean 'split_plus'?)",
        ),
        ("x * 1000", f"unknown transform 'x * 1000'; expected one of {TRANSFORM_NAMES}, or a 'lambda x: ...' string"),
        ([], "an empty list of transforms; give at least one name or leave 'transform' out"),
        (["strip", "lambda x: x"], "a list of transforms may only hold names; put a lambda on its own"),
        (
            ["strip", "splitplus"],
            f"unknown transform 'splitplus'; expected one of {TRANSFORM_NAMES}, or a 'lambda x: ...' string "
            "(did you mean 'split_plus'?)",
        ),
    ],
    ids=["misspelt-name", "bare-expression", "empty-chain", "lambda-in-chain", "misspelt-name-in-chain"],
)
def test_compile_transform_bad_spec_names_the_choices(spec: str | list[str], message: str) -> None:
    with pytest.raises(TransformError, match=_full(message)):
        compile_transform(spec)


# --- lambdas as HUD published them --------------------------------------------------------------------------

PUBLISHED_SCROLL_Y = "lambda d, ctx: ctx.get('amount', 3) if d == 'down' else -ctx.get('amount', 3) if d == 'up' else 0"
PUBLISHED_SCROLL_X = (
    "lambda d, ctx: ctx.get('amount', 3) if d == 'right' else -ctx.get('amount', 3) if d == 'left' else 0"
)


@pytest.mark.parametrize(
    ("spec", "value", "context", "expected"),
    [
        ("lambda x: x.split('+')", "ctrl+a", {}, ["ctrl", "a"]),
        ("lambda x: int(x * 1000)", 2.5, {}, 2500),
        (PUBLISHED_SCROLL_Y, "down", {"direction": "down", "amount": 5}, 5),
        (PUBLISHED_SCROLL_Y, "up", {"direction": "up"}, -3),
        (PUBLISHED_SCROLL_Y, "left", {"direction": "left", "amount": 5}, 0),
        (PUBLISHED_SCROLL_X, "left", {"direction": "left", "amount": 2}, -2),
        (PUBLISHED_SCROLL_X, "right", {"direction": "right"}, 3),
    ],
    ids=["key-split", "wait-seconds", "scroll-y-down", "scroll-y-up-default", "scroll-y-sideways", "scroll-x-left",
         "scroll-x-right-default"],
)  # fmt: skip
def test_compile_transform_published_lambdas_work(
    spec: str, value: Any, context: dict[str, Any], expected: Any
) -> None:
    assert _run(spec, value, context) == expected


def test_compile_transform_context_lambda_wants_context() -> None:
    assert compile_transform(PUBLISHED_SCROLL_Y).wants_context is True
    assert compile_transform("lambda x: x").wants_context is False


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("lambda x: ','.join(x)", ["a", "b"], "a,b"),
        ("lambda x: x.strip().lower().split(' ')", " A B ", ["a", "b"]),
        ("lambda x: f'{x:>5}'", "ab", "   ab"),
        ("lambda x: f'{x!r}'", "ab", "'ab'"),
        ("lambda x: '%5s|' % x", "ab", "   ab|"),
        ("lambda x: x[1:3]", "abcd", "bc"),
        ("lambda x: {'k': x, 'n': len(x)}", "ab", {"k": "ab", "n": 2}),
        ("lambda x: (x, [x])", 1, (1, [1])),
        ("lambda x: x if x > 0 else -x", -4, 4),
        ("lambda x: not x or x in ('a', 'b')", "a", True),
        ("lambda x: 1 < x <= 3", 3, True),
        ("lambda x: x ** 2 // 3 % 5 - 1", 7, 0),
        ("lambda x: 1 / 0 if x else 2", 0, 2),
        ("lambda x: round(max(x, 0.5), 1)", 0.25, 0.5),
        ("lambda x: sum(x, 0.5)", [1, 2], 3.5),
        ("lambda x: x is None", None, True),
    ],
    ids=["constant-receiver-method", "method-chain", "f-string-width", "f-string-repr", "percent-format", "slice",
         "dict-display", "tuple-list-display", "conditional", "bool-ops", "chained-compare", "arithmetic",
         "constant-error-in-untaken-branch", "builtins", "sum-numeric-start", "is-none"],
)  # fmt: skip
def test_compile_transform_lambda_evaluates_allowed_syntax(spec: str, value: Any, expected: Any) -> None:
    assert _run(spec, value) == expected


# --- escape attempts are refused when the config loads ---------------------------------------------------------


def _not_allowed(spec: str, reason: str) -> str:
    return f"transform {spec!r} is not allowed: {reason}"


UNAVAILABLE = "is not available (only the lambda's parameters and " + SAFE_BUILTIN_NAMES + ")"
ESCAPES = [
    ("lambda x: ().__class__", _not_allowed("lambda x: ().__class__", "attribute '__class__' starts with '_'")),
    ("lambda x: x.__class__", _not_allowed("lambda x: x.__class__", "attribute '__class__' starts with '_'")),
    ("lambda x: x.__globals__", _not_allowed("lambda x: x.__globals__", "attribute '__globals__' starts with '_'")),
    (
        "lambda x: x[0].__class__.__mro__",
        _not_allowed("lambda x: x[0].__class__.__mro__", "attribute '__mro__' starts with '_'"),
    ),
    ("lambda x: __import__('os')", _not_allowed("lambda x: __import__('os')", f"the name '__import__' {UNAVAILABLE}")),
    ("lambda x: getattr(x, 'a')", _not_allowed("lambda x: getattr(x, 'a')", f"the name 'getattr' {UNAVAILABLE}")),
    ("lambda x: open('/etc/passwd')", _not_allowed("lambda x: open('/etc/passwd')", f"the name 'open' {UNAVAILABLE}")),
    ("lambda x: (lambda: 1)()", _not_allowed("lambda x: (lambda: 1)()", "only builtins and methods can be called")),
    ("lambda x: [c for c in x]", _not_allowed("lambda x: [c for c in x]", "ListComp expressions are not allowed")),
    (
        "lambda x: {c: 1 for c in x}",
        _not_allowed("lambda x: {c: 1 for c in x}", "DictComp expressions are not allowed"),
    ),
    ("lambda x: (c for c in x)", _not_allowed("lambda x: (c for c in x)", "GeneratorExp expressions are not allowed")),
    ("lambda x: 9**9**9", _not_allowed("lambda x: 9**9**9", f"exponent 387420489 exceeds the limit of {MAX_EXPONENT}")),
    (
        "lambda x: 'a'*10**10",
        _not_allowed("lambda x: 'a'*10**10", f"sequence repetition would exceed {MAX_SEQUENCE_LENGTH} items"),
    ),
    (
        'lambda x: f"{x:99999999}"',
        _not_allowed('lambda x: f"{x:99999999}"', f"format width or precision above {MAX_FORMAT_WIDTH} in '99999999'"),
    ),
    (
        "lambda x: '%99999999s' % x",
        _not_allowed(
            "lambda x: '%99999999s' % x", f"format width or precision above {MAX_FORMAT_WIDTH} in '%99999999s'"
        ),
    ),
    (
        "lambda x: x.format(1)",
        _not_allowed(
            "lambda x: x.format(1)", f"attribute 'format' is not one of the allowed methods {SAFE_METHOD_NAMES}"
        ),
    ),
    (
        "lambda x: '{0.__class__}'.format(x)",
        _not_allowed(
            "lambda x: '{0.__class__}'.format(x)",
            f"attribute 'format' is not one of the allowed methods {SAFE_METHOD_NAMES}",
        ),
    ),
    ("lambda x: {**x}", _not_allowed("lambda x: {**x}", "dict unpacking (**) is not allowed")),
    ("lambda x: max(**x)", _not_allowed("lambda x: max(**x)", "argument unpacking (* or **) is not allowed")),
    ("lambda x: max(*x)", _not_allowed("lambda x: max(*x)", "argument unpacking (* or **) is not allowed")),
    ("lambda x: (y := x)", _not_allowed("lambda x: (y := x)", "NamedExpr expressions are not allowed")),
    (
        "lambda x: x.upper",
        _not_allowed("lambda x: x.upper", "attribute 'upper' must be called as a method, e.g. x.upper()"),
    ),
    ("lambda x: x << 2", _not_allowed("lambda x: x << 2", "operator LShift is not allowed")),
    ("lambda x: ~x", _not_allowed("lambda x: ~x", "operator Invert is not allowed")),
    ("lambda x: x @ x", _not_allowed("lambda x: x @ x", "operator MatMult is not allowed")),
    (
        "lambda x: '%*s' % (10**8, 'a')",
        _not_allowed(
            "lambda x: '%*s' % (10**8, 'a')", "'*' widths in '%*s' are not allowed; write the width as a number"
        ),
    ),
    (
        "lambda x: 'a' * 99999 + 'b' * 99999",
        _not_allowed("lambda x: 'a' * 99999 + 'b' * 99999", f"concatenation would exceed {MAX_SEQUENCE_LENGTH} items"),
    ),
    ("lambda *a: 1", "transform 'lambda *a: 1': use plain parameters only ('lambda x: ...' or 'lambda x, ctx: ...')"),
    (
        "lambda x=1: x",
        "transform 'lambda x=1: x': use plain parameters only ('lambda x: ...' or 'lambda x, ctx: ...')",
    ),
    (
        "lambda: 1",
        "transform 'lambda: 1' takes 0 parameters; expected 1 (the value) or 2 (the value and the call's arguments "
        "by name)",
    ),
    ("lambda x: x +", "transform 'lambda x: x +' is not valid Python syntax: invalid syntax"),
    ("lambda x: x; import os", "transform 'lambda x: x; import os' is not valid Python syntax: invalid syntax"),
    ("lambda x: " + "x + " * 600 + "x", f"transform is {10 + 4 * 600 + 1} characters long; the limit is 2000"),
]
ESCAPE_IDS = [
    "class-of-tuple", "class-of-value", "globals", "mro-walk", "import", "getattr", "open", "call-a-lambda",
    "list-comprehension", "dict-comprehension", "generator", "power-tower", "huge-repetition", "f-string-width",
    "percent-width", "str-format", "str-format-attribute-walk", "dict-unpacking", "kwargs-unpacking",
    "args-unpacking", "walrus", "bare-method", "shift", "invert", "matmul", "star-width", "huge-concatenation",
    "varargs", "default-parameter", "no-parameter", "syntax-error", "statement", "too-long",
]  # fmt: skip


@pytest.mark.parametrize(("spec", "message"), ESCAPES, ids=ESCAPE_IDS)
def test_compile_transform_refuses_escape_at_load(spec: str, message: str) -> None:
    with pytest.raises(TransformError, match=_full(message)):
        compile_transform(spec)


# --- limits that depend on the value are enforced at run time ---------------------------------------------------

RUNTIME_LIMITS = [
    ("lambda x: x * 10**6", "a" * 1000, f"sequence repetition would exceed {MAX_SEQUENCE_LENGTH} items"),
    ("lambda x: [x] * 10**6", 1, f"sequence repetition would exceed {MAX_SEQUENCE_LENGTH} items"),
    ("lambda x: x % 'a'", "%99999999s", f"format width or precision above {MAX_FORMAT_WIDTH} in '%99999999s'"),
    ("lambda x: x % (10**8, 'a')", "%*s", "'*' widths in '%*s' are not allowed; write the width as a number"),
    ("lambda x: f'{x:>{x}}'", 10**7, f"format width or precision above {MAX_FORMAT_WIDTH} in '>10000000'"),
    (
        "lambda x: x.replace('a', 'bbbbbbbbbb')",
        "a" * 20_000,
        f"replace() would build a string over {MAX_SEQUENCE_LENGTH} characters",
    ),
    (
        "lambda x: x.replace('', 'ab')",
        "a" * 60_000,
        f"replace() would build a string over {MAX_SEQUENCE_LENGTH} characters",
    ),
    ("lambda x: (' ' * 1000).join(x)", "a" * 200, f"join() would build a string over {MAX_SEQUENCE_LENGTH} characters"),
    (
        "lambda x: x.join(['a'] * 1000)",
        "b" * 1000,
        f"join() would build a string over {MAX_SEQUENCE_LENGTH} characters",
    ),
    ("lambda x: x + x", "a" * 60_000, f"concatenation would exceed {MAX_SEQUENCE_LENGTH} items"),
    ("lambda x: x ** x", 100, f"exponent 100 exceeds the limit of {MAX_EXPONENT}"),
    ("lambda x: x * x * x", 2**2000, f"an integer result exceeds {MAX_INT_BITS} bits"),
    ("lambda x: sum(x, [])", [[1], [2]], "sum() adds numbers only; its start value must be a number"),
    ("lambda x: list(x)", "a" * 200_000, f"value longer than {MAX_SEQUENCE_LENGTH} characters"),
    ("lambda x: x.upper()", 3, "method 'upper' called on int; methods work on str, list and dict"),
]
RUNTIME_IDS = [
    "string-repetition", "list-repetition", "percent-width-from-value", "star-width",
    "f-string-nested-width", "replace-growth", "replace-empty-growth", "join-over-string", "join-long-separator",
    "concatenation", "power", "huge-int", "sum-of-lists", "list-of-long-string", "method-on-int",
]  # fmt: skip


@pytest.mark.parametrize(("spec", "value", "message"), RUNTIME_LIMITS, ids=RUNTIME_IDS)
def test_transform_call_enforces_limit_instead_of_allocating(spec: str, value: Any, message: str) -> None:
    transform = compile_transform(spec)

    with pytest.raises(TransformError, match=_full(message)):
        transform(value, {})


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (
            "lambda x: int(x)",
            "abc",
            "transform 'lambda x: int(x)' failed on 'abc': invalid literal for int() with base 10: 'abc'",
        ),
        ("lambda x: x / 0", 1, "transform 'lambda x: x / 0' failed on 1: division by zero"),
        ("lambda x: x[5]", "ab", "transform 'lambda x: x[5]' failed on 'ab': string index out of range"),
        ("lambda x: x['k']", {}, "transform \"lambda x: x['k']\" failed on {}: 'k'"),
        ("lambda x: len(x)", 3, "transform 'lambda x: len(x)' failed on 3: object of type 'int' has no len()"),
    ],
    ids=["bad-int", "division-by-zero", "index", "missing-key", "len-of-int"],
)
def test_transform_call_wraps_runtime_error(spec: str, value: Any, message: str) -> None:
    with pytest.raises(TransformError, match=_full(message)):
        _run(spec, value)


def test_transform_call_error_shortens_long_values() -> None:
    value = "abc" * 1000
    with pytest.raises(ValueError) as python_error:
        int(value)
    shown_value, shown_error = repr(value)[:97] + "...", str(python_error.value)[:97] + "..."
    expected = f"transform 'lambda x: int(x)' failed on {shown_value}: {shown_error}"

    with pytest.raises(TransformError, match=_full(expected)):
        _run("lambda x: int(x)", value)


def test_transform_call_error_survives_unprintable_int() -> None:
    transform = compile_transform("lambda x: str(x)")
    expected = "transform 'lambda x: str(x)' failed on <int too large to show>: Exceeds the limit (4300 digits) "

    with pytest.raises(TransformError, match=f"^{re.escape(expected)}"):
        transform(10**5000, {})
