"""HUD's `computer` actions over any `Screen`: arguments checked, keys translated, results worded as HUD words them.

HUD's `HudComputerTool` (hud-python 0.4.x) takes one `action` and the arguments that action needs. This module
reproduces its action set and its result texts (without the simulated executor's `[SIMULATED]` prefix), so a policy
trained against HUD's images reads the same feedback here:

| action                    | needs                            | text                                | shot |
|---------------------------|----------------------------------|-------------------------------------|------|
| `screenshot`              |                                  | (none)                              | yes  |
| `click`                   | x, y (else the mouse position)   | `Click at (x, y) with left button`  | yes  |
| `write` (old name `type`) | text; enter_after                | `Type 'hi'` (`followed by Enter`)   | yes  |
| `press`                   | keys, e.g. ["ctrl", "a"]         | `Press key combination: ctrl+a`     | yes  |
| `keydown` / `keyup`       | keys                             | `Key down: shift`                   | yes  |
| `scroll`                  | scroll_x/scroll_y notches; x, y  | `Scroll at (x, y) vertically by 3`  | yes  |
| `move`                    | x, y or offset_x/offset_y        | `Move mouse to (x, y)`              | yes  |
| `drag`                    | path of at least 2 points        | `Drag from (x1, y1) to (x2, y2)`    | yes  |
| `mouse_down`/`mouse_up`   | button                           | `Mouse down: left button`           | yes  |
| `hold_key`                | text (the key), duration (s)     | `Hold key 'shift' for 0.5 seconds`  | yes  |
| `wait`                    | time (ms)                        | `Waited 500ms`                      | no   |
| `position`                |                                  | `Mouse position: (x, y)`            | no   |
| `response`                | text                             | the text itself                     | no   |

A call that cannot run raises `ComputerError` with HUD's wording (`Unknown action: X`, `text parameter is required
for write`); the server turns it into HUD's error result. Coordinates are screen pixels (the screenshot's pixels);
the `Screen` maps them onto the page.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hud_vf_gym.environments.browser.keys import KEY_NAMES

__all__ = [
    "ACTIONS",
    "BUTTONS",
    "MAX_WAIT_MS",
    "ActionOutcome",
    "ComputerCall",
    "ComputerError",
    "Screen",
    "playwright_key",
    "run_action",
]

# HUD's actions in the order its schema lists them, plus `type`, the name `write` had before hud 0.4.28.
ACTIONS = (
    "click",
    "press",
    "keydown",
    "keyup",
    "write",
    "type",
    "scroll",
    "move",
    "wait",
    "drag",
    "response",
    "screenshot",
    "position",
    "hold_key",
    "mouse_down",
    "mouse_up",
)
BUTTONS = ("left", "right", "middle", "back", "forward")
MAX_WAIT_MS = 30_000  # a longer wait (or key hold) would run into the client's 60 s tool-call timeout
MAX_CLICKS = 5  # a click pattern longer than a quintuple click is a mistake, not a gesture


class ComputerError(Exception):
    """Raised when a `computer` call cannot run; the message is what HUD's tool says in that case."""


class Screen(Protocol):
    """What the actions drive: a pointer and a keyboard on a screen of known size, in screen pixels."""

    @property
    def size(self) -> tuple[int, int]:
        """The screen's width and height in pixels (the coordinate space of every action)."""
        ...

    @property
    def mouse_position(self) -> tuple[int, int]:
        """Where the pointer is, in screen pixels."""
        ...

    async def click(self, x: int, y: int, *, button: str, pattern: Sequence[int]) -> None:
        """Click `len(pattern) + 1` times at (x, y), pausing `pattern[i]` ms between clicks."""
        ...

    async def move(self, x: int, y: int) -> None:
        """Move the pointer to (x, y)."""
        ...

    async def mouse_down(self, button: str) -> None:
        """Press a mouse button where the pointer is."""
        ...

    async def mouse_up(self, button: str) -> None:
        """Release a mouse button where the pointer is."""
        ...

    async def drag(self, path: Sequence[tuple[int, int]]) -> None:
        """Press the left button at path[0], move through every point, release at path[-1]."""
        ...

    async def scroll(self, x: int, y: int, notches_x: int, notches_y: int) -> None:
        """Turn the mouse wheel at (x, y) by whole notches (positive: right and down)."""
        ...

    async def type_text(self, text: str) -> None:
        """Type text as key presses."""
        ...

    async def press(self, combination: str) -> None:
        """Press a Playwright key combination such as `Control+a`."""
        ...

    async def key_down(self, key: str) -> None:
        """Hold a Playwright key down."""
        ...

    async def key_up(self, key: str) -> None:
        """Release a Playwright key."""
        ...

    async def pause(self, milliseconds: int) -> None:
        """Wait, letting the page run."""
        ...


@dataclass(frozen=True, slots=True)
class ComputerCall:
    """One `computer` call's arguments, as HUD names them (all optional but `action`)."""

    action: str
    x: int | None = None
    y: int | None = None
    button: str | None = None
    pattern: tuple[int, ...] | None = None
    text: str | None = None
    keys: tuple[str, ...] | None = None
    enter_after: bool | None = None
    scroll_x: int | None = None
    scroll_y: int | None = None
    offset_x: int | None = None
    offset_y: int | None = None
    path: tuple[tuple[int, int], ...] | None = None
    time: int | None = None
    hold_keys: tuple[str, ...] | None = None
    duration: float | None = None

    @classmethod
    def from_arguments(cls, action: str, arguments: Mapping[str, Any]) -> ComputerCall:
        """Build a call from the tool's keyword arguments, normalising the list-valued ones.

        Raises:
            ComputerError: `keys`, `hold_keys`, `pattern` or `path` has a shape the tool cannot read.
        """
        values = {name: value for name, value in arguments.items() if value is not None}
        for name in ("keys", "hold_keys"):
            if name in values:
                values[name] = _key_list(name, values[name])
        if "pattern" in values:
            values["pattern"] = tuple(int(delay) for delay in values["pattern"])
        if "path" in values:
            values["path"] = _path(values["path"])
        return cls(action=action, **values)


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What a finished action reports: its text (None for a bare screenshot) and whether a screenshot follows."""

    text: str | None
    screenshot: bool


def _key_list(name: str, value: Any) -> tuple[str, ...]:
    """Accept HUD's list of key names, or one "ctrl+a" string as a convenience."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split("+") if part.strip()) or (value,)
    if isinstance(value, list | tuple) and all(isinstance(key, str) for key in value):
        return tuple(value)
    raise ComputerError(f"{name} must be a list of key names such as ['ctrl', 'a'], got {value!r}")


def _path(value: Any) -> tuple[tuple[int, int], ...]:
    """Read a drag path given as [[x, y], ...] (hud 0.4.x) or [{"x": x, "y": y}, ...] (later versions)."""
    points = []
    for point in value if isinstance(value, list | tuple) else [value]:
        if isinstance(point, Mapping) and "x" in point and "y" in point:
            points.append((int(point["x"]), int(point["y"])))
        elif isinstance(point, list | tuple) and len(point) == 2:
            points.append((int(point[0]), int(point[1])))
        else:
            raise ComputerError(f"path must be a list of [x, y] pairs or {{x, y}} objects, got point {point!r}")
    return tuple(points)


def playwright_key(name: str) -> str:
    """Translate one HUD key name (`ctrl`, `enter`, `pgdn`, `a`) into Playwright's (`Control`, `Enter`, ...).

    Raises:
        ComputerError: the name is neither one character nor a known key.
    """
    if len(name) == 1:
        return name
    mapped = KEY_NAMES.get(name.strip().lower())
    if mapped is None:
        known = ", ".join(sorted(KEY_NAMES))
        raise ComputerError(f"Unknown key: {name!r}; use one character or one of: {known}")
    return mapped


def _require(value: Any, parameter: str, action: str) -> Any:
    """Return a required argument, or fail with HUD's message for a missing one."""
    if value is None:
        raise ComputerError(f"{parameter} parameter is required for {action}")
    return value


def _check_point(screen: Screen, x: int, y: int) -> tuple[int, int]:
    """Refuse a point off the screen, naming the screen size, so the agent can correct itself."""
    width, height = screen.size
    if not (0 <= x < width and 0 <= y < height):
        raise ComputerError(f"Coordinates ({x}, {y}) are outside the {width}x{height} screen")
    return x, y


def _target(screen: Screen, call: ComputerCall) -> tuple[int, int]:
    """The point an action aims at: (x, y) when both are given, else the mouse position."""
    if call.x is None and call.y is None:
        return screen.mouse_position
    if call.x is None or call.y is None:
        raise ComputerError(f"x and y must be given together for {call.action} (got x={call.x}, y={call.y})")
    return _check_point(screen, call.x, call.y)


def _button(call: ComputerCall) -> str:
    button = call.button or "left"
    if button not in BUTTONS:
        raise ComputerError(f"Invalid button {button!r}; expected one of {', '.join(BUTTONS)}")
    return button


def _duration_ms(milliseconds: float, parameter: str) -> int:
    if not math.isfinite(milliseconds) or not 0 <= milliseconds <= MAX_WAIT_MS:
        raise ComputerError(f"{parameter} must be between 0 and {MAX_WAIT_MS} ms, got {milliseconds:g} ms")
    return round(milliseconds)


async def _with_held_keys(
    screen: Screen, hold_keys: tuple[str, ...] | None, act: Callable[[], Awaitable[None]]
) -> None:
    """Run `act` with `hold_keys` held down, releasing them even if it fails."""
    keys = [playwright_key(key) for key in hold_keys or ()]
    for key in keys:
        await screen.key_down(key)
    try:
        await act()
    finally:
        for key in reversed(keys):
            await screen.key_up(key)


def _held_suffix(call: ComputerCall) -> str:
    return f" while holding {list(call.hold_keys)}" if call.hold_keys else ""


async def _click(screen: Screen, call: ComputerCall) -> ActionOutcome:
    x, y = _target(screen, call)
    button = _button(call)
    pattern = call.pattern or ()
    if len(pattern) >= MAX_CLICKS:
        raise ComputerError(f"pattern may hold at most {MAX_CLICKS - 1} delays (a {MAX_CLICKS}-fold click)")
    for delay in pattern:
        _duration_ms(delay, "each pattern delay")
    await _with_held_keys(screen, call.hold_keys, lambda: screen.click(x, y, button=button, pattern=pattern))
    text = f"Click at ({x}, {y}) with {button} button"
    if pattern:
        text += f" (multi-click pattern: {list(pattern)})"
    return ActionOutcome(text + _held_suffix(call), screenshot=True)


async def _write(screen: Screen, call: ComputerCall) -> ActionOutcome:
    text = _require(call.text, "text", call.action)
    await screen.type_text(text)
    if call.enter_after:
        await screen.press("Enter")
    return ActionOutcome(f"Type '{text}'" + (" followed by Enter" if call.enter_after else ""), screenshot=True)


def _keys(call: ComputerCall) -> tuple[str, ...]:
    keys: tuple[str, ...] = _require(call.keys, "keys", call.action)
    if not keys:
        raise ComputerError(f"keys must name at least one key for {call.action}")
    return keys


async def _press(screen: Screen, call: ComputerCall) -> ActionOutcome:
    keys = _keys(call)
    await screen.press("+".join(playwright_key(key) for key in keys))
    return ActionOutcome(f"Press key combination: {'+'.join(keys)}", screenshot=True)


async def _keydown(screen: Screen, call: ComputerCall) -> ActionOutcome:
    keys = _keys(call)
    for key in keys:
        await screen.key_down(playwright_key(key))
    return ActionOutcome(f"Key down: {', '.join(keys)}", screenshot=True)


async def _keyup(screen: Screen, call: ComputerCall) -> ActionOutcome:
    keys = _keys(call)
    for key in keys:
        await screen.key_up(playwright_key(key))
    return ActionOutcome(f"Key up: {', '.join(keys)}", screenshot=True)


async def _scroll(screen: Screen, call: ComputerCall) -> ActionOutcome:
    x, y = _target(screen, call)
    notches_x, notches_y = call.scroll_x or 0, call.scroll_y or 0
    await _with_held_keys(screen, call.hold_keys, lambda: screen.scroll(x, y, notches_x, notches_y))
    text = f"Scroll at ({x}, {y})"
    if notches_x:
        text += f" horizontally by {notches_x}"
    if notches_y:
        text += f" vertically by {notches_y}"
    return ActionOutcome(text + _held_suffix(call), screenshot=True)


async def _move(screen: Screen, call: ComputerCall) -> ActionOutcome:
    if call.x is not None or call.y is not None:
        x, y = _target(screen, call)
        text = f"Move mouse to ({x}, {y})"
    elif call.offset_x is not None or call.offset_y is not None:
        start_x, start_y = screen.mouse_position
        x, y = _check_point(screen, start_x + (call.offset_x or 0), start_y + (call.offset_y or 0))
        text = f"Move mouse by offset ({call.offset_x or 0}, {call.offset_y or 0})"
    else:
        raise ComputerError("x and y (or offset_x/offset_y) parameters are required for move")
    await screen.move(x, y)
    return ActionOutcome(text, screenshot=True)


async def _drag(screen: Screen, call: ComputerCall) -> ActionOutcome:
    path = _require(call.path, "path", call.action)
    if len(path) < 2:
        raise ComputerError("Drag path must have at least 2 points")
    points = [_check_point(screen, x, y) for x, y in path]
    await _with_held_keys(screen, call.hold_keys, lambda: screen.drag(points))
    text = f"Drag from {points[0]} to {points[-1]}"
    if len(points) > 2:
        text += f" via {len(points) - 2} intermediate points"
    return ActionOutcome(text + _held_suffix(call), screenshot=True)


async def _mouse_down(screen: Screen, call: ComputerCall) -> ActionOutcome:
    button = _button(call)
    await screen.mouse_down(button)
    return ActionOutcome(f"Mouse down: {button} button", screenshot=True)


async def _mouse_up(screen: Screen, call: ComputerCall) -> ActionOutcome:
    button = _button(call)
    await screen.mouse_up(button)
    return ActionOutcome(f"Mouse up: {button} button", screenshot=True)


async def _hold_key(screen: Screen, call: ComputerCall) -> ActionOutcome:
    key_name = _require(call.text, "text", call.action)
    duration_s = _require(call.duration, "duration", call.action)
    milliseconds = _duration_ms(duration_s * 1000, "duration")
    key = playwright_key(key_name)
    await screen.key_down(key)
    try:
        await screen.pause(milliseconds)
    finally:
        await screen.key_up(key)
    return ActionOutcome(f"Hold key '{key_name}' for {duration_s} seconds", screenshot=True)


async def _wait(screen: Screen, call: ComputerCall) -> ActionOutcome:
    milliseconds = _duration_ms(_require(call.time, "time", call.action), "time")
    await screen.pause(milliseconds)
    return ActionOutcome(f"Waited {milliseconds}ms", screenshot=False)


async def _screenshot(screen: Screen, call: ComputerCall) -> ActionOutcome:
    return ActionOutcome(None, screenshot=True)


async def _position(screen: Screen, call: ComputerCall) -> ActionOutcome:
    x, y = screen.mouse_position
    return ActionOutcome(f"Mouse position: ({x}, {y})", screenshot=False)


async def _response(screen: Screen, call: ComputerCall) -> ActionOutcome:
    return ActionOutcome(_require(call.text, "text", call.action), screenshot=False)


_HANDLERS: dict[str, Callable[[Screen, ComputerCall], Awaitable[ActionOutcome]]] = {
    "click": _click,
    "press": _press,
    "keydown": _keydown,
    "keyup": _keyup,
    "write": _write,
    "type": _write,
    "scroll": _scroll,
    "move": _move,
    "wait": _wait,
    "drag": _drag,
    "response": _response,
    "screenshot": _screenshot,
    "position": _position,
    "hold_key": _hold_key,
    "mouse_down": _mouse_down,
    "mouse_up": _mouse_up,
}


async def run_action(screen: Screen, call: ComputerCall) -> ActionOutcome:
    """Run one `computer` action on `screen` and say what was done.

    Raises:
        ComputerError: an unknown action, a missing or bad argument, or a point off the screen.
    """
    handler = _HANDLERS.get(call.action)
    if handler is None:
        raise ComputerError(f"Unknown action: {call.action}")
    return await handler(screen, call)
