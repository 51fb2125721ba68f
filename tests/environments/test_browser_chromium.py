"""Tests for how the browser server launches Chromium: the features it turns off, and what that leaves running.

Each test launches a real headless Chromium (the system one) through `Chromium` in this process and looks at the
processes it started (descendants of this test process only).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator

import psutil
import pytest

from hud_vf_gym.environments.browser import browser as browser_module
from hud_vf_gym.environments.browser.browser import (
    DISABLED_FEATURES_FLAG,
    IDLE_RENDERER_FEATURES,
    Chromium,
)
from hud_vf_gym.environments.browser.pages import build_page_task
from tests.support import live_children

pytest.importorskip("playwright.async_api", reason='needs pip install "hud-vf-gym[browser]"')

WIDTH, HEIGHT = 1280, 800
# pages whose first screen holds text, inputs, buttons and a list (a spread of what the tasks draw)
SCREENSHOT_TASKS = ("log-in", "triage-inbox", "fill-form", "scroll-to-find")


def _chromium_processes() -> list[psutil.Process]:
    """The Chromium processes this test process started (at any depth) that still run."""
    found = []
    for process in live_children():
        with contextlib.suppress(psutil.Error):  # it may exit between the listing and the name
            if "chrom" in process.name():
                found.append(process)
    return found


def _command_lines(kind: str | None) -> list[list[str]]:
    """Command lines of this test's Chromium processes of one `--type` (None: the browser process itself)."""
    lines = []
    for process in _chromium_processes():
        try:
            command = process.cmdline()
        except psutil.Error:
            continue
        if not command:  # a process that is exiting shows no command line: it is no browser, renderer or other
            continue
        types = [part.removeprefix("--type=") for part in command if part.startswith("--type=")]
        if (types[0] if types else None) == kind:
            lines.append(command)
    return lines


async def _renderers_settle(expected: int, timeout_s: float = 15.0) -> list[list[str]]:
    """The renderer command lines once there are `expected` of them, or as they are at the deadline.

    Chromium ends a closed context's renderer asynchronously: on a loaded machine it can still be exiting when the
    next context starts, which is not a renderer "left" by it.
    """
    deadline = time.monotonic() + timeout_s
    while len(renderers := _command_lines("renderer")) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return renderers


@pytest.fixture
async def chromium() -> AsyncIterator[Chromium]:
    browser = Chromium()
    await browser.start()
    try:
        yield browser
    finally:
        await browser.close()


@pytest.mark.anyio
async def test_chromium_keeps_playwrights_disabled_features_and_adds_ours(chromium: Chromium) -> None:
    [command] = _command_lines(None)
    disabled = [part.removeprefix("--disable-features=") for part in command if part.startswith("--disable-features=")]
    # Playwright's own flag comes first; Chromium obeys only the last one, which must be ours and keep all of it
    assert len(disabled) == 2, disabled
    playwrights, effective = set(disabled[0].split(",")), set(disabled[-1].split(","))
    assert f"--disable-features={disabled[-1]}" == DISABLED_FEATURES_FLAG
    missing = sorted(playwrights - effective)
    assert not missing, f"add {missing} to PLAYWRIGHT_DISABLED_FEATURES (Playwright now disables them)"
    assert set(IDLE_RENDERER_FEATURES) <= effective


@pytest.mark.anyio
async def test_a_task_context_starts_one_renderer_and_closing_it_ends_it(chromium: Chromium) -> None:
    page_task = build_page_task("log-in", 0)
    for _ in range(2):  # the second context must not find a renderer left by the first
        tab = await chromium.new_tab(width=WIDTH, height=HEIGHT)
        await tab.page.set_content(page_task.html)
        renderers = await _renderers_settle(1)
        assert len(renderers) == 1, [" ".join(command[:4]) for command in renderers]
        assert not any("--top-chrome-webui" in command for command in renderers)  # no browser-UI renderer
        await tab.close()
        assert await _renderers_settle(0) == []  # the context's renderer ends with it
    await chromium.close()
    deadline = time.monotonic() + 15.0
    while _chromium_processes() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert _chromium_processes() == []


@pytest.mark.anyio
async def test_screenshots_are_the_same_as_with_playwrights_features_only(
    chromium: Chromium, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def screenshots(browser: Chromium) -> dict[str, bytes]:
        shots = {}
        for task in SCREENSHOT_TASKS:
            tab = await browser.new_tab(width=WIDTH, height=HEIGHT)
            await tab.show(build_page_task(task, 0).html)
            await tab.settle()
            shots[task] = await tab.screenshot()
            await tab.close()
        return shots

    ours = await screenshots(chromium)
    # the same binary and flags, with Playwright's own --disable-features left as the last one
    monkeypatch.setattr(browser_module, "DISABLED_FEATURES_FLAG", "--disable-features=" + _playwrights_list())
    plain = Chromium()
    await plain.start()
    try:
        reference = await screenshots(plain)
    finally:
        await plain.close()
    # PNG encoding is deterministic, so equal pixels give equal bytes
    assert {task: len(shot) for task, shot in ours.items()} == {task: len(shot) for task, shot in reference.items()}
    assert ours == reference


@pytest.mark.anyio
async def test_the_fast_capture_shows_playwrights_pixels_whatever_the_carets_blink_phase(chromium: Chromium) -> None:
    pil = pytest.importorskip("PIL.Image", reason="compares decoded pixels")
    tab = await chromium.new_tab(width=WIDTH, height=HEIGHT)
    try:
        await tab.show(build_page_task("log-in", 0).html)
        await tab.page.focus("input")  # a focused text field: its caret blinks about every 500 ms
        pixels, encoded = set(), set()
        for _ in range(6):  # spread over more than one blink period
            fast = await tab.screenshot()
            reference = await tab.page.screenshot(type="png")  # Playwright hides the caret while it captures
            encoded.add(len(fast))
            for shot in (fast, reference):
                with pil.open(io.BytesIO(shot)) as image:
                    assert image.size == (WIDTH, HEIGHT)
                    pixels.add(image.convert("RGB").tobytes())
            await asyncio.sleep(0.2)
        assert len(pixels) == 1  # one image: the fast capture's equals Playwright's, in every phase
        assert len(encoded) == 1
    finally:
        await tab.close()


def _playwrights_list() -> str:
    [command] = _command_lines(None)
    return next(part for part in command if part.startswith("--disable-features=")).removeprefix("--disable-features=")
