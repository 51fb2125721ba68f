"""The browser server's state and operations, free of MCP wiring: one `BrowserSession` per server process.

The session owns the browser (launched in the background when the server starts), the open tab (a fresh browser
context per setup) and the open task. Its methods are what the server's tools call: `open_task` and `load_html`
(setup), `computer` (HUD's computer tool) and `task_reward`, `page_contains`, `element_value_equals` (evaluate).
Each answers with the MCP result or the EvaluationResult the tool sends; every page operation holds one lock, so
concurrent requests run one after another.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Literal

from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent

from hud_vf_gym.environments.browser.browser import BrowserTab, Chromium, fitting_zoom
from hud_vf_gym.environments.browser.computer import ComputerCall, ComputerError, run_action
from hud_vf_gym.environments.browser.describe import DESCRIBE_SCRIPT, format_description
from hud_vf_gym.environments.browser.miniwob import (
    HIDE_STYLE,
    MINIWOB_PREFIX,
    MINIWOB_ZOOM,
    READ_RESULT_SCRIPT,
    READY_SCRIPT,
    READY_TIMEOUT_MS,
    START_SCRIPT,
    UTTERANCE_SCRIPT,
    miniwob_evaluation,
    miniwob_url,
)
from hud_vf_gym.environments.browser.pages import build_page_task, check_page_task
from hud_vf_gym.environments.browser.tasks import (
    SNAPSHOT_SCRIPT,
    PageTask,
    element_value_equals,
    evaluation,
    page_contains,
)
from hud_vf_gym.environments.hub import EvaluationResult

__all__ = [
    "DEFAULT_HEIGHT",
    "DEFAULT_WIDTH",
    "NO_TASK",
    "OBSERVATIONS",
    "BrowserSession",
    "ObservationMode",
    "ServerSettings",
    "computer_error",
    "first_line",
    "playwright_errors",
]

DEFAULT_WIDTH, DEFAULT_HEIGHT = 1280, 800  # the screen configs/default.yaml describes
OBSERVATIONS = ("image", "text", "both")
ObservationMode = Literal["image", "text", "both"]
NO_TASK = "No task is open; the task's setup must run first."
_VALUE_SCRIPT = """
selector => {
  const el = document.querySelector(selector);
  if (!el) return null;
  if (el.tagName === 'INPUT' && (el.type === 'checkbox' || el.type === 'radio')) return String(el.checked);
  if (['INPUT', 'SELECT', 'TEXTAREA', 'OPTION'].includes(el.tagName)) return el.value;
  return (el.innerText || el.textContent || '').trim();
}
"""
_PAGE_TEXT_SCRIPT = "() => document.body ? document.body.innerText : ''"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The server's command-line options."""

    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    observation: ObservationMode = "image"
    chromium: str | None = None


@dataclass(frozen=True, slots=True)
class _OpenTask:
    """What setup opened: the task's name and seed, its instruction, and how to grade it."""

    name: str
    seed: int
    goal: str
    page_task: PageTask | None = None  # our own task; None for MiniWoB++ and load_html pages
    miniwob: bool = False


class BrowserSession:
    """The server's state: the browser, the open tab and the open task. One instance per server process.

    Every page operation holds a lock, so concurrent requests from a client run one after another.
    """

    def __init__(self, settings: ServerSettings) -> None:
        """Remember the settings; the browser starts in `start()`."""
        self.settings = settings
        self._chromium = Chromium(settings.chromium)
        self._launch: asyncio.Task[None] | None = None
        self._tab: BrowserTab | None = None
        self._task: _OpenTask | None = None
        self._lock = asyncio.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Launch the browser in the background, so the client's initialisation does not wait for it."""
        self._launch = asyncio.ensure_future(self._chromium.start())

    async def close(self) -> None:
        """Close the tab and the browser (stopping Playwright's driver); safe to call again."""
        launch, self._launch = self._launch, None
        if launch is not None and not launch.done():
            launch.cancel()
        await asyncio.gather(*([launch] if launch else []), return_exceptions=True)
        tab, self._tab = self._tab, None
        try:
            if tab is not None:
                await tab.close()
        finally:
            await self._chromium.close()

    async def _browser(self) -> Chromium:
        """The launched browser (waiting for the launch; a failed launch raises its error again)."""
        if self._launch is None:
            self.start()
        assert self._launch is not None  # set just above
        await asyncio.shield(self._launch)
        return self._chromium

    async def _new_tab(self, zoom: float) -> BrowserTab:
        chromium = await self._browser()
        old, self._tab = self._tab, None
        if old is not None:
            await old.close()
        width, height = self.settings.width, self.settings.height
        self._tab = await chromium.new_tab(width=width, height=height, zoom=fitting_zoom(width, height, zoom))
        return self._tab

    # -- setup ----------------------------------------------------------------------------------------------------

    async def open_task(self, task: str, seed: int) -> CallToolResult:
        """Open our task or a MiniWoB++ task (`miniwob/...`) with a seed; answer with its instruction."""
        async with self._lock:
            self._task = None  # a setup that fails halfway leaves no task to grade, not the previous one
            if task.startswith(MINIWOB_PREFIX):
                await self._open_miniwob(task, seed)
            else:
                page_task = build_page_task(task, seed)
                tab = await self._new_tab(zoom=1.0)
                await tab.show(page_task.html)
                self._task = _OpenTask(task, seed, page_task.goal, page_task=page_task)
            return await self._setup_result()

    async def _open_miniwob(self, task: str, seed: int) -> None:
        url = miniwob_url(task)
        tab = await self._new_tab(zoom=MINIWOB_ZOOM)
        await tab.page.goto(url, wait_until="load")
        await tab.page.add_style_tag(content=HIDE_STYLE)
        await tab.evaluate(START_SCRIPT, seed)
        await tab.page.wait_for_function(READY_SCRIPT, timeout=READY_TIMEOUT_MS)
        goal = str(await tab.evaluate(UTTERANCE_SCRIPT))
        self._task = _OpenTask(task, seed, goal, miniwob=True)

    async def load_html(self, html: str, goal: str) -> CallToolResult:
        """Show a page of the caller's own (graded with the generic checks)."""
        async with self._lock:
            self._task = None
            tab = await self._new_tab(zoom=1.0)
            await tab.show(html)
            self._task = _OpenTask("load_html", 0, goal)
            return await self._setup_result()

    async def _setup_result(self) -> CallToolResult:
        task, tab = self._task, self._tab
        assert task is not None and tab is not None  # set by the setup function that called this
        width, height = tab.size
        lines = [f"Opened {task.name!r} (seed {task.seed}) on a {width}x{height} screen."]
        if task.goal:
            lines.append(f"Goal: {task.goal}")
        blocks: list[ContentBlock] = [TextContent(type="text", text="\n".join(lines))]
        if self.settings.observation != "image":
            blocks.append(TextContent(type="text", text=await self._describe(tab)))
        return CallToolResult(content=blocks)

    # -- computer -------------------------------------------------------------------------------------------------

    async def computer(self, call: ComputerCall, observation: ObservationMode | None) -> CallToolResult:
        """Run one `computer` action and answer as HUD does (text, then a screenshot and/or a description)."""
        mode = observation or self.settings.observation
        async with self._lock:
            try:
                tab = self._tab or await self._new_tab(zoom=1.0)  # before any setup: a blank page
                outcome = await run_action(tab, call)
                blocks: list[ContentBlock] = []
                if outcome.text is not None:
                    blocks.append(TextContent(type="text", text=outcome.text))
                if outcome.screenshot:
                    # after an input, wait for the page to paint its effect; a bare screenshot shows the page as is
                    blocks += await self._observe(tab, mode, settle=call.action != "screenshot")
            except (ComputerError, ImportError) as exc:  # ImportError: DependencyNotInstalled, with its fix
                return computer_error(str(exc))
            except playwright_errors() as exc:
                return computer_error(first_line(str(exc)))
        return CallToolResult(content=blocks)

    async def _observe(self, tab: BrowserTab, mode: ObservationMode, *, settle: bool) -> list[ContentBlock]:
        if settle:
            await tab.settle()
        blocks: list[ContentBlock] = []
        if mode in ("image", "both"):
            data = base64.b64encode(await tab.screenshot()).decode("ascii")
            blocks.append(ImageContent(type="image", data=data, mimeType="image/png"))
        if mode in ("text", "both"):
            blocks.append(TextContent(type="text", text=await self._describe(tab)))
        return blocks

    async def _describe(self, tab: BrowserTab) -> str:
        return format_description(await tab.evaluate(DESCRIBE_SCRIPT), zoom=tab.zoom)

    # -- evaluate -------------------------------------------------------------------------------------------------

    async def task_reward(self) -> EvaluationResult:
        """Grade the open task with its own check (ours) or its raw reward (MiniWoB++)."""
        async with self._lock:
            task, tab = self._task, self._tab
            if task is None or tab is None:
                return evaluation(0.0, False, NO_TASK, is_error=True)
            if task.page_task is not None:
                return check_page_task(task.page_task, await tab.evaluate(SNAPSHOT_SCRIPT))
            if task.miniwob:
                return miniwob_evaluation(task.name, task.seed, await tab.evaluate(READ_RESULT_SCRIPT))
            message = "This page was loaded with load_html and has no task check; use page_contains or "
            return evaluation(0.0, False, message + "element_value_equals", is_error=True)

    async def page_contains(self, text: str, case_sensitive: bool) -> EvaluationResult:
        """Check the visible text of the page."""
        async with self._lock:
            if self._tab is None:
                return evaluation(0.0, False, NO_TASK, is_error=True)
            page_text = str(await self._tab.evaluate(_PAGE_TEXT_SCRIPT))
            return page_contains(page_text, text, case_sensitive=case_sensitive)

    async def element_value_equals(self, selector: str, value: str) -> EvaluationResult:
        """Check the value (or text) of the first element a CSS selector matches."""
        async with self._lock:
            if self._tab is None:
                return evaluation(0.0, False, NO_TASK, is_error=True)
            try:
                found = await self._tab.evaluate(_VALUE_SCRIPT, selector)
            except playwright_errors() as exc:
                message = f"Cannot evaluate selector {selector!r}: {first_line(str(exc))}"
                return evaluation(0.0, False, message, is_error=True)
            return element_value_equals(selector, None if found is None else str(found), value)


def playwright_errors() -> tuple[type[Exception], ...]:
    """Playwright's error classes (imported only once the browser runs, so importing this module stays cheap)."""
    from playwright.async_api import Error as PlaywrightError

    return (PlaywrightError,)


def first_line(message: str) -> str:
    """The first line of an error message (Playwright appends a call log), or a placeholder for an empty one."""
    return message.strip().splitlines()[0] if message.strip() else "unknown browser error"


def computer_error(message: str) -> CallToolResult:
    """HUD's error result for a computer call that cannot run."""
    return CallToolResult(
        content=[TextContent(type="text", text=f"Error calling tool 'computer': {message}")], isError=True
    )
