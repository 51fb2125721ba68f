"""The browser MCP server: HUD's `computer` tool on a headless Chromium, our HTML tasks and MiniWoB++, graded.

## Description

A stdio MCP server named `browser`. One process drives one headless Chromium (Playwright, launched while the client
initialises); every `setup` opens the task in a fresh browser context, so nothing leaks from one task to the next and
the same process can serve one rollout after another. The page fills a `--width` x `--height` screen (1280x800 by
default), which is also the size of every screenshot and the coordinate space of every action. Nothing reaches the
network: pages come from memory or from the installed `miniwob` package. MiniWoB++ pages are drawn at twice their
size (the 160x210 task box fills 320x420 screen pixels, with readable text); coordinates are always screen pixels.

Run it with `python -m hud_vf_gym.environments.browser [--width 1280] [--height 800] [--observation image]`.

## Tools

- `computer(action, ...)`: HUD's computer tool, argument for argument (see `computer.py` for every action):
  `screenshot`; `click(x, y, button, pattern)`; `write(text, enter_after)` and its pre-0.4.28 name `type`;
  `press(keys)`; `keydown`/`keyup(keys)`; `scroll(x, y, scroll_x, scroll_y)` in wheel notches; `move(x, y |
  offset_x, offset_y)`; `drag(path)`; `mouse_down`/`mouse_up(button)`; `hold_key(text, duration)`; `wait(time)`
  in milliseconds; `position`; `response(text)`. The tool's `meta.resolution` is `{width, height}` of the screen.
  One argument HUD's tool lacks: `observation` ("image", "text" or "both") overrides the server's
  `--observation` for this call, so a config can ask for text without a different server.
- `setup(name, arguments)`: hub. `open_task(task, seed=0)` opens one of our tasks (`click-button`, `enter-text`,
  `select-option`, `tick-checkboxes`, `scroll-to-find`, `log-in`, `edit-cell`, `triage-inbox`, `fill-form`) or
  a MiniWoB++ task (`miniwob/click-test`, any page of the installed package); the same task and seed give the same
  page. `load_html(html, goal="")` shows a page of your own, for the generic checks.
- `evaluate(name, arguments)`: hub. `task_reward()` grades the open task; `page_contains(text,
  case_sensitive=True)` and `element_value_equals(selector, value)` are generic checks on any page.
- Resources `file:///setup/functions` and `file:///evaluate/functions` list each hub's function names as JSON.

## Observations

- Most actions answer with HUD's action text (`Click at (640, 400) with left button`) and a PNG screenshot taken
  after the page has painted; `screenshot` answers with the image alone; `wait`, `position` and `response` with
  text alone.
- With `--observation text` (or `observation="text"`), every screenshot is replaced by a text description of the
  screen: the page's visible text and its clickable elements, each with its box and centre in screen pixels
  (see `describe.py`). `both` sends the screenshot and the description.
- A call that cannot run is an MCP error result (`isError: true`) in HUD's words:
  `Error calling tool 'computer': Unknown action: jump`, `... text parameter is required for write`.
- `setup` answers with the task's instruction (`Goal: ...`), plus the text description in the text modes.
- `evaluate` answers with HUD's EvaluationResult `{reward, done, content, info, isError}` as `structuredContent`
  and as one text block holding the same JSON.

## Rewards

- Our tasks: 1 for exactly the asked result, else 0 (`pages.py` says what decides each task); `done` is true once
  the agent has committed (clicked, submitted, edited).
- MiniWoB++: `max(0, raw reward)` once the page ends the episode (raw rewards are in [-1, 1], without MiniWoB's time
  penalty); `info.raw_reward` keeps the raw value. 0 and `done: false` before the episode ends.
- `page_contains` and `element_value_equals`: 1 or 0.

## Episode end

The server never ends an episode; the client decides when to evaluate. A MiniWoB++ page keeps its final state and
reward after the episode ends (later clicks change nothing); our pages lock a form once it is submitted.

## Arguments

- `--width`, `--height`: the screen in pixels (default 1280x800).
- `--observation {image,text,both}`: what follows an action (default `image`, as HUD).
- `--chromium PATH`: the browser binary (default `$HUD_VF_GYM_CHROMIUM`, then /usr/bin/chromium, then PATH).
- `--marker TEXT`: ignored; lets tests and benchmarks find this process by its command line.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from mcp.types import CallToolResult
from pydantic import Field

from hud_vf_gym.environments import SETUP_RESETS_STATE_META
from hud_vf_gym.environments.browser.computer import ACTIONS, ComputerCall, ComputerError
from hud_vf_gym.environments.browser.session import (
    DEFAULT_HEIGHT,
    DEFAULT_WIDTH,
    OBSERVATIONS,
    BrowserSession,
    ObservationMode,
    ServerSettings,
    computer_error,
    first_line,
    playwright_errors,
)
from hud_vf_gym.environments.hub import (
    ARGUMENTS_DESCRIPTION,
    NAME_DESCRIPTION,
    Hub,
    HubArguments,
    HubFunction,
    evaluation_result,
    serve_function_lists,
)
from hud_vf_gym.environments.stdio import run_stdio
from hud_vf_gym.runtime import mcp_compat

if TYPE_CHECKING:
    from hud_vf_gym.runtime.mcp_compat import MCPServer

__all__ = ["EVALUATE_HUB", "SETUP_HUB", "create_server", "main"]

logger = logging.getLogger(__name__)

SERVER_NAME = "browser"


# -- hubs ---------------------------------------------------------------------------------------------------------


class _OpenTaskArguments(HubArguments):
    task: str
    seed: int = 0


class _LoadHtmlArguments(HubArguments):
    html: str
    goal: str = ""


class _NoArguments(HubArguments):
    pass


class _PageContainsArguments(HubArguments):
    text: str
    case_sensitive: bool = True


class _ElementValueArguments(HubArguments):
    selector: str
    value: str


async def _run_open_task(session: BrowserSession, arguments: _OpenTaskArguments) -> CallToolResult:
    return await session.open_task(arguments.task, arguments.seed)


async def _run_load_html(session: BrowserSession, arguments: _LoadHtmlArguments) -> CallToolResult:
    return await session.load_html(arguments.html, arguments.goal)


async def _run_task_reward(session: BrowserSession, arguments: _NoArguments) -> CallToolResult:
    return evaluation_result(await session.task_reward())


async def _run_page_contains(session: BrowserSession, arguments: _PageContainsArguments) -> CallToolResult:
    return evaluation_result(await session.page_contains(arguments.text, arguments.case_sensitive))


async def _run_element_value(session: BrowserSession, arguments: _ElementValueArguments) -> CallToolResult:
    return evaluation_result(await session.element_value_equals(arguments.selector, arguments.value))


def _describe_failure(exc: Exception) -> str | None:
    """Word the failures a hub function may meet; None for anything else (a server bug, left to the SDK)."""
    if isinstance(exc, KeyError):  # an unknown task name; the message lists the valid ones
        return f"failed: {exc.args[0]}"
    if isinstance(exc, ImportError):  # DependencyNotInstalled: no Playwright, no Chromium or no miniwob, with the fix
        return f"failed: {exc}"
    if isinstance(exc, playwright_errors()):  # Playwright is imported by now: the function reached the browser
        return f"failed in the browser: {first_line(str(exc))}"
    return None


SETUP_HUB: Hub[BrowserSession] = Hub(
    "setup",
    {
        "load_html": HubFunction(_LoadHtmlArguments, _run_load_html),
        "open_task": HubFunction(_OpenTaskArguments, _run_open_task),
    },
    describe_failure=_describe_failure,
)
EVALUATE_HUB: Hub[BrowserSession] = Hub(
    "evaluate",
    {
        "element_value_equals": HubFunction(_ElementValueArguments, _run_element_value),
        "page_contains": HubFunction(_PageContainsArguments, _run_page_contains),
        "task_reward": HubFunction(_NoArguments, _run_task_reward),
    },
    describe_failure=_describe_failure,
)


# -- the server ---------------------------------------------------------------------------------------------------

_COMPUTER_DESCRIPTION = "Control computer with mouse, keyboard, and screenshots"  # HUD's description, verbatim


def create_server(settings: ServerSettings) -> MCPServer:
    """Build the MCP server for these settings (the screen size goes into the computer tool's meta)."""
    session = BrowserSession(settings)

    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[None]:
        session.start()
        try:
            yield
        finally:
            await session.close()

    # stdout carries the protocol, so the SDK's logging goes to stderr, and only errors by default.
    mcp = mcp_compat.create_server(SERVER_NAME, log_level="ERROR", lifespan=lifespan)
    resolution = {"resolution": {"width": settings.width, "height": settings.height}}

    @mcp.tool(title="Computer Control", description=_COMPUTER_DESCRIPTION, meta=resolution)
    async def computer(
        action: Annotated[
            str,
            Field(description="The action name (click, press, write, ...)", json_schema_extra={"enum": list(ACTIONS)}),
        ],
        x: Annotated[int | None, Field(description="X coordinate for click/move/scroll actions")] = None,
        y: Annotated[int | None, Field(description="Y coordinate for click/move/scroll actions")] = None,
        button: Annotated[str | None, Field(description="Mouse button: left, right, middle, back, forward")] = None,
        pattern: Annotated[
            list[int] | None, Field(description="Delays in ms between multi-clicks ([100]: double)")
        ] = None,
        text: Annotated[str | None, Field(description="Text for write/response actions, the key for hold_key")] = None,
        keys: Annotated[list[str] | None, Field(description="Keys for press/keydown/keyup, e.g. ['ctrl', 'a']")] = None,
        enter_after: Annotated[bool | None, Field(description="Whether to press Enter after typing")] = None,
        scroll_x: Annotated[int | None, Field(description="Horizontal scroll in notches (positive = right)")] = None,
        scroll_y: Annotated[int | None, Field(description="Vertical scroll in notches (positive = down)")] = None,
        offset_x: Annotated[int | None, Field(description="X offset for relative move")] = None,
        offset_y: Annotated[int | None, Field(description="Y offset for relative move")] = None,
        path: Annotated[list[Any] | None, Field(description="Drag path: [[x, y], ...] or [{x, y}, ...]")] = None,
        time: Annotated[int | None, Field(description="Time in milliseconds for wait action")] = None,
        hold_keys: Annotated[list[str] | None, Field(description="Keys to hold during the action")] = None,
        duration: Annotated[float | None, Field(description="Duration in seconds for hold_key action")] = None,
        observation: Annotated[
            ObservationMode | None, Field(description="Override the server's observation mode: image, text or both")
        ] = None,
    ) -> CallToolResult:
        """Control computer with mouse, keyboard, and screenshots."""
        arguments = {
            "x": x, "y": y, "button": button, "pattern": pattern, "text": text, "keys": keys,
            "enter_after": enter_after, "scroll_x": scroll_x, "scroll_y": scroll_y, "offset_x": offset_x,
            "offset_y": offset_y, "path": path, "time": time, "hold_keys": hold_keys, "duration": duration,
        }  # fmt: skip
        try:
            call = ComputerCall.from_arguments(action, arguments)
        except (ComputerError, TypeError, ValueError) as exc:
            return computer_error(str(exc))
        return await session.computer(call, observation)

    # Every setup function opens a new browser context (fresh cookies, storage and page), so one server may serve
    # many rollouts.
    @mcp.tool(meta={SETUP_RESETS_STATE_META: True})
    async def setup(
        name: Annotated[str, Field(description=NAME_DESCRIPTION, json_schema_extra={"enum": SETUP_HUB.names})],
        arguments: Annotated[dict[str, Any] | str, Field(description=ARGUMENTS_DESCRIPTION)] = "",
    ) -> CallToolResult:
        """Run a setup function by name: `open_task` opens a task by name and seed, `load_html` shows a page."""
        return await SETUP_HUB.call(session, name, arguments)

    @mcp.tool()
    async def evaluate(
        name: Annotated[str, Field(description=NAME_DESCRIPTION, json_schema_extra={"enum": EVALUATE_HUB.names})],
        arguments: Annotated[dict[str, Any] | str, Field(description=ARGUMENTS_DESCRIPTION)] = "",
    ) -> CallToolResult:
        """Run an evaluate function by name: `task_reward`, `page_contains` or `element_value_equals`."""
        return await EVALUATE_HUB.call(session, name, arguments)

    serve_function_lists(mcp, SETUP_HUB, EVALUATE_HUB)
    return mcp


def _make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hud_vf_gym.environments.browser",
        allow_abbrev=False,
        description="Serve a headless browser with HUD's computer tool, our HTML tasks and MiniWoB++ over stdio MCP.",
    )
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="Screen width in pixels (default 1280).")
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="Screen height in pixels (default 800).")
    parser.add_argument(
        "--observation",
        choices=OBSERVATIONS,
        default="image",
        help="What follows an action: a screenshot (image, as HUD), a text description (text) or both.",
    )
    parser.add_argument("--chromium", default=None, help="The Chromium binary (default: $HUD_VF_GYM_CHROMIUM, ...).")
    parser.add_argument("--marker", default=None, help="Ignored; lets tests find this process by its command line.")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve over stdio until the client closes stdin."""
    parser = _make_parser()
    options = parser.parse_args(argv)
    if options.width < 1 or options.height < 1:
        parser.error(f"--width and --height must be positive, got {options.width}x{options.height}")
    settings = ServerSettings(options.width, options.height, options.observation, options.chromium)
    logger.info("browser server: %sx%s, %s observations", settings.width, settings.height, settings.observation)
    run_stdio(create_server(settings))
