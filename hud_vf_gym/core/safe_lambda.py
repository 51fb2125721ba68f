"""The allow-list interpreter for lambda-string transforms: parse with `ast`, refuse, fold constants, evaluate.

`compile_lambda("lambda x: int(x * 1000)")` never calls `eval` or `exec`: the body is checked node by node when the
config loads (names other than the lambda's parameters and `SAFE_BUILTINS`, attributes starting with `_`,
comprehensions and walrus assignments are refused), constant sub-expressions are evaluated once then, and the body
runs in `_evaluate`, which knows only the allowed node types. Powers, sequence growth and format widths are bounded.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from hud_vf_gym.errors import TransformError

__all__ = ["SAFE_BUILTINS", "SAFE_METHODS", "compile_lambda", "shorten"]

MAX_EXPONENT = 64  # larger exponents are never needed to convert units and can take seconds to compute
MAX_INT_BITS = 4096  # results bigger than this are a config bug, not a coordinate or a duration
MAX_SEQUENCE_LENGTH = 100_000  # `"a" * n` and list repetition beyond this would only exhaust memory
MAX_FORMAT_WIDTH = 1_000  # f-string widths and precisions; padding beyond this is never a sane MCP value
MAX_SOURCE_LENGTH = 2_000  # a transform is one short expression; longer text is almost surely a mistake
# How deeply a transform's expression may nest. The checks and the interpreter recurse once per level, so a
# `lambda x: ------...x` 1,900 levels deep compiled but raised RecursionError on every call; no sane unit
# conversion nests more than a handful of levels.
MAX_NESTING = 64
MAX_SHOWN_LENGTH = 100  # values quoted in error messages are cut to this many characters

SAFE_BUILTINS: Mapping[str, Callable[..., Any]] = {
    "abs": abs,
    "bool": bool,
    "float": float,
    "int": int,
    "len": len,
    "list": list,
    "max": max,
    "min": min,
    "round": round,
    "str": str,
    "sum": sum,
    "tuple": tuple,
}

# Methods that only read their receiver and return plain values. `format` is left out on purpose: a format string
# such as "{0.__class__}" walks attributes, which is exactly what the allow-list exists to prevent.
SAFE_METHODS = frozenset(
    {
        "capitalize", "casefold", "count", "endswith", "find", "get", "index", "isdigit", "items", "join",
        "keys", "lower", "lstrip", "removeprefix", "removesuffix", "replace", "rsplit", "rstrip", "split",
        "startswith", "strip", "title", "upper", "values",
    }
)  # fmt: skip

_BINARY_OPERATORS: Mapping[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY_OPERATORS: Mapping[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
}
_COMPARISONS: Mapping[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda left, right: left in right,
    ast.NotIn: lambda left, right: left not in right,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
# nodes that need no check of their own (their children are walked separately)
_STAR_WIDTH = re.compile(r"%(\([^)]*\))?[-#0 +]*(\*|\d*\.\*)")  # a printf width or precision taken from the arguments
_ALLOWED_PLAIN_NODES = (
    *(ast.Constant, ast.Compare, ast.BoolOp, ast.IfExp, ast.Subscript, ast.Slice, ast.Tuple, ast.List, ast.Dict),
    *(ast.Load, ast.arguments, ast.arg, ast.keyword, ast.FormattedValue, ast.JoinedStr),
    *(ast.cmpop, ast.boolop, ast.operator, ast.unaryop),
)


def shorten(value: Any) -> str:
    """A repr (or, for an exception, the message) short enough for an error shown to the model."""
    try:
        text = str(value) if isinstance(value, BaseException) else repr(value)
    except ValueError:  # an int too large to print (sys.get_int_max_str_digits)
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= MAX_SHOWN_LENGTH else text[: MAX_SHOWN_LENGTH - 3] + "..."


def compile_lambda(text: str) -> tuple[Callable[[Any, Mapping[str, Any]], Any], bool]:
    """Check a lambda string against the allow-list and compile it.

    Returns:
        The function of (value, context), and whether it reads the context (a second lambda parameter).

    Raises:
        TransformError: naming what is refused, or why the text is not a lambda.
    """
    if len(text) > MAX_SOURCE_LENGTH:
        raise TransformError(f"transform is {len(text)} characters long; the limit is {MAX_SOURCE_LENGTH}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise TransformError(f"transform {text!r} is not valid Python syntax: {exc.msg}") from exc
    except (RecursionError, MemoryError) as exc:  # the parser's own limit on nesting
        raise TransformError(f"{_shown(text)} is nested too deeply to parse; the limit is {MAX_NESTING}") from exc
    depth = _nesting_depth(tree.body)
    if depth > MAX_NESTING:
        raise TransformError(f"{_shown(text)} is nested {depth} levels deep; the limit is {MAX_NESTING}")
    lambda_node = tree.body
    if not isinstance(lambda_node, ast.Lambda):
        raise TransformError(f"transform {text!r} must be a single 'lambda ...' expression")
    parameters = _lambda_parameters(lambda_node.args, text)
    _check_allowed(lambda_node.body, set(parameters), text)
    _fold_constants(lambda_node.body, set(parameters), text)
    body = lambda_node.body

    if len(parameters) == 1:

        def run_one(value: Any, _context: Mapping[str, Any]) -> Any:
            return _evaluate(body, {parameters[0]: value})

        return run_one, False

    def run_two(value: Any, context: Mapping[str, Any]) -> Any:
        return _evaluate(body, {parameters[0]: value, parameters[1]: dict(context)})

    return run_two, True


def _shown(text: str) -> str:
    """`transform '<text>'`, the text cut to `MAX_SHOWN_LENGTH` characters."""
    return f"transform {text[:MAX_SHOWN_LENGTH]!r}" + ("..." if len(text) > MAX_SHOWN_LENGTH else "")


def _nesting_depth(root: ast.AST) -> int:
    """The deepest nesting of an expression, counted without recursion (the point is to refuse deep ones)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = ast.iter_child_nodes(node)
        stack.extend((child, depth + 1) for child in children if not isinstance(child, ast.expr_context))
    return deepest


def _lambda_parameters(arguments: ast.arguments, text: str) -> list[str]:
    if arguments.vararg or arguments.kwarg or arguments.kwonlyargs or arguments.defaults or arguments.posonlyargs:
        raise TransformError(f"transform {text!r}: use plain parameters only ('lambda x: ...' or 'lambda x, ctx: ...')")
    names = [argument.arg for argument in arguments.args]
    if len(names) not in (1, 2):
        raise TransformError(
            f"transform {text!r} takes {len(names)} parameters; expected 1 (the value) or 2 (the value and the "
            "call's arguments by name)"
        )
    return names


def _check_allowed(node: ast.AST, parameters: set[str], text: str) -> None:
    called = {id(child.func) for child in ast.walk(node) if isinstance(child, ast.Call)}
    for child in ast.walk(node):
        reason = _refusal_reason(child, parameters)
        if reason is None and isinstance(child, ast.Attribute) and id(child) not in called:
            reason = f"attribute {child.attr!r} must be called as a method, e.g. x.{child.attr}()"
        if reason:
            raise TransformError(f"transform {text!r} is not allowed: {reason}")


def _refusal_reason(node: ast.AST, parameters: set[str]) -> str | None:  # noqa: C901 - one flat case per node type
    if isinstance(node, ast.Name):
        if node.id in parameters or node.id in SAFE_BUILTINS or node.id in {"True", "False", "None"}:
            return None
        return f"the name {node.id!r} is not available (only the lambda's parameters and {sorted(SAFE_BUILTINS)})"
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            return f"attribute {node.attr!r} starts with '_'"
        if node.attr not in SAFE_METHODS:
            return f"attribute {node.attr!r} is not one of the allowed methods {sorted(SAFE_METHODS)}"
        return None
    if isinstance(node, ast.Call):
        if any(isinstance(argument, ast.Starred) for argument in node.args) or any(
            keyword.arg is None for keyword in node.keywords
        ):
            return "argument unpacking (* or **) is not allowed"
        if not isinstance(node.func, ast.Name | ast.Attribute):
            return "only builtins and methods can be called"
        return None
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY_OPERATORS:
            return f"operator {type(node.op).__name__} is not allowed"
        return _printf_refusal(node)
    if isinstance(node, ast.FormattedValue) and isinstance(node.format_spec, ast.JoinedStr):
        constant_spec = "".join(str(part.value) for part in node.format_spec.values if isinstance(part, ast.Constant))
        try:
            _check_format_widths(constant_spec)
        except TransformError as exc:
            return str(exc)
        return None
    if isinstance(node, ast.UnaryOp):
        return None if type(node.op) in _UNARY_OPERATORS else f"operator {type(node.op).__name__} is not allowed"
    if isinstance(node, ast.Dict) and any(key is None for key in node.keys):
        return "dict unpacking (**) is not allowed"
    if isinstance(node, _ALLOWED_PLAIN_NODES):
        return None
    return f"{type(node).__name__} expressions are not allowed"


def _printf_refusal(node: ast.BinOp) -> str | None:
    """Check a constant printf-style template (`"%99999999s" % x`) when the config loads, not when it runs."""
    if not (isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)):
        return None
    try:
        _check_printf_template(node.left.value)
    except TransformError as exc:
        return str(exc)
    return None


def _fold_constants(node: ast.AST, parameters: set[str], text: str) -> None:
    """Evaluate every sub-expression that uses no parameter, so unbounded constants fail at load time."""
    for child in ast.walk(node):
        if not isinstance(child, ast.expr) or isinstance(child, ast.Constant | ast.Attribute):
            continue  # a method lookup such as `','.join` is evaluated with its call
        if any(isinstance(sub, ast.Name) and sub.id in parameters for sub in ast.walk(child)):
            continue
        try:
            _evaluate(child, {})
        except TransformError as exc:
            raise TransformError(f"transform {text!r} is not allowed: {exc}") from exc
        except (ArithmeticError, TypeError, ValueError, KeyError, IndexError, AttributeError):
            continue  # an ordinary failure on constants surfaces at run time with the value that caused it


def _evaluate(node: ast.AST, scope: Mapping[str, Any]) -> Any:  # noqa: C901 - an interpreter is a flat dispatch
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in scope:
            return scope[node.id]
        return SAFE_BUILTINS[node.id]
    if isinstance(node, ast.BinOp):
        return _binary(node.op, _evaluate(node.left, scope), _evaluate(node.right, scope))
    if isinstance(node, ast.UnaryOp):
        return _UNARY_OPERATORS[type(node.op)](_evaluate(node.operand, scope))
    if isinstance(node, ast.BoolOp):
        return _bool_op(node, scope)
    if isinstance(node, ast.Compare):
        return _compare(node, scope)
    if isinstance(node, ast.IfExp):
        return _evaluate(node.body if _evaluate(node.test, scope) else node.orelse, scope)
    if isinstance(node, ast.Call):
        return _call(node, scope)
    if isinstance(node, ast.Subscript):
        return _evaluate(node.value, scope)[_evaluate(node.slice, scope)]
    if isinstance(node, ast.Slice):
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if part is None else _evaluate(part, scope) for part in parts))
    if isinstance(node, ast.Tuple | ast.List):
        items = [_evaluate(element, scope) for element in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        pairs = zip(node.keys, node.values, strict=True)
        return {_evaluate(key, scope): _evaluate(value, scope) for key, value in pairs if key is not None}
    if isinstance(node, ast.JoinedStr):
        return "".join(_evaluate(value, scope) for value in node.values)
    if isinstance(node, ast.FormattedValue):
        return _format_value(node, scope)
    raise TransformError(f"{type(node).__name__} expressions are not allowed")


def _binary(operator_node: ast.operator, left: Any, right: Any) -> Any:
    if isinstance(operator_node, ast.Pow):
        _check_power(left, right)
    if isinstance(operator_node, ast.Mult):
        _check_repetition(left, right)
    if isinstance(operator_node, ast.Mod) and isinstance(left, str):
        _check_printf_template(left)
    if isinstance(operator_node, ast.Add):
        _check_concatenation(left, right)
    result = _BINARY_OPERATORS[type(operator_node)](left, right)
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise TransformError(f"an integer result exceeds {MAX_INT_BITS} bits")
    return result


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(exponent, int | float) and abs(exponent) > MAX_EXPONENT:
        raise TransformError(f"exponent {exponent!r} exceeds the limit of {MAX_EXPONENT}")


def _check_printf_template(template: str) -> None:
    _check_format_widths(template)  # "%999999999s" % x pads just like an f-string width
    if _STAR_WIDTH.search(template):
        raise TransformError(f"'*' widths in {shorten(template)} are not allowed; write the width as a number")


def _check_concatenation(left: Any, right: Any) -> None:
    if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        if len(left) + len(right) > MAX_SEQUENCE_LENGTH:
            raise TransformError(f"concatenation would exceed {MAX_SEQUENCE_LENGTH} items")


def _check_repetition(left: Any, right: Any) -> None:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(count, int):
            if len(sequence) * count > MAX_SEQUENCE_LENGTH:
                raise TransformError(f"sequence repetition would exceed {MAX_SEQUENCE_LENGTH} items")


def _bool_op(node: ast.BoolOp, scope: Mapping[str, Any]) -> Any:
    result: Any = None
    for value_node in node.values:
        result = _evaluate(value_node, scope)
        if isinstance(node.op, ast.And) and not result:
            return result
        if isinstance(node.op, ast.Or) and result:
            return result
    return result


def _compare(node: ast.Compare, scope: Mapping[str, Any]) -> bool:
    left = _evaluate(node.left, scope)
    for comparison, right_node in zip(node.ops, node.comparators, strict=True):
        right = _evaluate(right_node, scope)
        if not _COMPARISONS[type(comparison)](left, right):
            return False
        left = right
    return True


def _call(node: ast.Call, scope: Mapping[str, Any]) -> Any:
    arguments = [_evaluate(argument, scope) for argument in node.args]
    keywords = {keyword.arg: _evaluate(keyword.value, scope) for keyword in node.keywords if keyword.arg}
    if isinstance(node.func, ast.Attribute):
        receiver = _evaluate(node.func.value, scope)
        if not isinstance(receiver, str | list | tuple | dict):
            kind = type(receiver).__name__
            raise TransformError(f"method {node.func.attr!r} called on {kind}; methods work on str, list and dict")
        _check_method_growth(receiver, node.func.attr, arguments)
        return getattr(receiver, node.func.attr)(*arguments, **keywords)
    function = _evaluate(node.func, scope)
    if not callable(function):
        raise TransformError(f"{ast.unparse(node.func)} is not callable")
    if function in (str, list, tuple) and arguments and len(str(arguments[0])) > MAX_SEQUENCE_LENGTH:
        raise TransformError(f"value longer than {MAX_SEQUENCE_LENGTH} characters")
    if function is sum and (len(arguments) > 1 or keywords):
        # sum(lists, []) copies the growing list at every step; start values other than numbers are refused
        start = arguments[1] if len(arguments) > 1 else next(iter(keywords.values()))
        if not isinstance(start, int | float):
            raise TransformError("sum() adds numbers only; its start value must be a number")
    return function(*arguments, **keywords)


def _check_method_growth(receiver: Any, method: str, arguments: list[Any]) -> None:
    """Refuse the two allowed methods whose output can be far larger than their input before they allocate it."""
    if method == "replace" and isinstance(receiver, str) and len(arguments) >= 2:
        old, new = str(arguments[0]), str(arguments[1])
        occurrences = receiver.count(old) if old else len(receiver) + 1
        if len(receiver) + occurrences * len(new) > MAX_SEQUENCE_LENGTH:
            raise TransformError(f"replace() would build a string over {MAX_SEQUENCE_LENGTH} characters")
    if (
        method == "join"
        and isinstance(receiver, str)
        and arguments
        and isinstance(arguments[0], str | list | tuple | dict)
    ):
        items = list(arguments[0])
        if sum(len(str(item)) for item in items) + len(receiver) * len(items) > MAX_SEQUENCE_LENGTH:
            raise TransformError(f"join() would build a string over {MAX_SEQUENCE_LENGTH} characters")


def _format_value(node: ast.FormattedValue, scope: Mapping[str, Any]) -> str:
    value = _evaluate(node.value, scope)
    conversions: Mapping[int, Callable[[Any], str]] = {ord("r"): repr, ord("s"): str, ord("a"): ascii}
    if node.conversion in conversions:
        value = conversions[node.conversion](value)
    spec = _evaluate(node.format_spec, scope) if node.format_spec is not None else ""
    _check_format_widths(spec)
    return format(value, spec)


def _check_format_widths(spec: str) -> None:
    """Refuse a width or precision that would allocate that many characters, like f"{x:999999999}"."""
    if any(int(digits) > MAX_FORMAT_WIDTH for digits in re.findall(r"\d+", spec)):
        raise TransformError(f"format width or precision above {MAX_FORMAT_WIDTH} in {spec!r}")
