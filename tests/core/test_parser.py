"""Tests for the <think>/<tool> turn parser and the call syntax inside <tool> (core/parser.py)."""

from __future__ import annotations

import keyword
import logging
import math
import re
from typing import Any

import pytest
import verifiers as vf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hud_vf_gym.classic import ToolXMLParser
from hud_vf_gym.core.parser import (
    MAX_CALL_LENGTH,
    MAX_ECHO_CHARS,
    MAX_LITERAL_DEPTH,
    PARSE_CACHE_CHARS,
    PARSE_CACHE_ENTRY_CHARS,
    ParsedCall,
    ParseError,
    ParseErrorKind,
    format_call,
    parse_call,
    quote_model_text,
)

THINKING = ToolXMLParser(use_thinking=True)
NOT_THINKING = ToolXMLParser(use_thinking=False)
SYNTAX_HINT = 'Write one call such as click(100, 200) or type("hello, world"), with strings in quotes.'


def _syntax_message(source: str, reason: str) -> str:
    return f"Could not parse the tool call `{source}`: {reason}. {SYNTAX_HINT}"


# --- tolerance to real model output ----------------------------------------------------------------------------

TOLERATED = [
    ("<think>go left</think>\n<tool>left()</tool>", "go left", ParsedCall("left")),
    ("<think>\n  spaced  \n</think>\n<tool>\n  left()\n</tool>", "spaced", ParsedCall("left")),
    ("<think>no closing think\n<tool>left()</tool>", "no closing think", ParsedCall("left")),
    ("<think>x</think><tool>click(1, 2)", "x", ParsedCall("click", (1, 2))),
    ("Sure, here you go:\n<tool>left()</tool>\nHope that helps!", None, ParsedCall("left")),
    ('<tool>type("a<b and c>d")</tool>', None, ParsedCall("type", ("a<b and c>d",))),
    ('<tool>type("</tool>")</tool>', None, ParsedCall("type", ("</tool>",))),
    ('<tool>type("<tool>x</tool>")</tool>', None, ParsedCall("type", ("<tool>x</tool>",))),
    ("<tool>type('" + "</tool>" * 12 + "')</tool>", None, ParsedCall("type", ("</tool>" * 12,))),
    ("<tool>left()</tool>\n<tool>right()</tool>", None, ParsedCall("left")),
    ("< THINK >why</ Think >\n< TOOL >left()</TOOL >", "why", ParsedCall("left")),
    ("<Tool>\tLEFT()\t</tool>", None, ParsedCall("LEFT")),
    ("<tool>```python\nclick(1, 2)\n```</tool>", None, ParsedCall("click", (1, 2))),
    ("<tool>`click(1, 2)`</tool>", None, ParsedCall("click", (1, 2))),
    ("<tool>click(1, 2);</tool>", None, ParsedCall("click", (1, 2))),
    ("<tool>done</tool>", None, ParsedCall("done")),
    ("<think>I'd use <tool> tags</think>\n<tool>left()</tool>", "I'd use <tool> tags", ParsedCall("left")),
]
TOLERATED_IDS = [
    "well-formed", "whitespace", "unclosed-think", "unclosed-tool", "prose-around", "less-than-in-string",
    "closing-tag-in-string", "both-tags-in-string", "many-closing-tags-in-string", "several-tool-tags",
    "tag-case-and-spaces", "mixed-case-tags", "code-fence", "backticks", "trailing-semicolon", "bare-name",
    "tool-tag-inside-think",
]  # fmt: skip


@pytest.mark.parametrize(("text", "think", "call"), TOLERATED, ids=TOLERATED_IDS)
def test_parse_turn_tolerates_real_model_output(text: str, think: str | None, call: ParsedCall) -> None:
    turn = THINKING.parse_turn(text)

    assert turn.error is None
    assert turn.call == call
    assert turn.think == think


def test_parse_turn_records_tag_facts() -> None:
    turn = THINKING.parse_turn("Hi <think>a</think> <tool>left()</tool>\n<tool>right()")

    assert (turn.tool_tags, turn.tool_closed, turn.think_closed, turn.stray_text) == (2, True, True, True)
    assert turn.tool_text == "left()"


# --- call syntax ---------------------------------------------------------------------------------------------

CALLS = [
    ("click(100, 200)", ParsedCall("click", (100, 200))),
    ("click(x=1, y=2)", ParsedCall("click", (), {"x": 1, "y": 2})),
    ("click(1, y=2, button='right')", ParsedCall("click", (1,), {"y": 2, "button": "right"})),
    ('type("hello, world")', ParsedCall("type", ("hello, world",))),
    ("type('say \"hi\"')", ParsedCall("type", ('say "hi"',))),
    ('type("it\'s")', ParsedCall("type", ("it's",))),
    (r'type("line\nbreak\ttab \\ \"q\"")', ParsedCall("type", ('line\nbreak\ttab \\ "q"',))),
    ('type("café ✓ 日本語 🙂")', ParsedCall("type", ("café ✓ 日本語 🙂",))),
    (r'type("\u00e9")', ParsedCall("type", ("é",))),
    ("f(0, -3, 2.5, -1.5, 1e3, +4)", ParsedCall("f", (0, -3, 2.5, -1.5, 1000.0, 4))),
    ("f(True, False, None)", ParsedCall("f", (True, False, None))),
    ("f(true, false, null)", ParsedCall("f", (True, False, None))),
    ("drag([[1, 2], [3, 4]])", ParsedCall("drag", ([[1, 2], [3, 4]],))),
    ("drag((1, 2), (3, 4))", ParsedCall("drag", ((1, 2), (3, 4)))),
    ("f({'a': [1, {'b': None}], 'c': -2})", ParsedCall("f", ({"a": [1, {"b": None}], "c": -2},))),
    ('f({"ok": true})', ParsedCall("f", ({"ok": True},))),
    ("move(left)", ParsedCall("move", ("left",))),
    ("move(direction=LEFT)", ParsedCall("move", (), {"direction": "LEFT"})),
    ("screenshot()", ParsedCall("screenshot")),
    ("f(1, 2,)", ParsedCall("f", (1, 2))),
    ("f([])", ParsedCall("f", ([],))),
]
CALL_IDS = [
    "positional", "keywords", "mixed", "comma-in-string", "quotes-in-string", "apostrophe", "escapes", "unicode",
    "unicode-escape", "numbers", "python-constants", "json-constants", "nested-lists", "tuples", "dicts",
    "json-dict", "bare-identifier", "bare-identifier-keyword", "no-arguments", "trailing-comma", "empty-list",
]  # fmt: skip


@pytest.mark.parametrize(("source", "call"), CALLS, ids=CALL_IDS)
def test_parse_call_reads_python_literals(source: str, call: ParsedCall) -> None:
    assert parse_call(source) == call


def test_parse_call_keeps_literal_types() -> None:
    call = parse_call("f(1, 1.0, True, [1], (1,))")

    assert isinstance(call, ParsedCall)
    assert [type(value) for value in call.args] == [int, float, bool, list, tuple]


# --- errors come back as ParseError, never raised ---------------------------------------------------------------

NO_TOOL_MESSAGE = (
    "No tool call found. End every turn with exactly one call inside <tool></tool>, e.g. <tool>done()</tool>."
)
EMPTY_TOOL_MESSAGE = "The <tool> tag is empty. Put one call inside, e.g. <tool>name()</tool>."
ERRORS = [
    ("I think I should move left.", ParseErrorKind.NO_TOOL, NO_TOOL_MESSAGE),
    ("<think>only thinking</think>", ParseErrorKind.NO_TOOL, NO_TOOL_MESSAGE),
    ("<think>I'd do <tool>left()</tool></think>", ParseErrorKind.NO_TOOL, NO_TOOL_MESSAGE),
    ("<tool></tool>", ParseErrorKind.EMPTY_TOOL, EMPTY_TOOL_MESSAGE),
    ("<tool>  ``` ```  </tool>", ParseErrorKind.EMPTY_TOOL, EMPTY_TOOL_MESSAGE),
    ("<tool>click(1, </tool>", ParseErrorKind.BAD_SYNTAX, _syntax_message("click(1,", "'(' was never closed")),
    ("<tool>type(hello world)</tool>", ParseErrorKind.BAD_SYNTAX,
     _syntax_message("type(hello world)", "invalid syntax. Perhaps you forgot a comma?")),
    ("<tool>click(1+2)</tool>", ParseErrorKind.BAD_SYNTAX,
     _syntax_message("click(1+2)", "argument 1 is an expression (1 + 2), not a value")),
    ("<tool>click(x=len(a))</tool>", ParseErrorKind.BAD_SYNTAX,
     _syntax_message("click(x=len(a))", "argument 'x' is an expression (len(a)), not a value")),
    ("<tool>click(**kw)</tool>", ParseErrorKind.BAD_SYNTAX,
     _syntax_message("click(**kw)", "**arguments are not supported")),
    ("<tool>click(*xy)</tool>", ParseErrorKind.BAD_SYNTAX,
     _syntax_message("click(*xy)", "*arguments are not supported")),
    ("<tool>f({**d})</tool>", ParseErrorKind.BAD_SYNTAX,
     _syntax_message("f({**d})", "argument 1 unpacks a dict with **, which is not supported")),
    ("<tool>click(x=1, x=2)</tool>", ParseErrorKind.BAD_SYNTAX,
     _syntax_message("click(x=1, x=2)", "argument 'x' is given twice")),
    ("<tool>f({[1]: 2})</tool>", ParseErrorKind.BAD_SYNTAX,
     _syntax_message("f({[1]: 2})", "argument 1 has a dict key that is not a plain value")),
    ("<tool>f(-'a')</tool>", ParseErrorKind.BAD_SYNTAX,
     _syntax_message("f(-'a')", "argument 1 puts a sign in front of something that is not a number")),
    ("<tool>f(b'x')</tool>", ParseErrorKind.BAD_SYNTAX, _syntax_message("f(b'x')", "argument 1 is not a plain value")),
    ("<tool>f(1j)</tool>", ParseErrorKind.BAD_SYNTAX, _syntax_message("f(1j)", "argument 1 is not a plain value")),
    ("<tool>computer.click(1)</tool>", ParseErrorKind.BAD_SYNTAX,
     _syntax_message("computer.click(1)", "expected one call of the form name(arguments)")),
    ("<tool>left(); right()</tool>", ParseErrorKind.BAD_SYNTAX, _syntax_message("left(); right()", "invalid syntax")),
    ("<tool>[1, 2]</tool>", ParseErrorKind.BAD_SYNTAX,
     _syntax_message("[1, 2]", "expected one call of the form name(arguments)")),
]  # fmt: skip
ERROR_IDS = [
    "no-tags", "think-only", "tool-inside-think", "empty-tool", "empty-code-fence", "unclosed-parenthesis",
    "unquoted-words", "arithmetic", "function-call-argument", "kwargs-unpacking", "args-unpacking",
    "dict-unpacking", "repeated-keyword", "unhashable-key", "sign-on-string", "bytes", "complex",
    "method-call", "two-calls", "not-a-call",
]  # fmt: skip


@pytest.mark.parametrize(("text", "kind", "message"), ERRORS, ids=ERROR_IDS)
def test_parse_turn_error_explains_what_to_write(text: str, kind: ParseErrorKind, message: str) -> None:
    turn = THINKING.parse_turn(text)

    assert turn.call is None
    assert turn.error == ParseError(kind, message)


def test_parse_call_deep_nesting_is_an_error_not_a_crash() -> None:
    too_deep = "[" * (MAX_LITERAL_DEPTH + 2) + "]" * (MAX_LITERAL_DEPTH + 2)
    deep_expression = "click(" + "+".join(["1"] * 1000) + ")"
    deep_attribute = "click(" + "a." * 2000 + "b)"

    nested = parse_call(f"f({too_deep})")
    expression = parse_call(deep_expression)
    attribute = parse_call(deep_attribute)

    assert isinstance(nested, ParseError)
    assert nested.message.endswith(f": argument 1 is nested more than {MAX_LITERAL_DEPTH} levels deep. {SYNTAX_HINT}")
    assert isinstance(expression, ParseError)
    assert expression.message.endswith(
        f": argument 1 is an expression (a deeply nested BinOp), not a value. {SYNTAX_HINT}"
    )
    assert isinstance(attribute, ParseError)
    assert attribute.message.endswith(
        f": argument 1 is an expression (a deeply nested Attribute), not a value. {SYNTAX_HINT}"
    )


def test_parse_call_too_long_is_refused_with_the_limit() -> None:
    source = "type('" + "a" * MAX_CALL_LENGTH + "')"

    result = parse_call(source)

    assert isinstance(result, ParseError)
    assert result.message == _syntax_message(
        source[:197] + "...", f"the call is longer than {MAX_CALL_LENGTH} characters"
    )


def test_parse_turn_degenerate_repetition_is_handled() -> None:
    turn = THINKING.parse_turn("<tool>" * 3000 + "</tool>" * 3000)

    assert turn.error is not None and turn.error.kind is ParseErrorKind.EMPTY_TOOL
    assert turn.tool_tags == 3000


TAG_FRAGMENTS = [
    "<tool>", "</tool>", "<think>", "</think>", "<TOOL >", "< / tool>", "(", ")", '"', "'", "'''", "\\", "```", ";",
    ",", "=", "[", "]", "{", "}", "click", "x=1", "1+2", "**", "*", "\n", "lambda", "-", ".",
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=20), st.sampled_from(TAG_FRAGMENTS)), max_size=30).map("".join))
def test_parse_turn_never_raises_on_arbitrary_text(text: str) -> None:
    for parser in (THINKING, NOT_THINKING):
        turn = parser.parse_turn(text)

        assert (turn.call is None) != (turn.error is None)
        assert 0.0 <= turn.xml_score <= 1.0


# --- formatting round-trips -----------------------------------------------------------------------------------

IDENTIFIERS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name) and name not in {"true", "false", "null"}
)
TEXT = st.one_of(st.text(max_size=30), st.sampled_from(TAG_FRAGMENTS))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
LITERALS = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(TEXT, children, max_size=4),
    ),
    max_leaves=12,
)
CALLS_STRATEGY = st.builds(
    ParsedCall,
    name=IDENTIFIERS,
    args=st.lists(LITERALS, max_size=4).map(tuple),
    kwargs=st.dictionaries(IDENTIFIERS, LITERALS, max_size=4),
)
THINKS = st.one_of(
    st.none(), st.text(max_size=60).filter(lambda text: not re.search(r"<\s*/?\s*think\s*>", text, re.IGNORECASE))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=CALLS_STRATEGY, think=THINKS)
def test_parse_turn_round_trips_formatted_turn(call: ParsedCall, think: str | None) -> None:
    parser = THINKING if think is not None else NOT_THINKING

    turn = parser.parse_turn(parser.format_turn(call, think=think))

    assert turn.error is None, turn.error
    assert turn.call == call
    assert turn.xml_score == (0.8 if think is not None and not think.strip() else 1.0)  # an empty think loses 0.2


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (ParsedCall("click", (1, 2), {"button": "right"}), "click(1, 2, button='right')"),
        (ParsedCall("type", ('say "hi"\n',)), "type('say \"hi\"\\n')"),
        (ParsedCall("done"), "done()"),
    ],
    ids=["mixed", "escaped-string", "no-arguments"],
)
def test_format_call_writes_python_literals(call: ParsedCall, text: str) -> None:
    assert call.format() == text
    assert format_call(call.name, call.args, call.kwargs) == text


def test_format_turn_wraps_think_and_tool() -> None:
    assert THINKING.format_turn(ParsedCall("left"), think="why") == "<think>\nwhy\n</think>\n<tool>\nleft()\n</tool>"
    assert NOT_THINKING.format_turn("left()") == "<tool>\nleft()\n</tool>"


def test_parse_call_negative_zero_equals_zero() -> None:
    call = parse_call("f(-0.0)")

    assert isinstance(call, ParsedCall)
    assert call.args == (0.0,) and math.copysign(1.0, call.args[0]) == -1.0


# --- the tag-format score ---------------------------------------------------------------------------------------

SCORES = [
    (THINKING, "<think>why</think>\n<tool>left()</tool>", 1.0),
    (THINKING, "<tool>left()</tool>", 0.8),
    (THINKING, "<think></think>\n<tool>left()</tool>", 0.8),
    (THINKING, "<think>why\n<tool>left()</tool>", 0.8),
    (THINKING, "<think>why</think>\n<tool>left()", 0.8),
    (THINKING, "<think>why</think>\n<tool>left()</tool>\nDone!", 0.8),
    (THINKING, "<think>why</think>\n<tool>left()</tool><tool>up()</tool>", 0.8),
    (THINKING, "Well: <tool>left()", 0.4),
    (THINKING, "<think>why</think>", 0.0),
    (THINKING, "<think>why</think><tool></tool>", 0.0),
    (THINKING, "<think>why</think><tool>click(1+2)</tool>", 1.0),
    (NOT_THINKING, "<tool>left()</tool>", 1.0),
    (NOT_THINKING, "<think>why</think><tool>left()</tool>", 1.0),
    (NOT_THINKING, "left()", 0.0),
]
SCORE_IDS = [
    "perfect", "missing-think", "empty-think", "unclosed-think", "unclosed-tool", "trailing-prose", "two-tools",
    "prose-and-unclosed", "no-tool", "empty-tool", "bad-call-still-well-tagged", "no-thinking-perfect",
    "no-thinking-think-allowed", "no-thinking-no-tags",
]  # fmt: skip


@pytest.mark.parametrize(("parser", "text", "score"), SCORES, ids=SCORE_IDS)
def test_parse_turn_xml_score_follows_documented_weights(parser: ToolXMLParser, text: str, score: float) -> None:
    assert parser.parse_turn(text).xml_score == pytest.approx(score)


# verifiers' heuristic rewards spacing and tag order, so these malformed messages score high there
MALFORMED = [
    ("<think>\nI will click the button\n</think>", 0.6, 0.0),
    ("<think>\nI'll do <tool>left()</tool>\n</think>", 0.8, 0.0),
    ("<think>\nwhy\n</think>\n<tool>\n</tool>", 1.0, 0.0),
    ("<think></think>\n<tool>\nleft()\n</tool>", 1.0, 0.8),
    ("<think>\nwhy\n</think>\n<tool>\nleft()\n</tool>\n<tool>\nright()\n</tool>", 1.0, 0.8),
]
MALFORMED_IDS = ["think-without-tool", "tool-inside-think", "empty-tool", "empty-think", "two-tools"]


@pytest.mark.parametrize(("text", "verifiers_score", "our_score"), MALFORMED, ids=MALFORMED_IDS)
def test_format_reward_malformed_output_scores_below_verifiers_heuristic(
    text: str, verifiers_score: float, our_score: float
) -> None:
    completion = [{"role": "assistant", "content": text}]
    verifiers_reward = vf.XMLParser(["think", "tool"]).get_format_reward_func()

    assert verifiers_reward(completion) == pytest.approx(verifiers_score)
    assert THINKING.get_format_reward_func()(completion) == pytest.approx(our_score)
    assert our_score < 1.0 and our_score < verifiers_score


# --- still a verifiers XMLParser ------------------------------------------------------------------------------------


def test_tool_xml_parser_is_a_verifiers_xml_parser() -> None:
    assert isinstance(THINKING, vf.XMLParser)
    assert THINKING.get_fields() == ["think", "tool"]
    assert NOT_THINKING.get_fields() == ["tool"]
    assert THINKING.answer_field == "tool"


def test_tool_xml_parser_parse_returns_fields() -> None:
    parsed = THINKING.parse("<think> why </think>\n<tool> left() </tool>")

    assert (parsed.think, parsed.tool) == ("why", "left()")


MESSAGES: list[Any] = [
    {"role": "system", "content": "Play."},
    {"role": "user", "content": "<tool>ignored()</tool>"},
    {"role": "assistant", "content": "<think>first</think>\n<tool>left()</tool>"},
    {"role": "user", "content": "board"},
    {"role": "assistant", "content": [{"type": "text", "text": "<tool>right()</tool>"}]},
]


def test_tool_xml_parser_parse_answer_reads_last_assistant_tool() -> None:
    assert THINKING.parse_answer(MESSAGES) == "right()"
    assert THINKING.parse_answer([vf.UserMessage(content="x"), vf.AssistantMessage(content="<tool>up()</tool>")]) == (
        "up()"
    )


def test_tool_xml_parser_format_reward_averages_assistant_messages() -> None:
    reward = THINKING.get_format_reward_func()

    assert reward(MESSAGES) == pytest.approx((1.0 + 0.8) / 2)
    assert reward([vf.AssistantMessage(content="<think>a</think><tool>up()</tool>")]) == pytest.approx(1.0)
    assert reward([{"role": "user", "content": "<tool>left()</tool>"}]) == 0.0
    assert reward("<think>a</think><tool>up()</tool>") == pytest.approx(1.0)


def test_parser_silences_only_the_inapplicable_think_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="verifiers")
    parser = ToolXMLParser(use_thinking=True)
    assert not [record for record in caplog.records if "'think' field" in record.getMessage()]
    parser.logger.warning("something else")  # every other record of this parser's logger still shows
    assert [record.getMessage() for record in caplog.records] == ["something else"]
    caplog.clear()
    vf.XMLParser(fields=["think", "answer"])  # another parser declaring think is still warned
    assert [record for record in caplog.records if "You have included the 'think' field" in record.getMessage()]


# --- size limits (issue 15) ----------------------------------------------------------------------------------------


def test_parse_cache_is_bounded_by_characters_not_only_by_count() -> None:
    # before: 4096 entries whatever their size, so 600 distinct 1 MB messages kept 1.1 GB resident
    parser = ToolXMLParser(use_thinking=False)
    filler = PARSE_CACHE_ENTRY_CHARS - 1_000  # each message just fits one entry
    for index in range(2 * PARSE_CACHE_CHARS // filler):
        parser.parse_turn(f"{index:08d}" + "x" * filler + "<tool>act()</tool>")
    assert 0 < parser.cached_chars <= PARSE_CACHE_CHARS
    held = parser.cached_chars
    huge = "y" * (10 * PARSE_CACHE_ENTRY_CHARS) + "<tool>act()</tool>"
    assert parser.parse_turn(huge).call == ParsedCall("act")
    assert parser.cached_chars == held  # a message past the per-entry cap is parsed, never kept


def test_call_length_limit_comes_before_anything_else_even_for_a_bare_name() -> None:
    # before: a 10 MB bare name matched the identifier shortcut first, skipped the limit, and was echoed whole
    turn = NOT_THINKING.parse_turn("<tool>" + "a" * 10_000_000 + "</tool>")
    assert turn.call is None and turn.error is not None
    assert turn.error.kind is ParseErrorKind.BAD_SYNTAX
    assert f"the call is longer than {MAX_CALL_LENGTH} characters" in turn.error.message
    assert len(turn.error.message) < 500


def test_quote_model_text_cuts_long_text_and_says_how_long_it_was() -> None:
    assert quote_model_text("left") == "'left'"
    assert quote_model_text("z" * 5000) == repr("z" * MAX_ECHO_CHARS) + "... (5000 characters)"
