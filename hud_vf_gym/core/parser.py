r"""Reading the model's turn: `<think>` and `<tool>` extraction and the call inside `<tool>`.

A turn looks like `<think>I should move left</think>\n<tool>left()</tool>`. Real model output is messier: tags in
other cases or with spaces (`< TOOL >`), unclosed tags, prose around the tags, several `<tool>` tags, code fences,
and string arguments that themselves contain `<` or `</tool>`. The tags are found with a small tokenizer rather than
lxml, because an XML/HTML parser in recovery mode would treat `<` inside an argument (`type("a<b")`) as markup.

The call is parsed with Python's `ast`, so positional and keyword arguments, quoted strings with commas, quotes,
escapes and unicode, ints, floats, negatives, booleans, None, and nested lists/tuples/dicts all work. JSON spellings
(`true`, `false`, `null`) are accepted, and a bare identifier argument (`move(left)`) is read as the string "left",
because small models often drop the quotes. Parsing never raises: a turn that cannot be read becomes a
`ParseError` that the environment shows to the model.
"""

from __future__ import annotations

import ast
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "ParseError",
    "ParseErrorKind",
    "ParsedCall",
    "ParsedTurn",
    "TurnParser",
    "assistant_texts",
    "format_call",
    "message_text",
    "parse_call",
    "quote_model_text",
]

MAX_LITERAL_DEPTH = 16  # nested lists deeper than this are never a sane tool argument
MAX_CALL_LENGTH = 20_000  # characters inside <tool>; longer text is not parsed (it would only waste time)
PARSE_CACHE_SIZE = 4096  # recent distinct messages whose parse a parser keeps
# What the cache may hold in characters (each message plus its think and tool parts): a count alone let 600
# distinct 1 MB messages keep 1.1 GB. A message longer than the per-entry cap is parsed anew each time: it is
# never the short turn an RL policy repeats, which is what the cache is for.
PARSE_CACHE_CHARS = 8_000_000
PARSE_CACHE_ENTRY_CHARS = 64_000
MAX_ECHO_CHARS = 80  # of a name or value from the model quoted back in an observation

_TAG = re.compile(r"<\s*(/?)\s*(think|tool)\s*>", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*|\s*```$")
# a Python string literal (any quotes, with escapes) or a closing tool tag; scanning a <tool> block with it finds
# the first </tool> that is not inside a string argument
_STRING_OR_TOOL_CLOSE = re.compile(
    "(?P<string>"
    r"'''(?:\\.|[^\\])*?'''"  # triple-quoted strings span lines
    r'|"""(?:\\.|[^\\])*?"""'
    r"|'(?:\\.|[^'\\\n])*'"  # single-quoted strings end at the line
    r'|"(?:\\.|[^"\\\n])*"'
    r")|(?P<close><\s*/\s*tool\s*>)",
    re.IGNORECASE | re.DOTALL,
)
_JSON_NAMES: Mapping[str, Any] = {"true": True, "false": False, "null": None}


class ParseErrorKind(StrEnum):
    """Why a turn could not be turned into a call."""

    NO_TOOL = "no_tool"
    EMPTY_TOOL = "empty_tool"
    BAD_SYNTAX = "bad_syntax"


@dataclass(frozen=True, slots=True)
class ParseError:
    """A turn the parser could not read; `message` is written for the model."""

    kind: ParseErrorKind
    message: str


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """The call inside `<tool>`: an action name with positional and keyword arguments."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        """Return the call as the model would write it, e.g. `click(100, 200, button='left')`."""
        return format_call(self.name, self.args, self.kwargs)


@dataclass(frozen=True, slots=True)
class ParsedTurn:
    """Everything read from one assistant message; stored in the state so no one parses it again.

    Attributes:
        think: the text inside the first `<think>` (None when absent).
        tool_text: the text inside the first `<tool>` (None when absent).
        call: the parsed call, or None when there is none or it could not be parsed.
        error: why there is no call (None when `call` is set).
        tool_tags: how many `<tool>` tags the message opened.
        tool_closed: the first `<tool>` was closed.
        think_closed: the first `<think>` was closed before the tool.
        stray_text: the message has non-blank text outside the tags.
        xml_score: the tag-format score in [0, 1] (see `ToolXMLParser.score_tags`).
    """

    think: str | None
    tool_text: str | None
    call: ParsedCall | None
    error: ParseError | None
    tool_tags: int = 0
    tool_closed: bool = False
    think_closed: bool = False
    stray_text: bool = False
    xml_score: float = 0.0


def format_call(name: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> str:
    """Write a call in the syntax `parse_call` reads (Python literals)."""
    parts = [repr(value) for value in args]
    parts += [f"{key}={value!r}" for key, value in (kwargs or {}).items()]
    return f"{name}({', '.join(parts)})"


def quote_model_text(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`repr(text)` of at most `limit` characters of it: how an observation quotes a name or value the model wrote."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def parse_call(text: str) -> ParsedCall | ParseError:
    """Parse `name(arg, ..., key=value)` into a `ParsedCall`, or explain what is wrong with it."""
    if len(text) > MAX_CALL_LENGTH + 100:  # before any other work: even a bare name this long is refused
        return _syntax_error(text.strip()[:200], f"the call is longer than {MAX_CALL_LENGTH} characters")
    source = _clean_call_text(text)
    if not source:
        return ParseError(
            ParseErrorKind.EMPTY_TOOL, "The <tool> tag is empty. Put one call inside, e.g. <tool>name()</tool>."
        )
    if len(source) > MAX_CALL_LENGTH:
        return _syntax_error(source, f"the call is longer than {MAX_CALL_LENGTH} characters")
    if _IDENTIFIER.fullmatch(source):
        return ParsedCall(source)  # `<tool>done</tool>`: a bare action name means calling it with no arguments
    try:
        expression = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else "it is not valid call syntax"
        return _syntax_error(source, reason)
    if not isinstance(expression, ast.Call) or not isinstance(expression.func, ast.Name):
        return _syntax_error(source, "expected one call of the form name(arguments)")
    return _call_from_node(expression, source)


def _clean_call_text(text: str) -> str:
    source = _FENCE.sub("", text.strip()).strip().strip("`").strip()
    return source[:-1].rstrip() if source.endswith(";") else source


def _syntax_error(source: str, reason: str) -> ParseError:
    shown = source if len(source) <= 200 else source[:197] + "..."
    return ParseError(
        ParseErrorKind.BAD_SYNTAX,
        f"Could not parse the tool call `{shown}`: {reason}. Write one call such as click(100, 200) or "
        'type("hello, world"), with strings in quotes.',
    )


def _call_from_node(node: ast.Call, source: str) -> ParsedCall | ParseError:
    assert isinstance(node.func, ast.Name)  # checked by the caller
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    try:
        for position, argument in enumerate(node.args, start=1):
            if isinstance(argument, ast.Starred):
                return _syntax_error(source, "*arguments are not supported")
            args.append(_literal(argument, depth=0, where=f"argument {position}"))
        for keyword in node.keywords:
            if keyword.arg is None:
                return _syntax_error(source, "**arguments are not supported")
            if keyword.arg in kwargs:
                return _syntax_error(source, f"argument {keyword.arg!r} is given twice")
            kwargs[keyword.arg] = _literal(keyword.value, depth=0, where=f"argument {keyword.arg!r}")
    except _NotALiteral as exc:
        return _syntax_error(source, str(exc))
    return ParsedCall(node.func.id, tuple(args), kwargs)


class _NotALiteral(Exception):
    """An argument is an expression rather than a value."""


def _literal(node: ast.expr, *, depth: int, where: str) -> Any:  # noqa: C901 - one flat case per literal kind
    if depth > MAX_LITERAL_DEPTH:
        raise _NotALiteral(f"{where} is nested more than {MAX_LITERAL_DEPTH} levels deep")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str | int | float | bool) or node.value is None:
            return node.value
        raise _NotALiteral(f"{where} is not a plain value")
    if isinstance(node, ast.Name):
        return _JSON_NAMES.get(node.id, node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _literal(node.operand, depth=depth + 1, where=where)
        if isinstance(operand, int | float) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
        raise _NotALiteral(f"{where} puts a sign in front of something that is not a number")
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(element, depth=depth + 1, where=where) for element in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise _NotALiteral(f"{where} unpacks a dict with **, which is not supported")
        keys = [_literal(key, depth=depth + 1, where=where) for key in node.keys if key is not None]
        values = [_literal(value, depth=depth + 1, where=where) for value in node.values]
        try:
            return dict(zip(keys, values, strict=True))
        except TypeError as exc:  # a list used as a key
            raise _NotALiteral(f"{where} has a dict key that is not a plain value") from exc
    raise _NotALiteral(f"{where} is an expression ({_describe(node)}), not a value")


def _describe(node: ast.expr) -> str:
    """Show an argument's source briefly; a deeply nested one is too deep for `ast.unparse` and gets its kind."""
    try:
        text = ast.unparse(node)
    except RecursionError:
        return f"a deeply nested {type(node).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class _Tags:
    """Where the think and tool blocks sit in a message (character offsets)."""

    think: str | None
    think_closed: bool
    tool_texts: tuple[str, ...]
    tool_closed: bool
    outside_text: str
    first_call: ParsedCall | None  # the first block's call when choosing its closing tag already parsed it


class TurnParser:
    """Parses `<think>`/`<tool>` turns into calls (the classic adapter's `ToolXMLParser` adds verifiers' XMLParser).

    Args:
        use_thinking: whether the model is asked to think in `<think>` before each `<tool>`.
    """

    def __init__(self, use_thinking: bool = True) -> None:
        """Remember whether thinking is asked for; start an empty parse cache."""
        self.use_thinking = use_thinking
        # RL policies repeat themselves (`<tool>left()</tool>` thousands of times), and parsing is the largest part
        # of the harness's own cost per turn; a parse is a pure function of the text, so it is computed once.
        self._recent: OrderedDict[str, ParsedTurn] = OrderedDict()
        self._cached_chars = 0

    def parse_turn(self, text: str) -> ParsedTurn:
        """Read one assistant message. Never raises; problems come back as `ParsedTurn.error`.

        Results are cached per parser (the most recent texts, at most `PARSE_CACHE_SIZE` of them and
        `PARSE_CACHE_CHARS` characters in all) and shared: treat them, and the argument values inside them, as
        read-only.
        """
        cached = self._recent.get(text)
        if cached is not None:
            self._recent.move_to_end(text)
            return cached
        turn = self._parse_turn_uncached(text)
        size = _cached_size(text, turn)
        if size > PARSE_CACHE_ENTRY_CHARS:
            return turn
        self._recent[text] = turn
        self._cached_chars += size
        while len(self._recent) > PARSE_CACHE_SIZE or self._cached_chars > PARSE_CACHE_CHARS:
            old_text, old_turn = self._recent.popitem(last=False)
            self._cached_chars -= _cached_size(old_text, old_turn)
        return turn

    @property
    def cached_chars(self) -> int:
        """Characters the parse cache holds now (messages plus their parsed parts)."""
        return self._cached_chars

    def _parse_turn_uncached(self, text: str) -> ParsedTurn:
        tags = _find_tags(text)
        tool_text = tags.tool_texts[0] if tags.tool_texts else None
        if tool_text is None:
            error = ParseError(
                ParseErrorKind.NO_TOOL,
                "No tool call found. End every turn with exactly one call inside <tool></tool>, "
                "e.g. <tool>done()</tool>.",
            )
            result: ParsedCall | ParseError = error
        else:
            result = tags.first_call if tags.first_call is not None else parse_call(tool_text)
        turn = ParsedTurn(
            think=tags.think,
            tool_text=tool_text,
            call=result if isinstance(result, ParsedCall) else None,
            error=result if isinstance(result, ParseError) else None,
            tool_tags=len(tags.tool_texts),
            tool_closed=tags.tool_closed,
            think_closed=tags.think_closed,
            stray_text=bool(tags.outside_text.strip()),
        )
        return _with_score(turn, self.score_tags(turn))

    def score_tags(self, turn: ParsedTurn) -> float:
        """Score the tag format of a turn in [0, 1].

        No `<tool>`, or an empty one, scores 0. Otherwise: 0.4 for a closed `<tool>` (0.2 if unclosed), 0.2 for
        exactly one `<tool>`, 0.2 for no text outside the tags, and 0.2 for the thinking part: a non-empty, closed
        `<think>` before the tool when thinking is asked for; no requirement otherwise. Unlike verifiers' XML
        heuristic, a message missing its tool call cannot score well because of spacing or tag order alone.
        """
        if not turn.tool_text:  # tool_text is stripped, so "" is an empty or blank <tool>
            return 0.0
        score = 0.4 if turn.tool_closed else 0.2
        score += 0.2 if turn.tool_tags == 1 else 0.0
        score += 0.0 if turn.stray_text else 0.2
        if not self.use_thinking or (turn.think and turn.think.strip() and turn.think_closed):
            score += 0.2
        return round(score, 6)

    def format_turn(self, call: ParsedCall | str, think: str | None = None) -> str:
        """Write a well-formed turn: `<think>...</think>` (when given) and `<tool>call</tool>`."""
        call_text = call.format() if isinstance(call, ParsedCall) else call
        prefix = f"<think>\n{think}\n</think>\n" if think is not None else ""
        return f"{prefix}<tool>\n{call_text}\n</tool>"


def _cached_size(text: str, turn: ParsedTurn) -> int:
    """What a cache entry holds, in characters: the message and the copies of its think and tool parts."""
    return len(text) + len(turn.think or "") + len(turn.tool_text or "")


def _with_score(turn: ParsedTurn, score: float) -> ParsedTurn:
    return ParsedTurn(
        think=turn.think,
        tool_text=turn.tool_text,
        call=turn.call,
        error=turn.error,
        tool_tags=turn.tool_tags,
        tool_closed=turn.tool_closed,
        think_closed=turn.think_closed,
        stray_text=turn.stray_text,
        xml_score=score,
    )


def _find_tags(text: str) -> _Tags:
    """Locate the first think block and every tool block; see the module docstring for the tolerance rules."""
    tokens = [
        (match.start(), match.end(), match.group(1) == "/", match.group(2).lower()) for match in _TAG.finditer(text)
    ]
    think, think_closed, think_span = _first_think(text, tokens)
    tool_tokens = [token for token in tokens if not (think_span[0] <= token[0] < think_span[1])]
    tool_texts, tool_closed, tool_spans, first_call = _tool_blocks(text, tool_tokens)
    covered = sorted([think_span, *tool_spans])
    outside, cursor = [], 0
    for start, end in covered:
        if start > cursor:
            outside.append(text[cursor:start])
        cursor = max(cursor, end)
    outside.append(text[cursor:])
    return _Tags(think, think_closed, tuple(tool_texts), tool_closed, "".join(outside), first_call)


_Token = tuple[int, int, bool, str]


def _first_think(text: str, tokens: list[_Token]) -> tuple[str | None, bool, tuple[int, int]]:
    # a <think> only counts before the first <tool>: later ones are prose or sit inside a string argument
    first_tool = next((token[0] for token in tokens if token[3] == "tool" and not token[2]), len(text))
    opening = next((token for token in tokens if token[3] == "think" and not token[2] and token[0] < first_tool), None)
    if opening is None:
        return None, False, (0, 0)
    later = [token for token in tokens if token[0] > opening[0]]
    closing = next((token for token in later if token[3] == "think" and token[2]), None)
    if closing is not None:
        return text[opening[1] : closing[0]].strip(), True, (opening[0], closing[1])
    # an unclosed think ends where the tool call starts (or at the end of the message)
    next_tool = next((token for token in later if token[3] == "tool" and not token[2]), None)
    end = next_tool[0] if next_tool else len(text)
    return text[opening[1] : end].strip(), False, (opening[0], end)


def _tool_blocks(text: str, tokens: list[_Token]) -> tuple[list[str], bool, list[tuple[int, int]], ParsedCall | None]:
    """Find every tool block: the first with the careful closing-tag search, later ones by the first `</tool>`.

    Only the first block is parsed; later ones are counted (and kept out of the stray text), so a degenerate
    message repeating `<tool>` thousands of times costs linear time.
    """
    tool_tokens = [token for token in tokens if token[3] == "tool"]
    next_open, next_close = _next_tag_indices(tool_tokens)
    blocks: list[str] = []
    spans: list[tuple[int, int]] = []
    first_closed = False
    first_call = None
    index = next_open[0]
    while index is not None:
        start, content_start = tool_tokens[index][0], tool_tokens[index][1]
        following_open = next_open[index + 1]
        if not blocks:
            closings = [i for i in range(index + 1, len(tool_tokens)) if tool_tokens[i][2]]
            chosen, first_call = _choose_closing(text, content_start, tool_tokens, closings, following_open)
        else:
            chosen = next_close[index + 1]
            if chosen is not None and following_open is not None and chosen > following_open:
                chosen = None
        if chosen is None:  # unclosed: the block runs to the next <tool> or the end of the message
            end = tool_tokens[following_open][0] if following_open is not None else len(text)
            blocks.append(text[content_start:end].strip())
            spans.append((start, end))
            index = following_open
            continue
        blocks.append(text[content_start : tool_tokens[chosen][0]].strip())
        spans.append((start, tool_tokens[chosen][1]))
        first_closed = first_closed or len(blocks) == 1
        index = next_open[chosen + 1]
    return blocks, first_closed, spans, first_call


def _next_tag_indices(tokens: list[_Token]) -> tuple[list[int | None], list[int | None]]:
    """For each position i, the index of the first opening and of the first closing tag at or after i."""
    next_open: list[int | None] = [None] * (len(tokens) + 1)
    next_close: list[int | None] = [None] * (len(tokens) + 1)
    for i in range(len(tokens) - 1, -1, -1):
        is_closing = tokens[i][2]
        next_open[i] = next_open[i + 1] if is_closing else i
        next_close[i] = i if is_closing else next_close[i + 1]
    return next_open, next_close


def _choose_closing(
    text: str, content_start: int, tokens: list[_Token], closings: list[int], next_open: int | None
) -> tuple[int | None, ParsedCall | None]:
    """Pick the `</tool>` that ends this block; also return the call before it when that parsed.

    First choice: the first `</tool>` outside any string literal, when the call before it parses; that skips tags
    inside string arguments (`type("<tool>x</tool>")`), however many. Otherwise the first `</tool>` before the
    next `<tool>` after which the call parses, and when none parses, the first of them, so the error message
    shows what the model most likely meant.
    """
    outside = _first_closing_outside_strings(text, content_start, tokens, closings)
    if outside is not None:
        call = parse_call(text[content_start : tokens[outside][0]])
        if isinstance(call, ParsedCall):
            return outside, call
    candidates = [i for i in closings if next_open is None or i < next_open]
    for candidate in candidates[:8]:  # bounded: each attempt is an ast.parse
        if candidate == outside:
            continue  # already tried
        call = parse_call(text[content_start : tokens[candidate][0]])
        if isinstance(call, ParsedCall):
            return candidate, call
    return (candidates[0] if candidates else None), None


def _first_closing_outside_strings(
    text: str, content_start: int, tokens: list[_Token], closings: list[int]
) -> int | None:
    end = min(len(text), content_start + MAX_CALL_LENGTH + 100)  # a longer call is refused by parse_call anyway
    for match in _STRING_OR_TOOL_CLOSE.finditer(text, content_start, end):
        if match.lastgroup == "close":
            return next((i for i in closings if tokens[i][0] == match.start()), None)
    return None


def assistant_texts(completion: Sequence[Any] | str) -> list[str]:
    """The text of every assistant message of a completion (dicts or message objects), or the string itself."""
    if isinstance(completion, str):
        return [completion]
    texts = []
    for message in completion:
        role = message.get("role") if isinstance(message, Mapping) else getattr(message, "role", None)
        if role != "assistant":
            continue
        content = message.get("content") if isinstance(message, Mapping) else getattr(message, "content", None)
        texts.append(message_text(content))
    return texts


def message_text(content: Any) -> str:
    """Return the text of a message's content, whether a string or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        part_type = part.get("type") if isinstance(part, Mapping) else getattr(part, "type", None)
        if part_type == "text":
            parts.append(part.get("text") if isinstance(part, Mapping) else getattr(part, "text", ""))
    return "\n".join(str(part) for part in parts if part)
