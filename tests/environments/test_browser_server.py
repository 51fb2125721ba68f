"""Tests for the browser MCP server, spawned for real over stdio (with a real headless Chromium) and driven by MCP."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psutil
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, ImageContent, TextContent, TextResourceContents

from hud_vf_gym.environments.browser.browser import CHROMIUM_ENV
from hud_vf_gym.environments.browser.computer import ACTIONS
from hud_vf_gym.environments.browser.pages import PAGE_TASKS, build_page_task
from hud_vf_gym.runtime.mcp_compat import input_schema, is_error, mime_type, structured_content

pytest.importorskip("playwright.async_api", reason='needs pip install "hud-vf-gym[browser]"')

SERVER_MODULE = "hud_vf_gym.environments.browser"
# Bounds every wait on the server. A cold start (mcp, Playwright's driver, Chromium) takes a few seconds on a busy
# 2-core machine; only a hang gets near this.
TIMEOUT_S = 60
EVALUATION_KEYS = ["reward", "done", "content", "info", "isError"]
# A page that logs what the pointer and keyboard do, for the actions no task needs.
PROBE_PAGE = """<!DOCTYPE html><html><body style="margin:0">
<div id="pad" style="width:400px;height:300px;background:#ddd"></div>
<input id="box" style="position:absolute;left:500px;top:20px;width:200px">
<div id="log"></div>
<script>
const log = text => { document.getElementById('log').textContent += text + ';'; };
const pad = document.getElementById('pad');
pad.addEventListener('click', e => log('click ' + e.clientX + ',' + e.clientY));
pad.addEventListener('dblclick', () => log('dblclick'));
pad.addEventListener('contextmenu', e => { e.preventDefault(); log('right'); });
pad.addEventListener('mousedown', e => log('down ' + e.clientX + ',' + e.clientY + (e.shiftKey ? ' shift' : '')));
pad.addEventListener('mouseup', e => log('up ' + e.clientX + ',' + e.clientY));
</script></body></html>"""


@asynccontextmanager
async def open_session(*server_args: str, env: Mapping[str, str] | None = None) -> AsyncIterator[ClientSession]:
    """Start a server process, initialise a client session on it, and stop the process on exit."""
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", SERVER_MODULE, *server_args], env=dict(env) if env else None
    )
    async with (
        stdio_client(parameters) as (read_stream, write_stream),
        ClientSession(read_stream, write_stream) as session,
    ):
        with anyio.fail_after(TIMEOUT_S):
            await session.initialize()
        yield session


@pytest.fixture(scope="module")
async def session() -> AsyncIterator[ClientSession]:
    # One server for the module: every test starts with setup, which opens a fresh browser context.
    async with open_session() as shared_session:
        yield shared_session


async def call(session: ClientSession, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    with anyio.fail_after(TIMEOUT_S):
        return await session.call_tool(tool, arguments)


async def computer(session: ClientSession, action: str, **arguments: Any) -> CallToolResult:
    return await call(session, "computer", {"action": action, **arguments})


async def open_task(session: ClientSession, task: str, seed: int = 0) -> str:
    result = await call(session, "setup", {"name": "open_task", "arguments": {"task": task, "seed": seed}})
    assert is_error(result) is False, texts(result)
    return texts(result)[0]


async def evaluate(session: ClientSession, name: str = "task_reward", **arguments: Any) -> dict[str, Any]:
    result = await call(session, "evaluate", {"name": name, "arguments": arguments})
    assert is_error(result) is False, texts(result)
    assert structured_content(result) is not None
    assert [json.loads(texts(result)[0])] == [structured_content(result)]  # HUD sends both forms
    assert list(structured_content(result)) == EVALUATION_KEYS
    return structured_content(result)


def texts(result: CallToolResult) -> list[str]:
    return [block.text for block in result.content if isinstance(block, TextContent)]


def png_size(result: CallToolResult) -> tuple[int, int]:
    [image] = [block for block in result.content if isinstance(block, ImageContent)]
    assert mime_type(image) == "image/png"
    data = base64.b64decode(image.data)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def element_centre(description: str, label: str) -> tuple[int, int]:
    match = re.search(rf"^\s*\[\d+\] \S+ {re.escape(json.dumps(label))} centre \((\d+), (\d+)\)", description, re.M)
    assert match is not None, f"{label!r} not in:\n{description}"
    return int(match.group(1)), int(match.group(2))


async def describe(session: ClientSession) -> str:
    return texts(await computer(session, "screenshot", observation="text"))[0]


# -- listing --------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_browser_server_lists_hud_tools_with_resolution(session: ClientSession) -> None:
    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert sorted(tools) == ["computer", "evaluate", "setup"]
    computer_tool = tools["computer"]
    assert computer_tool.meta == {"resolution": {"width": 1280, "height": 800}}
    assert computer_tool.description == "Control computer with mouse, keyboard, and screenshots"
    properties = input_schema(computer_tool)["properties"]
    assert input_schema(computer_tool)["required"] == ["action"]
    assert properties["action"]["enum"] == list(ACTIONS)
    assert {"write", "type", "press", "scroll", "drag", "wait", "screenshot"} <= set(ACTIONS)
    hud_arguments = ["x", "y", "button", "pattern", "text", "keys", "enter_after", "scroll_x", "scroll_y"]
    hud_arguments += ["offset_x", "offset_y", "path", "time", "hold_keys", "duration"]
    assert set(hud_arguments) < set(properties)
    assert input_schema(tools["setup"])["properties"]["name"]["enum"] == ["load_html", "open_task"]
    assert input_schema(tools["evaluate"])["properties"]["name"]["enum"] == [
        "element_value_equals",
        "page_contains",
        "task_reward",
    ]


@pytest.mark.anyio
async def test_browser_server_hub_function_resources(session: ClientSession) -> None:
    for hub, names in [("setup", ["load_html", "open_task"]), ("evaluate", ["element_value_equals", "page_contains",
                                                                               "task_reward"])]:  # fmt: skip
        contents = (await session.read_resource(f"file:///{hub}/functions")).contents  # type: ignore[arg-type]
        assert isinstance(contents[0], TextResourceContents)
        assert json.loads(contents[0].text) == names


# -- setup ----------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_browser_server_open_task_states_the_goal(session: ClientSession) -> None:
    text = await open_task(session, "click-button", 3)
    goal = build_page_task("click-button", 3).goal
    assert text == f"Opened 'click-button' (seed 3) on a 1280x800 screen.\nGoal: {goal}"
    assert await evaluate(session) == {
        "reward": 0.0,
        "done": False,
        "content": "No button has been clicked yet",
        "info": {"task": "click-button", "seed": 3, "expected": build_page_task("click-button", 3).expected["target"],
                 "clicked": None},
        "isError": False,
    }  # fmt: skip


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"task": "click-buton"}, "setup function 'open_task' failed: unknown task 'click-buton'; expected one of"),
        ({"task": "miniwob/click-tset"}, "failed: MiniWoB++ has no task 'click-tset'; did you mean miniwob/click-test"),
        ({"task": "click-button", "sed": 1}, "Invalid arguments for setup function 'open_task': sed: Extra inputs"),
        ({}, "Invalid arguments for setup function 'open_task': task: Field required"),
    ],
    ids=["unknown-task", "unknown-miniwob-task", "misspelt-argument", "missing-task"],
)
async def test_browser_server_bad_setup_is_an_error_result(
    session: ClientSession, arguments: dict[str, Any], message: str
) -> None:
    result = await call(session, "setup", {"name": "open_task", "arguments": arguments})
    assert is_error(result) is True
    assert message in texts(result)[0]


@pytest.mark.anyio
async def test_browser_server_failed_setup_leaves_nothing_to_grade(session: ClientSession) -> None:
    await open_task(session, "click-button")
    failed = await call(session, "setup", {"name": "open_task", "arguments": {"task": "no-such-task"}})
    assert is_error(failed) is True
    result = await call(session, "evaluate", {"name": "task_reward", "arguments": {}})
    assert structured_content(result) is not None
    assert structured_content(result)["isError"] is True  # not the previous task's grade
    assert structured_content(result)["content"] == "No task is open; the task's setup must run first."


@pytest.mark.anyio
async def test_browser_server_unknown_hub_function_lists_the_valid_ones(session: ClientSession) -> None:
    result = await call(session, "evaluate", {"name": "max_number", "arguments": "{}"})
    assert is_error(result) is True
    assert texts(result) == [
        "Unknown evaluate function 'max_number'; expected one of: element_value_equals, page_contains, task_reward"
    ]


# -- computer -------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_browser_server_screenshot_is_a_png_of_the_screen(session: ClientSession) -> None:
    await open_task(session, "enter-text")
    result = await computer(session, "screenshot")
    assert is_error(result) is False
    assert [block.type for block in result.content] == ["image"]
    assert png_size(result) == (1280, 800)
    # a MiniWoB++ page is magnified, but the screenshot keeps the screen size
    await open_task(session, "miniwob/click-test")
    assert png_size(await computer(session, "screenshot")) == (1280, 800)


@pytest.mark.anyio
async def test_browser_server_unknown_action_is_huds_error(session: ClientSession) -> None:
    result = await computer(session, "jump")
    assert is_error(result) is True
    assert texts(result) == ["Error calling tool 'computer': Unknown action: jump"]
    result = await computer(session, "write")
    assert texts(result) == ["Error calling tool 'computer': text parameter is required for write"]


@pytest.mark.anyio
async def test_browser_server_solves_enter_text_with_type_and_ctrl_a(session: ClientSession) -> None:
    task = build_page_task("enter-text", 5)
    await open_task(session, "enter-text", 5)
    x, y = element_centre(await describe(session), "Answer:")
    click = await computer(session, "click", x=x, y=y)
    assert texts(click) == [f"Click at ({x}, {y}) with left button"]
    assert png_size(click) == (1280, 800)  # the action text, then the screenshot
    await computer(session, "write", text="wrong")
    await computer(session, "press", keys=["ctrl", "a"])  # select all, so the next text replaces it
    typed = await computer(session, "type", text=task.expected["answer"], enter_after=True)  # the pre-0.4.28 name
    assert texts(typed) == [f"Type '{task.expected['answer']}' followed by Enter"]
    result = await evaluate(session)
    assert (result["reward"], result["done"]) == (1.0, True), result


@pytest.mark.anyio
async def test_browser_server_scroll_brings_the_target_into_view(session: ClientSession) -> None:
    target = build_page_task("scroll-to-find", 1).expected["target"]
    await open_task(session, "scroll-to-find", 1)
    assert json.dumps(target) not in await describe(session)
    for _ in range(12):
        scrolled = await computer(session, "scroll", x=640, y=400, scroll_y=3, observation="text")
        assert texts(scrolled)[0] == "Scroll at (640, 400) vertically by 3"
        if json.dumps(target) in texts(scrolled)[1]:
            break
    x, y = element_centre(texts(scrolled)[1], target)
    await computer(session, "click", x=x, y=y)
    assert (await evaluate(session))["reward"] == 1.0


@pytest.mark.anyio
async def test_browser_server_miniwob_raw_reward(session: ClientSession) -> None:
    text = await open_task(session, "miniwob/click-test", 2)
    assert text.endswith("Goal: Click the button.")
    assert (await evaluate(session))["done"] is False
    x, y = element_centre(await describe(session), "Click Me!")
    await computer(session, "click", x=x, y=y)
    result = await evaluate(session)
    assert (result["reward"], result["done"], result["info"]["raw_reward"]) == (1.0, True, 1.0)
    # the finished episode keeps its reward: no START cover, no new problem
    await computer(session, "click", x=x, y=y)
    assert (await evaluate(session))["reward"] == 1.0


@pytest.mark.anyio
async def test_browser_server_miniwob_same_seed_same_problem(session: ClientSession) -> None:
    goals = [await open_task(session, "miniwob/click-button", seed) for seed in (7, 7, 8)]
    assert goals[0] == goals[1]
    assert goals[0] != goals[2]


@pytest.mark.anyio
async def test_browser_server_pointer_actions_reach_the_page(session: ClientSession) -> None:
    result = await call(session, "setup", {"name": "load_html", "arguments": {"html": PROBE_PAGE, "goal": "Probe"}})
    assert texts(result) == ["Opened 'load_html' (seed 0) on a 1280x800 screen.\nGoal: Probe"]
    await computer(session, "click", x=10, y=20)
    await computer(session, "click", x=30, y=40, pattern=[50])
    await computer(session, "click", x=30, y=40, button="right")
    await computer(session, "drag", path=[[100, 100], {"x": 150, "y": 120}], hold_keys=["shift"])
    log = "down 10,20;up 10,20;click 10,20;down 30,40;up 30,40;click 30,40;down 30,40;up 30,40;click 30,40;dblclick;"
    # on Linux the context menu opens on mousedown; a drag within one element also clicks it
    log += "down 30,40;right;up 30,40;down 100,100 shift;up 150,120;click 150,120;"
    assert await evaluate(session, "element_value_equals", selector="#log", value=log) == {
        "reward": 1.0,
        "done": True,
        "content": f"The value of '#log' equals {log!r} ({log!r})",
        "info": {"selector": "#log", "expected": log, "actual": log},
        "isError": False,
    }
    assert texts(await computer(session, "position")) == ["Mouse position: (150, 120)"]
    waited = await computer(session, "wait", time=10)
    assert [block.type for block in waited.content] == ["text"] and texts(waited) == ["Waited 10ms"]
    assert texts(await computer(session, "response", text="done")) == ["done"]


@pytest.mark.anyio
async def test_browser_server_generic_checks(session: ClientSession) -> None:
    await call(session, "setup", {"name": "load_html", "arguments": {"html": PROBE_PAGE}})
    await computer(session, "click", x=600, y=30)
    await computer(session, "write", text="hello")
    assert (await evaluate(session, "element_value_equals", selector="#box", value="hello"))["reward"] == 1.0
    assert (await evaluate(session, "element_value_equals", selector="#none", value="x"))["content"] == (
        "No element matches '#none'"
    )
    bad = await evaluate(session, "element_value_equals", selector="#[", value="x")
    assert bad["isError"] is True and bad["content"].startswith("Cannot evaluate selector '#['")
    await open_task(session, "log-in", 1)
    assert (await evaluate(session, "page_contains", text="Sign in"))["reward"] == 1.0
    assert (await evaluate(session, "page_contains", text="sign IN", case_sensitive=False))["reward"] == 1.0
    no_check = await evaluate(session)
    assert no_check["isError"] is False  # log-in has its own check


@pytest.mark.anyio
async def test_browser_server_no_network_is_reached(session: ClientSession) -> None:
    page = '<a id="out" href="https://example.com/" style="font-size:40px">leave</a>'
    await call(session, "setup", {"name": "load_html", "arguments": {"html": page}})
    await computer(session, "click", x=40, y=20)
    assert (await evaluate(session, "page_contains", text="leave"))["reward"] == 1.0  # still on the page


# -- options --------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_browser_server_text_observations_and_screen_size_flags() -> None:
    async with open_session("--observation", "text", "--width", "1024", "--height", "768") as text_session:
        tools = (await text_session.list_tools()).tools
        assert tools[0].meta == {"resolution": {"width": 1024, "height": 768}}
        setup_text = texts(await call(text_session, "setup", {"name": "open_task", "arguments": {"task": "log-in"}}))
        assert setup_text[0].startswith("Opened 'log-in' (seed 0) on a 1024x768 screen.")
        assert setup_text[1].startswith('Page "log-in (seed 0)": the screen (1024x768)')
        result = await computer(text_session, "screenshot")
        assert [block.type for block in result.content] == ["text"]
        assert 'textbox "Username" centre (' in texts(result)[0]
        both = await computer(text_session, "screenshot", observation="both")
        assert [block.type for block in both.content] == ["image", "text"]
        assert png_size(both) == (1024, 768)


@pytest.mark.anyio
async def test_browser_server_missing_chromium_is_one_clear_error() -> None:
    async with open_session(env={CHROMIUM_ENV: "/nonexistent/chromium", "PATH": "/usr/bin:/bin"}) as broken:
        result = await call(broken, "setup", {"name": "open_task", "arguments": {"task": "click-button"}})
    assert is_error(result) is True
    [message] = texts(result)
    assert f"{CHROMIUM_ENV}='/nonexistent/chromium' is not an executable file" in message
    assert "apt-get install chromium" in message


def _send(process: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert process.stdin is not None
    process.stdin.write((json.dumps(message) + "\n").encode())
    process.stdin.flush()


def test_browser_server_killed_with_sigkill_leaves_no_browser() -> None:
    # The harness SIGKILLs a stuck server's process group; Playwright's driver dies with it, and Chromium (in its own
    # process group) must follow when its pipe closes, with every child.
    process = subprocess.Popen(
        [sys.executable, "-m", SERVER_MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert process.stdout is not None
        hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}
        _send(process, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
        assert json.loads(process.stdout.readline())["id"] == 1
        _send(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        setup = {"name": "setup", "arguments": {"name": "open_task", "arguments": {"task": "miniwob/click-test"}}}
        _send(process, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": setup})
        assert json.loads(process.stdout.readline())["result"]["isError"] is False
        tree = psutil.Process(process.pid).children(recursive=True)
        assert {"chromium"} <= {child.name() for child in tree}
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert alive == []


def test_browser_server_docstring_names_every_task() -> None:
    from hud_vf_gym.environments.browser import server

    assert server.__doc__ is not None
    for name in PAGE_TASKS:
        assert f"`{name}`" in server.__doc__
