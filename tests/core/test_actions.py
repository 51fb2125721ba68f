"""Tests for the action-mapping engine: parsed calls to MCP tool calls (core/actions.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hud_vf_gym.config import EnvConfig, load_config, parse_config
from hud_vf_gym.core.actions import ActionError, ActionErrorKind, ActionMapper, MappedAction
from hud_vf_gym.core.parser import ParsedCall, parse_call
from hud_vf_gym.errors import ConfigError
from hud_vf_gym.types import ToolCall, ToolSpec
from tests.support import PUBLISHED_CONFIGS

COMPUTER_USE_CONFIGS = [PUBLISHED_CONFIGS / "default.yaml", "default"]
COMPUTER_USE_IDS = ["published-default", "builtin-default"]
CU_ACTIONS = (
    "click(x, y), done(), double_click(x, y), drag(x1, y1, x2, y2), key(key), screenshot(), "
    "scroll(direction, amount), type(text), wait(seconds)"
)


def _mapper(config: EnvConfig) -> ActionMapper:
    return ActionMapper(config.action_mappings, config.passthrough_tools)


def _map(mapper: ActionMapper, source: str) -> MappedAction | ActionError:
    call = parse_call(source)
    assert isinstance(call, ParsedCall), call
    return mapper.map(call)


def _computer(source: str, config_path: str | Path) -> dict[str, Any]:
    mapped = _map(_mapper(load_config(config_path)), source)
    assert isinstance(mapped, MappedAction), mapped
    assert mapped.tool_call is not None and mapped.tool_call.name == "computer"
    return dict(mapped.tool_call.arguments)


# --- the published computer-use config ---------------------------------------------------------------------------

COMPUTER_USE_CASES = [
    ('key("ctrl+a")', {"action": "press", "keys": ["ctrl", "a"]}),
    ('key("enter")', {"action": "press", "keys": ["enter"]}),
    ('scroll("down", 3)', {"action": "scroll", "x": 640, "y": 400, "scroll_y": 3, "scroll_x": 0}),
    ('scroll("up")', {"action": "scroll", "x": 640, "y": 400, "scroll_y": -3, "scroll_x": 0}),
    ('scroll("left", 2)', {"action": "scroll", "x": 640, "y": 400, "scroll_y": 0, "scroll_x": -2}),
    ("scroll(direction='right', amount=1)", {"action": "scroll", "x": 640, "y": 400, "scroll_y": 0, "scroll_x": 1}),
    ("wait(2.5)", {"action": "wait", "time": 2500}),
    ("wait()", {"action": "wait", "time": 1000}),
    ("click(100, 200)", {"action": "click", "x": 100, "y": 200}),
    ("click(x=1, y=2)", {"action": "click", "x": 1, "y": 2}),
    ("screenshot()", {"action": "screenshot"}),
    ("SCREENSHOT()", {"action": "screenshot"}),
]
COMPUTER_USE_CASE_IDS = [
    "key-combo", "key-single", "scroll-down", "scroll-up-default-amount", "scroll-left", "scroll-keywords",
    "wait-seconds", "wait-default-is-mcp-value", "click-positional", "click-keywords", "screenshot",
    "upper-case-name",
]  # fmt: skip


@pytest.mark.parametrize("config_path", COMPUTER_USE_CONFIGS, ids=COMPUTER_USE_IDS)
@pytest.mark.parametrize(("source", "arguments"), COMPUTER_USE_CASES, ids=COMPUTER_USE_CASE_IDS)
def test_action_mapper_computer_use_maps_to_computer_tool(
    source: str, arguments: dict[str, Any], config_path: str | Path
) -> None:
    assert _computer(source, config_path) == arguments


def test_action_mapper_published_type_keeps_published_action_name() -> None:
    assert _computer('type("hi, there")', PUBLISHED_CONFIGS / "default.yaml") == {"action": "type", "text": "hi, there"}
    assert _computer("type()", PUBLISHED_CONFIGS / "default.yaml") == {"action": "type", "text": ""}


def test_action_mapper_builtin_type_uses_write_and_optional_button() -> None:
    assert _computer('type("hi")', "default") == {"action": "write", "text": "hi"}
    assert _computer("click(1, 2, button='RIGHT')", "default") == {"action": "click", "x": 1, "y": 2, "button": "right"}
    assert _computer("click(1.6, '2')", "default") == {"action": "click", "x": 2, "y": 2}


def test_action_mapper_static_values_are_copied_per_call() -> None:
    mapper = _mapper(parse_config({"system_prompt": "x", "action_mappings": {"hotkey": {"keys": ["ctrl", "c"]}}}))

    first = _map(mapper, "hotkey()")
    assert isinstance(first, MappedAction) and first.tool_call is not None
    first.tool_call.arguments["keys"].append("v")
    second = _map(mapper, "hotkey()")

    assert isinstance(second, MappedAction) and second.tool_call == ToolCall("hotkey", {"keys": ["ctrl", "c"]})


# --- from_args, defaults and list arguments -----------------------------------------------------------------------

DRAG_CONFIG = {
    "system_prompt": "Drag things.",
    "action_mappings": {
        "drag": {
            "_tool": "computer",
            "_parser": {"positional": ["start", "end"]},
            "action": "drag",
            "path": {"from_args": ["start", "end"], "defaults": [[0, 0], [10, 10]]},
        },
        "trace": {
            "_tool": "computer",
            "_parser": {"positional": ["path"]},
            "action": "drag",
            "path": {"from_arg": "path"},
        },
        "hold": {"_tool": "computer", "_parser": {"positional": ["a", "b"]}, "keys": {"from_args": ["a", "b"]}},
    },
}


@pytest.mark.parametrize(
    ("source", "arguments"),
    [
        ("drag([1, 2], [3, 4])", {"action": "drag", "path": [[1, 2], [3, 4]]}),
        ("drag(end=[3, 4], start=[1, 2])", {"action": "drag", "path": [[1, 2], [3, 4]]}),
        ("drag([5, 5])", {"action": "drag", "path": [[5, 5], [10, 10]]}),
        ("drag()", {"action": "drag", "path": [[0, 0], [10, 10]]}),
        ("trace([[1, 2], [3, 4], [5, 6]])", {"action": "drag", "path": [[1, 2], [3, 4], [5, 6]]}),
        ("hold('ctrl', 'a')", {"keys": ["ctrl", "a"]}),
    ],
    ids=["from-args-positional", "from-args-keywords", "from-args-one-default", "from-args-all-defaults",
         "nested-list-argument", "from-args-without-defaults"],
)  # fmt: skip
def test_action_mapper_list_arguments_stay_lists(source: str, arguments: dict[str, Any]) -> None:
    mapped = _map(_mapper(parse_config(DRAG_CONFIG)), source)

    assert isinstance(mapped, MappedAction) and mapped.tool_call is not None
    assert dict(mapped.tool_call.arguments) == arguments


def test_action_mapper_from_args_without_default_is_required() -> None:
    mapped = _map(_mapper(parse_config(DRAG_CONFIG)), "hold('ctrl')")

    assert mapped == ActionError(
        ActionErrorKind.BAD_ARGUMENTS, "hold() is missing the argument 'b'. Usage: hold(a, b)."
    )


# --- mistakes come back as ActionError ------------------------------------------------------------------------------

MISTAKES = [
    ("click(1)", ActionErrorKind.BAD_ARGUMENTS, "click() is missing the argument 'y'. Usage: click(x, y)."),
    ("click(1, 2, 3)", ActionErrorKind.BAD_ARGUMENTS,
     "click() takes 2 positional arguments but 3 were given. Usage: click(x, y)."),
    ("screenshot(1)", ActionErrorKind.BAD_ARGUMENTS,
     "screenshot() takes 0 positional arguments but 1 were given. Usage: screenshot()."),
    ("key('a', 'b')", ActionErrorKind.BAD_ARGUMENTS,
     "key() takes 1 positional argument but 2 were given. Usage: key(key)."),
    ("click(1, 2, z=3)", ActionErrorKind.BAD_ARGUMENTS,
     "click() got an unknown argument 'z' (accepted: button, x, y). Usage: click(x, y)."),
    ("screenshot(full=True)", ActionErrorKind.BAD_ARGUMENTS,
     "screenshot() got an unknown argument 'full' (accepted: none). Usage: screenshot()."),
    ("click(1, x=2)", ActionErrorKind.BAD_ARGUMENTS, "click() got 'x' twice. Usage: click(x, y)."),
    ("click('left', 2)", ActionErrorKind.TRANSFORM_FAILED,
     "click(): the value for 'x' cannot be used (expected a number, got 'left'). Usage: click(x, y)."),
    ("wait('soon')", ActionErrorKind.TRANSFORM_FAILED,
     "wait(): the value for 'time' cannot be used (expected a number, got 'soon'). Usage: wait(seconds)."),
    ("clack(1, 2)", ActionErrorKind.UNKNOWN_ACTION,
     f"Unknown action 'clack'. Did you mean click()? Available actions: {CU_ACTIONS}."),
    ("browse('https://example.com')", ActionErrorKind.UNKNOWN_ACTION,
     f"Unknown action 'browse'. Available actions: {CU_ACTIONS}."),
    ("setup()", ActionErrorKind.LIFECYCLE_TOOL,
     "setup is run by the environment (task setup and evaluation); the agent cannot call it. "
     "Call done() when the task is finished."),
    ("evaluate(answer='42')", ActionErrorKind.LIFECYCLE_TOOL,
     "evaluate is run by the environment (task setup and evaluation); the agent cannot call it. "
     "Call done() when the task is finished."),
]  # fmt: skip
MISTAKE_IDS = [
    "missing-argument", "too-many-positional", "positional-to-no-argument-action", "too-many-positional-singular",
    "unknown-keyword", "unknown-keyword-none-accepted", "argument-twice", "transform-fails", "bad-seconds",
    "unknown-action-close-match", "unknown-action", "setup", "evaluate",
]  # fmt: skip


@pytest.mark.parametrize(("source", "kind", "message"), MISTAKES, ids=MISTAKE_IDS)
def test_action_mapper_mistake_is_explained(source: str, kind: ActionErrorKind, message: str) -> None:
    assert _map(_mapper(load_config("default")), source) == ActionError(kind, message)


def test_action_mapper_task_lifecycle_tools_are_blocked() -> None:
    mapper = _mapper(load_config("2048"))

    mapped = mapper.map(ParsedCall("left"), blocked_tools=frozenset({"move"}))

    assert isinstance(mapped, ActionError) and mapped.kind is ActionErrorKind.LIFECYCLE_TOOL
    assert mapped.message.startswith("move is run by the environment")


# --- pass-through tools ---------------------------------------------------------------------------------------

FILL_SPEC = ToolSpec(
    "fill",
    input_schema={
        "type": "object",
        "properties": {"selector": {"type": "string"}, "timeout": {"type": "number"}, "value": {"type": "string"}},
        "required": ["value", "selector"],
    },
)


def test_action_mapper_passthrough_keyword_arguments() -> None:
    mapper = ActionMapper({}, ["fill"])

    assert _map(mapper, "fill(selector='#q', value='hi')") == MappedAction(
        "fill", ToolCall("fill", {"selector": "#q", "value": "hi"})
    )


def test_action_mapper_passthrough_positional_after_bind_tool_specs() -> None:
    mapper = ActionMapper({}, "*")
    mapper.bind_tool_specs({"fill": FILL_SPEC})

    # required parameters first, each group in the order the schema lists its properties
    assert _map(mapper, "fill('#q', 'hi', 5)") == MappedAction(
        "fill", ToolCall("fill", {"selector": "#q", "value": "hi", "timeout": 5})
    )
    assert _map(mapper, "fill('#q', value='hi')") == MappedAction(
        "fill", ToolCall("fill", {"value": "hi", "selector": "#q"})
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("fill('#q', 'hi', 5, 6)", "fill() takes at most 3 positional arguments but 4 were given. "
                                   "Usage: fill(selector, value, timeout)."),
        ("fill('#q', selector='#p')", "fill() got 'selector' twice. Usage: fill(selector, value, timeout)."),
        ("press('enter')", "press() takes keyword arguments only, e.g. press(name='value')."),
    ],
    ids=["too-many-positional", "argument-twice", "schema-unknown"],
)  # fmt: skip
def test_action_mapper_passthrough_bad_arguments(source: str, message: str) -> None:
    mapper = ActionMapper({}, "*")
    mapper.bind_tool_specs({"fill": FILL_SPEC})

    assert _map(mapper, source) == ActionError(ActionErrorKind.BAD_ARGUMENTS, message)


@pytest.mark.parametrize(
    ("passthrough", "name"),
    [("*", "setup"), ("*", "evaluate"), ("*", "browser_setup"), ("*", "hud_evaluate"), (["fill"], "setup")],
    ids=["setup", "evaluate", "server-prefixed-setup", "server-prefixed-evaluate", "listed-passthrough"],
)
def test_action_mapper_passthrough_never_reaches_lifecycle_tools(passthrough: Any, name: str) -> None:
    mapped = ActionMapper({}, passthrough).map(ParsedCall(name))

    assert mapped == ActionError(
        ActionErrorKind.LIFECYCLE_TOOL,
        f"{name} is run by the environment (task setup and evaluation); the agent cannot call it. "
        "Call done() when the task is finished.",
    )


def test_action_mapper_passthrough_unlisted_tool_is_unknown() -> None:
    assert ActionMapper({}, ["fill"]).map(ParsedCall("press")) == ActionError(
        ActionErrorKind.UNKNOWN_ACTION, "Unknown action 'press'. Available actions: done()."
    )


def test_action_mapper_passthrough_tool_named_like_setup_is_allowed() -> None:
    assert ActionMapper({}, "*").map(ParsedCall("setup_wizard")) == MappedAction(
        "setup_wizard", ToolCall("setup_wizard", {})
    )


# --- done() ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source", ["done()", "Done()", "DONE()", "done('finished')"], ids=["plain", "capitalised", "upper", "with-argument"]
)
def test_action_mapper_done_ends_episode(source: str) -> None:
    assert _map(_mapper(load_config("2048")), source) == MappedAction("done", None, ends_episode=True)


def test_action_mapper_done_mapped_to_tool_calls_it_and_ends() -> None:
    config = parse_config(
        {
            "system_prompt": "Answer.",
            "action_mappings": {
                "done": {"_tool": "submit", "_parser": {"positional": ["answer"]}, "answer": {"from_arg": "answer"}}
            },
        }
    )

    mapped = _map(_mapper(config), "done('42')")

    assert mapped == MappedAction("done", ToolCall("submit", {"answer": "42"}), ends_episode=True)


# --- the 2048 config ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config_path", "source", "direction"),
    [
        ("2048", "left()", "left"),
        ("2048", "Left()", "left"),
        ("2048", "DOWN()", "down"),
        ("2048", 'move("LEFT")', "left"),
        ("2048", "move(direction='Up')", "up"),
        ("2048", "move(right)", "right"),
        (PUBLISHED_CONFIGS / "2048.yaml", "right()", "right"),
    ],
    ids=["left", "case-insensitive-name", "upper-case-name", "move-upper-case", "move-keyword", "move-bare-word",
         "published-right"],
)  # fmt: skip
def test_action_mapper_2048_maps_to_move(config_path: str | Path, source: str, direction: str) -> None:
    mapped = _map(_mapper(load_config(config_path)), source)

    assert isinstance(mapped, MappedAction) and not mapped.ends_episode
    assert mapped.tool_call == ToolCall("move", {"direction": direction})


def test_action_mapper_2048_unknown_action_lists_moves() -> None:
    mapped = _map(_mapper(load_config("2048")), "slide('left')")

    assert mapped == ActionError(
        ActionErrorKind.UNKNOWN_ACTION,
        "Unknown action 'slide'. Available actions: done(), down(), left(), move(direction), right(), up().",
    )


# --- checking mappings against the server's tools -------------------------------------------------------------------

COMPUTER_SPEC = ToolSpec(
    "computer",
    input_schema={
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["click", "write", "press", "scroll", "wait", "screenshot", "drag"]},
            **{
                name: {}
                for name in ("x", "y", "text", "keys", "scroll_x", "scroll_y", "time", "button", "pattern", "path")
            },
        },
        "required": ["action"],
    },
)


def test_action_mapper_check_tools_builtin_default_matches_computer_tool() -> None:
    mapper = _mapper(load_config("default"))

    assert mapper.check_tools({"computer": COMPUTER_SPEC}) == []
    assert mapper.check_tools({"hud_computer": COMPUTER_SPEC, "setup": ToolSpec("setup")}) == []


def test_action_mapper_check_tools_reports_renamed_type_action() -> None:
    problems = _mapper(load_config(PUBLISHED_CONFIGS / "default.yaml")).check_tools({"computer": COMPUTER_SPEC})

    assert problems == [
        "action 'type': action='type' is not one of "
        "['click', 'write', 'press', 'scroll', 'wait', 'screenshot', 'drag'] for tool 'computer' "
        "(HUD renamed the computer action 'type' to 'write' in hud 0.4.28)"
    ]


def test_action_mapper_check_tools_reports_unknown_tool_and_argument() -> None:
    mapper = _mapper(load_config("2048"))
    move = ToolSpec("move", input_schema={"properties": {"dir": {"type": "string"}}, "required": ["dir"]})

    assert mapper.check_tools({"computer": COMPUTER_SPEC})[0] == (
        "action 'down': the server has no tool 'move' (tools: computer)"
    )
    assert mapper.check_tools({"move": move}) == [
        f"action {action!r}: tool 'move' has no argument 'direction' (dir)"
        for action in ("down", "left", "move", "right", "up")
    ]


def test_action_mapper_check_tools_enum_mismatch_without_hint() -> None:
    mapper = _mapper(load_config("2048"))
    move = ToolSpec("move", input_schema={"properties": {"direction": {"enum": ["north", "south"]}}})

    assert mapper.check_tools({"move": move})[0] == (
        "action 'down': direction='down' is not one of ['north', 'south'] for tool 'move'"
    )


def test_action_mapper_check_tools_open_schema_accepts_any_argument() -> None:
    mapper = _mapper(load_config("2048"))
    open_move = ToolSpec("move", input_schema={"properties": {"dir": {}}, "additionalProperties": True})

    assert mapper.check_tools({"move": open_move}) == []
    assert mapper.check_tools({"move": ToolSpec("move")}) == []


# --- small helpers -----------------------------------------------------------------------------------------------


def test_action_mapper_usage_and_action_names() -> None:
    mapper = _mapper(load_config("default"))

    assert mapper.usage("scroll") == "scroll(direction, amount)"
    assert mapper.usage("done") == "done()"
    assert mapper.action_names == [
        "click", "done", "double_click", "drag", "key", "screenshot", "scroll", "type", "wait"
    ]  # fmt: skip


def test_action_mapper_is_screenshot() -> None:
    mapper = _mapper(load_config("default"))
    screenshot = _map(mapper, "screenshot()")
    click = _map(mapper, "click(1, 2)")

    assert isinstance(screenshot, MappedAction) and mapper.is_screenshot(screenshot)
    assert isinstance(click, MappedAction) and not mapper.is_screenshot(click)
    assert mapper.is_screenshot(MappedAction("screenshot", ToolCall("screenshot", {})))


def test_load_config_forbidden_transform_names_file_and_key_path(tmp_path: Path) -> None:
    raw = yaml.safe_load((PUBLISHED_CONFIGS / "default.yaml").read_text(encoding="utf-8"))
    raw["action_mappings"]["key"]["keys"]["transform"] = "lambda x: x.__class__.__mro__"
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    expected = (
        f"{path}: 1 problem\n  action_mappings.key.keys.transform: transform 'lambda x: x.__class__.__mro__' is not "
        "allowed: attribute '__mro__' starts with '_'"
    )

    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        load_config(path)


# --- echoes of model text are capped (issue 15) --------------------------------------------------------------------


@pytest.mark.parametrize("passthrough", [["fill"], "*"], ids=["listed-passthrough", "any-passthrough"])
def test_a_long_action_name_is_quoted_short_and_never_looked_up(passthrough: Any) -> None:
    name = "n" * 15_000  # inside the call-length limit, far beyond any action name
    error = ActionMapper({}, passthrough).map(ParsedCall(name))
    assert isinstance(error, ActionError) and error.kind is ActionErrorKind.UNKNOWN_ACTION
    assert error.message.startswith(f"Unknown action {'n' * 80!r}... (15000 characters). Available actions: ")
    assert len(error.message) < 400


def test_a_long_unknown_keyword_is_quoted_short() -> None:
    mapper = _mapper(load_config("2048"))
    error = mapper.map(ParsedCall("left", (), {"k" * 10_000: 1}))
    assert isinstance(error, ActionError) and error.kind is ActionErrorKind.BAD_ARGUMENTS
    assert f"got an unknown argument {'k' * 80!r}... (10000 characters)" in error.message
    assert len(error.message) < 400
