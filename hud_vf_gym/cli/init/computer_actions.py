"""HUD's `computer` tool as the friendly action set of `configs/default.yaml`, sized to the tool's screen.

`HudComputerTool` takes one required `action` and whatever that action needs, so a one-to-one mapping is usable only
as `computer("screenshot")`. Instead the agent gets `screenshot()`, `click(x, y)`, `double_click(x, y)`,
`type(text)`, `key(key)`, `scroll(direction, amount)`, `drag(x1, y1, x2, y2)` and `wait(seconds)`, each mapped onto
the tool as `configs/default.yaml` maps it. Only actions the tool's `action` enum offers are generated, and `type`
sends `write` (hud >= 0.4.28) or `type`, whichever the enum has. The screen size comes from the tool's
`meta.resolution`; `scroll` scrolls at its centre.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hud_vf_gym.cli.init.yaml_writer import FlowList, FlowMapping, GeneratedAction
from hud_vf_gym.types import ToolSpec

__all__ = [
    "HUD_DEFAULT_SCREEN",
    "ScreenSize",
    "computer_actions",
    "enum_values",
    "is_computer_tool",
    "is_vendor_computer",
    "screen_size",
]

HUD_DEFAULT_SCREEN = (1920, 1080)  # HudComputerTool's size when it reports no meta.resolution (hud-python 0.4.x)
_SCROLL_Y = "lambda d, ctx: int(ctx.get('amount', 3)) * (1 if d == 'down' else -1 if d == 'up' else 0)"
_SCROLL_X = "lambda d, ctx: int(ctx.get('amount', 3)) * (1 if d == 'right' else -1 if d == 'left' else 0)"
_DRAG_PATH = "lambda p: [[int(p[0]), int(p[1])], [int(p[2]), int(p[3])]]"


def enum_values(schema: Any) -> tuple[Any, ...]:
    """The allowed values of a property (also inside `anyOf`), or () when it has no enum."""
    if not isinstance(schema, Mapping):
        return ()
    if isinstance(schema.get("enum"), list):
        return tuple(schema["enum"])
    for member in schema.get("anyOf") or schema.get("oneOf") or []:
        values = enum_values(member)
        if values:
            return values
    return ()


@dataclass(frozen=True, slots=True)
class ScreenSize:
    """The computer tool's coordinate space, from its `meta.resolution` (or HUD's default when it has none)."""

    width: int
    height: int
    reported: bool = True

    @property
    def centre(self) -> tuple[int, int]:
        """The middle of the screen, where `scroll` scrolls."""
        return self.width // 2, self.height // 2


def is_computer_tool(spec: ToolSpec) -> bool:
    """Whether a tool is HUD's `computer`: an `action` enum with click and screenshot (or the name) plus x and y."""
    properties = spec.input_schema.get("properties")
    if not isinstance(properties, Mapping) or not {"action", "x", "y"} <= set(properties):
        return False
    actions = enum_values(properties["action"])
    if actions:
        return {"click", "screenshot"} <= set(actions)
    # an older HudComputerTool (hud-python 0.4.12) types `action` as a plain string: trust the name then
    return spec.name == "computer" or (spec.name.endswith("_computer") and not is_vendor_computer(spec.name))


def screen_size(spec: ToolSpec) -> ScreenSize:
    """The computer tool's `meta.resolution`, or HUD's 1920x1080 default when it reports none."""
    resolution = (spec.meta or {}).get("resolution")
    if isinstance(resolution, Mapping):
        width, height = resolution.get("width"), resolution.get("height")
        if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
            return ScreenSize(width, height)
    return ScreenSize(*HUD_DEFAULT_SCREEN, reported=False)


def computer_actions(spec: ToolSpec, screen: ScreenSize) -> tuple[list[GeneratedAction], list[str]]:
    """The friendly actions the tool's action enum supports, and notes for the header."""
    properties = spec.input_schema.get("properties") or {}
    offered = set(enum_values(properties.get("action")))
    notes = []
    if offered:
        write_action = "write" if "write" in offered else "type" if "type" in offered else None
    else:
        write_action = "write"
        notes.append(
            f"{spec.name}: its action parameter lists no values, so type() sends action 'write' (hud >= 0.4.28); "
            "change it to 'type' for images built with an older hud"
        )
    x, y = screen.centre
    candidates = [
        _screenshot_action(spec.name),
        _click_action(spec.name, x, y),
        _double_click_action(spec.name, x, y) if "pattern" in properties else None,
        _type_action(spec.name, write_action) if write_action else None,
        _key_action(spec.name),
        _scroll_action(spec.name, x, y),
        _drag_action(spec.name, x, y),
        _wait_action(spec.name),
    ]
    actions = [
        action for action in candidates if action is not None and (not offered or action.mapping["action"] in offered)
    ]
    return actions, notes


def _screenshot_action(tool: str) -> GeneratedAction:
    mapping = {"_tool": tool, "action": "screenshot"}
    return GeneratedAction("screenshot", mapping, "screenshot()", "see the current screen", "screenshot()")


def _click_action(tool: str, x: int, y: int) -> GeneratedAction:
    mapping = {
        "_tool": tool,
        "_parser": FlowMapping({"positional": FlowList(["x", "y"])}),
        "action": "click",
        "x": FlowMapping({"from_arg": "x", "transform": "int"}),
        "y": FlowMapping({"from_arg": "y", "transform": "int"}),
        "button": FlowMapping({"from_arg": "button", "optional": True, "transform": "lower"}),
    }
    description = 'click at pixel coordinates; button="right" or "middle" for another button'
    return GeneratedAction(
        "click", mapping, "click(x: integer, y: integer, button?: string)", description, f"click({x}, {y})"
    )


def _double_click_action(tool: str, x: int, y: int) -> GeneratedAction:
    mapping = {
        "_tool": tool,
        "_parser": FlowMapping({"positional": FlowList(["x", "y"])}),
        "action": "click",
        "x": FlowMapping({"from_arg": "x", "transform": "int"}),
        "y": FlowMapping({"from_arg": "y", "transform": "int"}),
        "pattern": FlowList([100]),  # one more click 100 ms after the first: a double click
    }
    signature = "double_click(x: integer, y: integer)"
    return GeneratedAction(
        "double_click", mapping, signature, "double-click at pixel coordinates", f"double_click({x}, {y})"
    )


def _type_action(tool: str, write_action: str) -> GeneratedAction:
    mapping = {
        "_tool": tool,
        "_parser": FlowMapping({"positional": FlowList(["text"])}),
        "action": write_action,  # HUD renamed `type` to `write` in hud 0.4.28; this tool offers this one
        "text": FlowMapping({"from_arg": "text", "transform": "str"}),
    }
    description = "type text at the cursor; click into a text field first"
    return GeneratedAction("type", mapping, "type(text: string)", description, 'type("hello world")')


def _key_action(tool: str) -> GeneratedAction:
    mapping = {
        "_tool": tool,
        "_parser": FlowMapping({"positional": FlowList(["key"])}),
        "action": "press",
        "keys": FlowMapping({"from_arg": "key", "transform": "split_plus"}),  # "ctrl+a" -> ["ctrl", "a"]
    }
    description = 'press a key or a combination, such as "enter", "ctrl+a" or "escape"'
    return GeneratedAction("key", mapping, "key(key: string)", description, 'key("ctrl+a")')


def _scroll_action(tool: str, x: int, y: int) -> GeneratedAction:
    mapping = {
        "_tool": tool,
        "_parser": FlowMapping({"positional": FlowList(["direction", "amount"])}),
        "action": "scroll",
        "x": x,  # the screen centre
        "y": y,
        "scroll_y": {"from_arg": "direction", "use_context": True, "transform": _SCROLL_Y},
        "scroll_x": {"from_arg": "direction", "use_context": True, "transform": _SCROLL_X},
    }
    description = 'scroll "up", "down", "left" or "right" by amount wheel notches at the centre of the screen'
    signature = "scroll(direction: string, amount: integer = 3)"
    return GeneratedAction("scroll", mapping, signature, description, 'scroll("down", 3)')


def _drag_action(tool: str, x: int, y: int) -> GeneratedAction:
    mapping = {
        "_tool": tool,
        "_parser": FlowMapping({"positional": FlowList(["x1", "y1", "x2", "y2"])}),
        "action": "drag",
        "path": {"from_args": FlowList(["x1", "y1", "x2", "y2"]), "transform": _DRAG_PATH},
    }
    signature = "drag(x1: integer, y1: integer, x2: integer, y2: integer)"
    description = "press the mouse at (x1, y1), move to (x2, y2) and release"
    return GeneratedAction("drag", mapping, signature, description, f"drag({x // 2}, {y}, {x}, {y})")


def _wait_action(tool: str) -> GeneratedAction:
    mapping = {
        "_tool": tool,
        "_parser": FlowMapping({"positional": FlowList(["seconds"])}),
        "action": "wait",
        "time": FlowMapping({"from_arg": "seconds", "transform": "seconds_to_ms", "default": 1000}),  # wait() waits 1 s
    }
    return GeneratedAction("wait", mapping, "wait(seconds: number = 1)", "wait for the screen to change", "wait(2.5)")


def is_vendor_computer(name: str) -> bool:
    """Whether a tool is hud-browser's `anthropic_computer` or `openai_computer` (other schemas, same screen)."""
    return name.endswith(("anthropic_computer", "openai_computer"))
