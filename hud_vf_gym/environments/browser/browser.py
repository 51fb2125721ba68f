"""The Playwright driver: one headless Chromium per server process, a fresh browser context for every task.

`Chromium` launches the browser once (about 0.2 s once Playwright's driver runs) and hands out `BrowserTab`s. A tab
is one context with one page, so no cookie, storage or history leaks from one task into the next; closing it is
cheap. A tab implements `computer.Screen`: every coordinate it takes is a screen pixel, and it divides by its zoom
(the device scale factor) to get page pixels. The screenshot is therefore exactly the screen size, and a task drawn
for a small viewport (MiniWoB's 160x210 pixels) can be shown magnified without changing the agent's screen.

No page reaches the network: every http(s) request is answered locally with an empty 204, which also keeps a
clicked outside link from leaving the task page.

Chromium is found at `$HUD_VF_GYM_CHROMIUM`, else at the usual Debian/Ubuntu paths or on PATH; Playwright's own
browser download (`playwright install`) is never needed.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hud_vf_gym.environments.browser.computer import ComputerError

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, CDPSession, Page, Playwright, Route

__all__ = [
    "CHROMIUM_ENV",
    "CHROMIUM_FLAGS",
    "DISABLED_FEATURES_FLAG",
    "IDLE_RENDERER_FEATURES",
    "PLAYWRIGHT_DISABLED_FEATURES",
    "BrowserTab",
    "Chromium",
    "find_chromium",
    "fitting_zoom",
]

CHROMIUM_ENV = "HUD_VF_GYM_CHROMIUM"  # path of the Chromium (or Chrome) binary to use
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-crash-reporter",
    "--disable-breakpad",
    # Not --disable-crashpad-for-testing: it stops Debian's Chromium from loading file:// pages (MiniWoB++). The two
    # crashpad handlers Debian's Chromium starts exit with the browser, even one killed with SIGKILL.
    "--disable-smooth-scrolling",  # a wheel notch lands at once, so the screenshot after a scroll shows it
    "--allow-file-access-from-files",  # MiniWoB pages load their scripts from file://
)
# Chromium obeys only the last --disable-features, so ours repeats the list Playwright (1.65) passes before it; a
# test checks that no feature of Playwright's own list is lost after an upgrade.
PLAYWRIGHT_DISABLED_FEATURES = (
    "AimEnabled", "AvoidCorsURLLoaderRestartOnRedirect", "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose", "HttpsFirstBalancedModeAutoEnable", "HttpsUpgrades", "LensOverlay", "MediaRouter",
    "NetworkTimeServiceQuerying", "OptimizationHints", "PaintHolding", "PreconnectToSearch", "TcpPortRandomizationWin",
    "ThirdPartyStoragePartitioning", "msEdgeUpdateLaunchServicesPreferredVersion", "msForceBrowserSignIn",
)  # fmt: skip
# Every task opens a new context, which in headless Chromium is a new window; by default each one also starts a
# renderer for the omnibox popup (browser UI no headless page shows) and a spare renderer for a next navigation
# that never comes before the context closes. Without them a context starts one renderer instead of three, and a
# warm 6-turn rollout costs about 0.75 s of CPU instead of 1.6 s (bench/browser.py --cpu). Pages render the same.
IDLE_RENDERER_FEATURES = (
    "WebUIOmniboxPopup",
    "WebUIOmniboxAimPopup",
    "WebUIOmniboxFullPopup",
    "SpareRendererForSitePerProcess",
)
DISABLED_FEATURES_FLAG = "--disable-features=" + ",".join(PLAYWRIGHT_DISABLED_FEATURES + IDLE_RENDERER_FEATURES)
LAUNCH_TIMEOUT_MS = 30_000  # a cold Chromium start on a loaded 2-core machine takes a few seconds at most
# navigation, screenshots and in-page scripts: our pages are local and load in well under a second, but a 2-core
# machine running other tests can be slowed tenfold
PAGE_TIMEOUT_MS = 30_000
SETTLE_TIMEOUT_S = 1.0  # waiting for two animation frames; a page stuck in a script must not hang the action
SCROLL_NOTCH_PX = 100  # one mouse-wheel notch (HUD's scroll unit) in page pixels, as Chromium scrolls on Linux
DRAG_STEP_PX = 12  # HUD's drag interpolation: a pointer event at least every 12 screen pixels
PLAYWRIGHT_BUTTONS = frozenset({"left", "right", "middle"})
_NETWORK_URL = re.compile(r"^https?://")
HIDDEN_CARET_STYLE = "* { caret-color: transparent !important; }"  # what Playwright's screenshots do while they run
_SETTLE_SCRIPT = "() => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)))"


def _dependency_error(message: str) -> Exception:
    """Build `DependencyNotInstalled` (imported here: `hud_vf_gym.errors` loads verifiers, too slow for start-up)."""
    from hud_vf_gym.errors import DependencyNotInstalled

    return DependencyNotInstalled(message)


def find_chromium(environ: Mapping[str, str] | None = None) -> str:
    """Return the Chromium binary to launch.

    Raises:
        DependencyNotInstalled: `$HUD_VF_GYM_CHROMIUM` names a missing file, or no Chromium is installed.
    """
    environ = os.environ if environ is None else environ
    configured = environ.get(CHROMIUM_ENV, "").strip()
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise _dependency_error(
            f"{CHROMIUM_ENV}={configured!r} is not an executable file; point it at a Chromium or Chrome binary, "
            "or unset it to use the system Chromium (apt-get install chromium)"
        )
    for candidate in CHROMIUM_CANDIDATES:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise _dependency_error(
        f"Chromium was not found (looked at ${CHROMIUM_ENV}, {', '.join(CHROMIUM_CANDIDATES)} and PATH). "
        f"Install it with `apt-get install chromium` (Debian/Ubuntu), or set {CHROMIUM_ENV} to a Chromium or "
        "Chrome binary. `playwright install` is not needed."
    )


def fitting_zoom(width: int, height: int, zoom: float) -> float:
    """`zoom` when it divides the screen into whole page pixels, else 1 (so screenshots keep the exact screen size)."""
    if zoom > 0 and (width / zoom).is_integer() and (height / zoom).is_integer():
        return zoom
    return 1.0


async def _answer_locally(route: Route) -> None:
    """Answer a network request with an empty 204: no page leaves the machine, and a link click goes nowhere."""
    await route.fulfill(status=204, body="")


class Chromium:
    """One headless Chromium for the whole server process; `new_tab` gives each task its own context.

    Args:
        executable: the browser binary; None finds one with `find_chromium`.
    """

    def __init__(self, executable: str | None = None) -> None:
        """Remember where the browser is; nothing starts until `start()`."""
        self.executable = executable
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    async def start(self) -> None:
        """Start Playwright's driver and launch the browser.

        Raises:
            DependencyNotInstalled: Playwright or Chromium is missing.
        """
        try:
            from playwright.async_api import async_playwright
        except ImportError as exc:
            raise _dependency_error(
                'The browser environment needs Playwright: pip install "hud-vf-gym[browser]" '
                "(and Chromium: apt-get install chromium)"
            ) from exc
        executable = self.executable or find_chromium()
        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=executable,
            args=[*CHROMIUM_FLAGS, DISABLED_FEATURES_FLAG],
            headless=True,
            timeout=LAUNCH_TIMEOUT_MS,
        )

    async def new_tab(self, *, width: int, height: int, zoom: float = 1.0) -> BrowserTab:
        """Open a fresh context and page whose screenshots are `width` x `height` screen pixels."""
        if self._browser is None:
            raise RuntimeError("the browser is not started; call start() first")
        context = await self._browser.new_context(
            viewport={"width": max(1, round(width / zoom)), "height": max(1, round(height / zoom))},
            device_scale_factor=zoom,
            accept_downloads=False,
            service_workers="block",
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        await context.route(_NETWORK_URL, _answer_locally)
        page = await context.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
        return BrowserTab(context, page, width=width, height=height, zoom=zoom)

    async def close(self) -> None:
        """Close the browser and stop Playwright's driver; safe to call again."""
        browser, self._browser = self._browser, None
        playwright, self._playwright = self._playwright, None
        try:
            if browser is not None:
                await browser.close()
        finally:
            if playwright is not None:
                await playwright.stop()


class BrowserTab:
    """One task's browser context and page, driven in screen pixels (see `computer.Screen`)."""

    def __init__(self, context: BrowserContext, page: Page, *, width: int, height: int, zoom: float) -> None:
        """Wrap an open context and page; use `Chromium.new_tab` to make one."""
        self.context = context
        self.page = page
        self.zoom = zoom
        self._size = (width, height)
        self._mouse = (width // 2, height // 2)
        self._devtools: CDPSession | None = None

    @property
    def size(self) -> tuple[int, int]:
        """The screen's width and height in pixels."""
        return self._size

    @property
    def mouse_position(self) -> tuple[int, int]:
        """Where the pointer is, in screen pixels."""
        return self._mouse

    def _page_point(self, x: int, y: int) -> tuple[float, float]:
        return x / self.zoom, y / self.zoom

    async def _move_to(self, x: int, y: int, steps: int = 1) -> None:
        page_x, page_y = self._page_point(x, y)
        await self.page.mouse.move(page_x, page_y, steps=steps)
        self._mouse = (x, y)

    async def click(self, x: int, y: int, *, button: str, pattern: Sequence[int]) -> None:
        """Click `len(pattern) + 1` times at (x, y), pausing `pattern[i]` ms between clicks."""
        playwright_button = _playwright_button(button)
        await self._move_to(x, y)
        for index in range(len(pattern) + 1):
            # the click count makes the second click a dblclick, as a real double click is
            await self.page.mouse.down(button=playwright_button, click_count=index + 1)
            await self.page.mouse.up(button=playwright_button, click_count=index + 1)
            if index < len(pattern):
                await asyncio.sleep(pattern[index] / 1000)

    async def move(self, x: int, y: int) -> None:
        """Move the pointer to (x, y)."""
        await self._move_to(x, y)

    async def mouse_down(self, button: str) -> None:
        """Press a mouse button where the pointer is."""
        await self.page.mouse.down(button=_playwright_button(button))

    async def mouse_up(self, button: str) -> None:
        """Release a mouse button where the pointer is."""
        await self.page.mouse.up(button=_playwright_button(button))

    async def drag(self, path: Sequence[tuple[int, int]]) -> None:
        """Press the left button at path[0], move through every point, release at path[-1]."""
        await self._move_to(*path[0])
        await self.page.mouse.down()
        previous = path[0]
        for point in path[1:]:
            distance = math.dist(previous, point)
            await self._move_to(*point, steps=max(1, math.ceil(distance / DRAG_STEP_PX)))
            previous = point
        await self.page.mouse.up()

    async def scroll(self, x: int, y: int, notches_x: int, notches_y: int) -> None:
        """Turn the mouse wheel at (x, y) by whole notches (positive: right and down)."""
        await self._move_to(x, y)
        await self.page.mouse.wheel(notches_x * SCROLL_NOTCH_PX, notches_y * SCROLL_NOTCH_PX)

    async def type_text(self, text: str) -> None:
        """Type text as key presses."""
        await self.page.keyboard.type(text)

    async def press(self, combination: str) -> None:
        """Press a Playwright key combination such as `Control+a`."""
        await self.page.keyboard.press(combination)

    async def key_down(self, key: str) -> None:
        """Hold a key down."""
        await self.page.keyboard.down(key)

    async def key_up(self, key: str) -> None:
        """Release a key."""
        await self.page.keyboard.up(key)

    async def pause(self, milliseconds: int) -> None:
        """Wait, letting the page run."""
        await asyncio.sleep(milliseconds / 1000)

    async def settle(self) -> None:
        """Wait two animation frames, so the screen shows what the last input did (bounded: a busy page may hang)."""
        try:
            await asyncio.wait_for(self.page.evaluate(_SETTLE_SCRIPT), SETTLE_TIMEOUT_S)
        except TimeoutError:
            pass  # the screenshot shows whatever the page has painted; waiting longer would not change that

    async def show(self, html: str) -> None:
        """Replace the page with `html`; its text caret never shows (screenshots do not depend on its blinking)."""
        await self.page.set_content(html)
        await self.page.add_style_tag(content=HIDDEN_CARET_STYLE)

    async def screenshot(self) -> bytes:
        """A PNG of the screen, `size` pixels.

        At zoom 1, Chromium's own capture with its fast PNG settings: the same pixels as Playwright's
        `page.screenshot`, about 30% more bytes, half the encoding CPU (a screenshot follows nearly every action:
        on 2 cores it was a third of a warm rollout's CPU). Playwright's extras are not needed there: the pages
        load no web fonts and `show` hides the caret. A magnified page (MiniWoB++) goes through Playwright, whose
        capture applies the device scale factor (a second DevTools session does not see it).
        """
        if self.zoom != 1:
            return await self.page.screenshot(type="png")
        if self._devtools is None:
            self._devtools = await self.context.new_cdp_session(self.page)
        result = await self._devtools.send("Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True})
        return base64.b64decode(result["data"])

    async def evaluate(self, script: str, argument: Any = None) -> Any:
        """Run a script in the page and return its JSON-able result."""
        return await self.page.evaluate(script, argument)

    async def close(self) -> None:
        """Close the context (and its page)."""
        await self.context.close()


def _playwright_button(button: str) -> Any:
    """Playwright knows three buttons; HUD's back and forward have no page equivalent."""
    if button not in PLAYWRIGHT_BUTTONS:
        raise ComputerError(f"The {button} mouse button is not supported in the browser; use left, right or middle")
    return button
