"""Tests for the browser environment's pure parts: task pages and checks, computer actions, the text description."""

from __future__ import annotations

import html
import importlib.util
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hud_vf_gym.environments.browser import computer
from hud_vf_gym.environments.browser.browser import CHROMIUM_ENV, Chromium, find_chromium
from hud_vf_gym.environments.browser.computer import ComputerCall, ComputerError, playwright_key, run_action
from hud_vf_gym.environments.browser.describe import format_description
from hud_vf_gym.environments.browser.miniwob import (
    MINIWOB_PREFIX,
    miniwob_evaluation,
    miniwob_html_dir,
    miniwob_task_names,
    miniwob_url,
)
from hud_vf_gym.environments.browser.pages import PAGE_TASKS, build_page_task, check_page_task
from hud_vf_gym.environments.browser.tasks import element_value_equals, page_contains, render_page
from hud_vf_gym.errors import DependencyNotInstalled

SEEDS = range(5)
requires_miniwob = pytest.mark.skipif(
    importlib.util.find_spec("miniwob") is None, reason='needs pip install "hud-vf-gym[browser]"'
)


def snapshot(state: dict[str, Any] | None = None, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"state": state or {}, "fields": fields or {}}


def submitted(**values: Any) -> dict[str, Any]:
    return snapshot({"submitted": values})


# -- pages ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PAGE_TASKS), ids=sorted(PAGE_TASKS))
def test_build_page_task_same_seed_gives_same_page(name: str) -> None:
    first, again = build_page_task(name, 3), build_page_task(name, 3)
    assert first == again
    assert first.goal and html.escape(first.goal) in first.html  # the goal banner
    # different seeds give different variants
    assert len({build_page_task(name, seed).html for seed in SEEDS}) > 1


@pytest.mark.parametrize("name", sorted(PAGE_TASKS), ids=sorted(PAGE_TASKS))
def test_check_page_task_untouched_page_scores_zero_and_not_done(name: str) -> None:
    task = build_page_task(name, 0)
    untouched_cells = {f"cell-{cell}": {"value": value} for cell, value in task.expected.get("cells", {}).items()}
    result = check_page_task(task, snapshot(fields=untouched_cells))
    assert (result["reward"], result["done"], result["isError"]) == (0.0, False, False)
    assert result["info"]["task"] == name


def test_build_page_task_unknown_name_lists_the_tasks() -> None:
    with pytest.raises(KeyError, match=re.escape("unknown task 'click-buton'; expected one of click-button, ")):
        build_page_task("click-buton")


def test_page_task_click_button_first_click_decides() -> None:
    task = build_page_task("click-button", 1)
    target = task.expected["target"]
    assert task.goal == f'Click the "{target}" button.'
    assert check_page_task(task, snapshot({"clicked": target}))["reward"] == 1.0
    wrong = check_page_task(task, snapshot({"clicked": "nope"}))
    assert (wrong["reward"], wrong["done"]) == (0.0, True)
    assert wrong["content"] == f"Clicked the button 'nope'; the task asked for {target!r}"


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("enter-text", lambda expected: {"answer": expected["answer"]}),
        ("select-option", lambda expected: {"choice": expected["choice"]}),
        ("tick-checkboxes", lambda expected: {"ticked": expected["ticked"]}),
        ("log-in", lambda expected: {"username": expected["username"], "password": expected["password"]}),
        ("fill-form", lambda expected: dict(expected)),
    ],
    ids=["enter-text", "select-option", "tick-checkboxes", "log-in", "fill-form"],
)
def test_page_task_form_submission_is_checked_field_by_field(name: str, answer: Any) -> None:
    task = build_page_task(name, 2)
    right = answer(task.expected)
    assert check_page_task(task, submitted(**right))["reward"] == 1.0
    key = next(iter(right))
    wrong = check_page_task(task, submitted(**{**right, key: "something else"}))
    assert (wrong["reward"], wrong["done"]) == (0.0, True)
    assert wrong["content"].startswith(f"Submitted, but {key} is 'something else', expected ")


def test_page_task_tick_checkboxes_extra_box_fails() -> None:
    task = build_page_task("tick-checkboxes", 0)
    assert check_page_task(task, submitted(ticked=sorted([*task.expected["ticked"], "Zzz"])))["reward"] == 0.0


def test_page_task_edit_cell_needs_the_cell_changed_and_the_rest_kept() -> None:
    task = build_page_task("edit-cell", 4)
    cells, cell, value = task.expected["cells"], task.expected["cell"], task.expected["value"]
    assert task.goal.startswith(f"Change cell {cell} from {cells[cell]} to {value};")
    fields = {f"cell-{name}": {"value": text, "checked": False} for name, text in cells.items()}
    right = {**fields, f"cell-{cell}": {"value": f" {value} "}}  # surrounding spaces do not matter
    assert check_page_task(task, snapshot(fields=right))["reward"] == 1.0
    other = next(name for name in cells if name != cell)
    broken = check_page_task(task, snapshot(fields={**right, f"cell-{other}": {"value": "0"}}))
    assert (broken["reward"], broken["done"]) == (0.0, True)
    assert broken["info"]["wrong_cells"] == [other]


def test_page_task_triage_inbox_needs_exact_archive_and_star_sets() -> None:
    task = build_page_task("triage-inbox", 0)
    archive, star = task.expected["archive"], task.expected["star"]
    assert len(archive) == 2 and len(star) == 1
    right = snapshot({"archived": list(reversed(archive)), "starred": star})
    assert check_page_task(task, right)["reward"] == 1.0
    too_much = snapshot({"archived": [*archive, star[0]], "starred": star})
    assert check_page_task(task, too_much)["reward"] == 0.0


def test_page_task_scroll_to_find_target_starts_below_the_screen() -> None:
    for seed in SEEDS:
        task = build_page_task("scroll-to-find", seed)
        labels = re.findall(r'data-label="([^"]+)"', task.html)
        assert labels.index(task.expected["target"]) >= 22


def test_render_page_escapes_the_goal() -> None:
    page = render_page("t", 'Click "<b>"', "<p>body</p>")
    assert "Click &quot;&lt;b&gt;&quot;" in page
    assert "window.hud" in page and "<p>body</p>" in page


def test_page_contains_and_element_value_equals() -> None:
    assert page_contains("Welcome, maya!", "Welcome")["reward"] == 1.0
    assert page_contains("Welcome, maya!", "welcome")["reward"] == 0.0
    assert page_contains("Welcome, maya!", "welcome", case_sensitive=False)["reward"] == 1.0
    assert element_value_equals("#a", "42", "42") == {
        "reward": 1.0,
        "done": True,
        "content": "The value of '#a' equals '42' ('42')",
        "info": {"selector": "#a", "expected": "42", "actual": "42"},
        "isError": False,
    }
    missing = element_value_equals("#b", None, "42")
    assert (missing["reward"], missing["content"]) == (0.0, "No element matches '#b'")


# -- MiniWoB++ ------------------------------------------------------------------------------------------------------


@requires_miniwob
def test_miniwob_package_pages_are_found_not_copied() -> None:
    folder = miniwob_html_dir()
    assert folder.parts[-3:] == ("miniwob", "html", "miniwob")
    assert "site-packages" in str(folder) or "dist-packages" in str(folder)
    assert len(miniwob_task_names()) >= 100
    assert miniwob_url("miniwob/click-test") == (folder / "click-test.html").as_uri()
    assert miniwob_url("click-test") == miniwob_url(MINIWOB_PREFIX + "click-test")


@requires_miniwob
def test_miniwob_url_unknown_task_suggests_close_names() -> None:
    with pytest.raises(
        KeyError, match=re.escape("MiniWoB++ has no task 'click-tset'; did you mean miniwob/click-test")
    ):
        miniwob_url("miniwob/click-tset")
    with pytest.raises(KeyError, match="MiniWoB\\+\\+ has no task '../core/core'"):
        miniwob_url("miniwob/../core/core")


@pytest.mark.parametrize(
    ("result", "reward", "done"),
    [
        ({"done": False, "raw_reward": 0, "reason": None}, 0.0, False),
        ({"done": True, "raw_reward": 1, "reason": None}, 1.0, True),
        ({"done": True, "raw_reward": 0.5, "reason": "partial"}, 0.5, True),
        ({"done": True, "raw_reward": -1, "reason": "wrong"}, 0.0, True),
    ],
    ids=["not-done", "solved", "partial", "wrong"],
)
def test_miniwob_evaluation_is_raw_reward_floored_at_zero(result: dict[str, Any], reward: float, done: bool) -> None:
    evaluation = miniwob_evaluation("miniwob/click-test", 3, result)
    assert (evaluation["reward"], evaluation["done"], evaluation["isError"]) == (reward, done, False)
    assert evaluation["info"]["raw_reward"] == float(result["raw_reward"])


# -- missing dependencies -------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_chromium_start_without_playwright_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "playwright.async_api", None)  # makes `import playwright.async_api` fail
    with pytest.raises(DependencyNotInstalled, match=re.escape('pip install "hud-vf-gym[browser]"')):
        await Chromium().start()


def test_miniwob_html_dir_without_the_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    miniwob_html_dir.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    try:
        message = 'MiniWoB++ tasks need the miniwob package: pip install "hud-vf-gym[browser]"'
        with pytest.raises(DependencyNotInstalled, match=re.escape(message)):
            miniwob_html_dir()
    finally:
        miniwob_html_dir.cache_clear()


# -- Chromium discovery ---------------------------------------------------------------------------------------------


def test_find_chromium_configured_path_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no-chromium"
    expected = f"{CHROMIUM_ENV}={str(missing)!r} is not an executable file"
    with pytest.raises(DependencyNotInstalled, match=re.escape(expected)):
        find_chromium({CHROMIUM_ENV: str(missing)})


def test_find_chromium_configured_path_wins(tmp_path: Path) -> None:
    binary = tmp_path / "chromium"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert find_chromium({CHROMIUM_ENV: str(binary)}) == str(binary)


# -- computer actions on a recording screen -------------------------------------------------------------------------


class RecordingScreen:
    """A `computer.Screen` that records what it is asked to do."""

    def __init__(self, size: tuple[int, int] = (1280, 800)) -> None:
        self.size = size
        self.mouse_position = (size[0] // 2, size[1] // 2)
        self.calls: list[tuple[Any, ...]] = []

    async def click(self, x: int, y: int, *, button: str, pattern: Sequence[int]) -> None:
        self.calls.append(("click", x, y, button, tuple(pattern)))
        self.mouse_position = (x, y)

    async def move(self, x: int, y: int) -> None:
        self.calls.append(("move", x, y))
        self.mouse_position = (x, y)

    async def mouse_down(self, button: str) -> None:
        self.calls.append(("down", button))

    async def mouse_up(self, button: str) -> None:
        self.calls.append(("up", button))

    async def drag(self, path: Sequence[tuple[int, int]]) -> None:
        self.calls.append(("drag", tuple(path)))

    async def scroll(self, x: int, y: int, notches_x: int, notches_y: int) -> None:
        self.calls.append(("scroll", x, y, notches_x, notches_y))

    async def type_text(self, text: str) -> None:
        self.calls.append(("type", text))

    async def press(self, combination: str) -> None:
        self.calls.append(("press", combination))

    async def key_down(self, key: str) -> None:
        self.calls.append(("key_down", key))

    async def key_up(self, key: str) -> None:
        self.calls.append(("key_up", key))

    async def pause(self, milliseconds: int) -> None:
        self.calls.append(("pause", milliseconds))


async def act(action: str, **arguments: Any) -> tuple[computer.ActionOutcome, list[tuple[Any, ...]]]:
    screen = RecordingScreen()
    outcome = await run_action(screen, ComputerCall.from_arguments(action, arguments))
    return outcome, screen.calls


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("action", "arguments", "text", "screenshot", "calls"),
    [
        ("screenshot", {}, None, True, []),
        ("click", {"x": 10, "y": 20}, "Click at (10, 20) with left button", True, [("click", 10, 20, "left", ())]),
        (
            "click",
            {"x": 5, "y": 6, "button": "right", "pattern": [100]},
            "Click at (5, 6) with right button (multi-click pattern: [100])",
            True,
            [("click", 5, 6, "right", (100,))],
        ),
        ("click", {}, "Click at (640, 400) with left button", True, [("click", 640, 400, "left", ())]),
        ("write", {"text": "hi"}, "Type 'hi'", True, [("type", "hi")]),
        (
            "type",
            {"text": "hi", "enter_after": True},
            "Type 'hi' followed by Enter",
            True,
            [("type", "hi"), ("press", "Enter")],
        ),
        ("press", {"keys": ["ctrl", "a"]}, "Press key combination: ctrl+a", True, [("press", "Control+a")]),
        ("press", {"keys": ["Return"]}, "Press key combination: Return", True, [("press", "Enter")]),
        ("keydown", {"keys": ["shift"]}, "Key down: shift", True, [("key_down", "Shift")]),
        ("keyup", {"keys": ["shift"]}, "Key up: shift", True, [("key_up", "Shift")]),
        (
            "scroll",
            {"x": 640, "y": 400, "scroll_y": 3},
            "Scroll at (640, 400) vertically by 3",
            True,
            [("scroll", 640, 400, 0, 3)],
        ),
        ("move", {"x": 1, "y": 2}, "Move mouse to (1, 2)", True, [("move", 1, 2)]),
        ("move", {"offset_x": 10}, "Move mouse by offset (10, 0)", True, [("move", 650, 400)]),
        (
            "drag",
            {"path": [[1, 2], {"x": 3, "y": 4}, [5, 6]]},
            "Drag from (1, 2) to (5, 6) via 1 intermediate points",
            True,
            [("drag", ((1, 2), (3, 4), (5, 6)))],
        ),
        ("mouse_down", {}, "Mouse down: left button", True, [("down", "left")]),
        ("mouse_up", {"button": "middle"}, "Mouse up: middle button", True, [("up", "middle")]),
        (
            "hold_key",
            {"text": "shift", "duration": 0.25},
            "Hold key 'shift' for 0.25 seconds",
            True,
            [("key_down", "Shift"), ("pause", 250), ("key_up", "Shift")],
        ),
        ("wait", {"time": 500}, "Waited 500ms", False, [("pause", 500)]),
        ("position", {}, "Mouse position: (640, 400)", False, []),
        ("response", {"text": "the answer"}, "the answer", False, []),
    ],
    ids=[
        "screenshot",
        "click",
        "double-right-click",
        "click-in-place",
        "write",
        "type-enter",
        "press-combination",
        "press-alias",
        "keydown",
        "keyup",
        "scroll",
        "move",
        "move-offset",
        "drag",
        "mouse-down",
        "mouse-up",
        "hold-key",
        "wait",
        "position",
        "response",
    ],  # fmt: skip
)
async def test_run_action_does_and_says_what_hud_does(
    action: str, arguments: dict[str, Any], text: str | None, screenshot: bool, calls: list[tuple[Any, ...]]
) -> None:
    outcome, recorded = await act(action, **arguments)
    assert (outcome.text, outcome.screenshot) == (text, screenshot)
    assert recorded == calls


@pytest.mark.anyio
async def test_run_action_hold_keys_wrap_the_click() -> None:
    outcome, recorded = await act("click", x=1, y=1, hold_keys=["ctrl"])
    assert recorded == [("key_down", "Control"), ("click", 1, 1, "left", ()), ("key_up", "Control")]
    assert outcome.text == "Click at (1, 1) with left button while holding ['ctrl']"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("action", "arguments", "message"),
    [
        ("jump", {}, "Unknown action: jump"),
        ("write", {}, "text parameter is required for write"),
        ("type", {}, "text parameter is required for type"),
        ("press", {}, "keys parameter is required for press"),
        ("wait", {}, "time parameter is required for wait"),
        ("drag", {"path": [[1, 1]]}, "Drag path must have at least 2 points"),
        ("click", {"x": 1280, "y": 10}, "Coordinates (1280, 10) are outside the 1280x800 screen"),
        ("click", {"x": 10}, "x and y must be given together for click (got x=10, y=None)"),
        ("click", {"x": 1, "y": 1, "button": "thumb"}, "Invalid button 'thumb'; expected one of left, right, middle"),
        ("wait", {"time": 60_000}, "time must be between 0 and 30000 ms, got 60000 ms"),
        ("move", {}, "x and y (or offset_x/offset_y) parameters are required for move"),
    ],
    ids=[
        "unknown-action",
        "write-no-text",
        "type-no-text",
        "press-no-keys",
        "wait-no-time",
        "short-drag",
        "off-screen",
        "half-point",
        "bad-button",
        "long-wait",
        "move-nowhere",
    ],
)
async def test_run_action_refuses_what_cannot_run(action: str, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ComputerError, match=re.escape(message)):
        await act(action, **arguments)


def test_playwright_key_translates_hud_names() -> None:
    assert [playwright_key(name) for name in ("ctrl", "ENTER", "esc", "pgdn", "f5", "a", "+")] == [
        "Control",
        "Enter",
        "Escape",
        "PageDown",
        "F5",
        "a",
        "+",
    ]
    with pytest.raises(ComputerError, match=re.escape("Unknown key: 'hyper'; use one character or one of: ")):
        playwright_key("hyper")


def test_computer_call_accepts_a_plus_joined_key_string() -> None:
    assert ComputerCall.from_arguments("press", {"keys": "ctrl+shift+t"}).keys == ("ctrl", "shift", "t")
    with pytest.raises(ComputerError, match=re.escape("path must be a list of [x, y] pairs or {x, y} objects")):
        ComputerCall.from_arguments("drag", {"path": [[1, 2, 3]]})


# -- the text description -------------------------------------------------------------------------------------------


def test_format_description_scales_boxes_and_lists_state() -> None:
    description = {
        "title": "Login",
        "width": 640,
        "height": 400,
        "scroll_x": 0,
        "scroll_y": 100,
        "page_width": 640,
        "page_height": 1000,
        "texts": [{"text": 'Say "hi"', "box": {"x": 10, "y": 5, "w": 50.4, "h": 10}}],
        "elements": [
            {"role": "textbox", "label": "Username", "box": {"x": 10, "y": 20, "w": 100, "h": 20}, "value": "ann",
             "focused": True, "covered": False},
            {"role": "checkbox", "label": "Remember", "box": {"x": 0, "y": 50, "w": 10, "h": 10}, "checked": False,
             "covered": True},
            {"role": "select", "label": "", "box": {"x": 0, "y": 80, "w": 60, "h": 20}, "value": "b",
             "options": ["a", "b"], "covered": False},
        ],
    }  # fmt: skip
    assert format_description(description, zoom=2.0).splitlines() == [
        'Page "Login": the screen (1280x800) shows y 200-1000 of a 1280x2000 page; scroll down for more and scroll '
        "up for the top.",
        "Text on screen (left, top; width x height):",
        '  "Say \\"hi\\"" at (20, 10) 101x20',
        "Clickable elements on screen (click the centre):",
        '  [1] textbox "Username" centre (120, 60) size 200x40 value="ann" focused',
        '  [2] checkbox "Remember" centre (10, 110) size 20x20 not-checked covered',
        '  [3] select "" centre (60, 180) size 120x40 value="b" options="a, b"',
    ]


def test_format_description_empty_page() -> None:
    empty = {"title": "", "width": 1280, "height": 800, "scroll_x": 0, "scroll_y": 0, "page_width": 1280,
             "page_height": 800, "texts": [], "elements": []}  # fmt: skip
    assert format_description(empty) == (
        'Page "": the screen (1280x800) shows y 0-800 of a 1280x800 page.\n'
        "No text on screen.\nNo clickable elements on screen."
    )
