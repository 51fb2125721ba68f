"""Tests for MCPSession (hud_vf_gym/runtime/session.py), against real FastMCP servers over stdio and HTTP."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.abc
import pytest

from hud_vf_gym.config import Timeouts, parse_config
from hud_vf_gym.core.grade import extract_grade, is_failed_tool_result
from hud_vf_gym.errors import ConfigError, ServerConnectionError, ServerStartError, ServerTimeoutError
from hud_vf_gym.runtime.session import MCPSession
from hud_vf_gym.types import Grade, ImageData, ToolResult
from tests.support import ECHO_SERVER, TINY_SERVER, new_marker, processes_with

# Bounds every test against hangs. A cold server start (importing mcp) takes about half a second; a hang is the
# only thing that gets near this.
HANG_GUARD_S = 30
# what the SDK answers when a tool raises: up to mcp 2.0 with the exception's text; later releases log the text and
# send only the prefix
CRASH_TEXTS = ("Error executing tool raise_error: the tool broke", "Error executing tool raise_error")
# A server that never answers `initialize` (and exits when its stdin closes).
SILENT_SERVER = "import sys; sys.stdin.read()"
ECHO_TOOLS = [
    "die",
    "echo",
    "evaluate",
    "evaluate_error",
    "fail",
    "grade_text",
    "image",
    "needs_login",
    "raise_error",
    "show_env",
    "sleep",
]


pytestmark = pytest.mark.usefixtures("no_marked_process_left")


def echo_entry(marker: str, *extra_args: str) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(ECHO_SERVER), f"--marker={marker}", *extra_args]}


def echo_command(marker: str) -> str:
    """The echo server's command line as error messages quote it."""
    return f"{sys.executable} {ECHO_SERVER} --marker={marker}"


def python_entry(marker: str, code: str) -> dict[str, Any]:
    return {"command": sys.executable, "args": ["-c", code, f"--marker={marker}"]}


@pytest.fixture(scope="module")
async def echo_session() -> AsyncIterator[MCPSession]:
    # Opened in the fixture's task and used from each test's task: the session must not care which task calls it.
    marker = new_marker()
    with anyio.fail_after(HANG_GUARD_S):
        session = await MCPSession.open({"echo": echo_entry(marker)})
    yield session
    with anyio.fail_after(HANG_GUARD_S):
        await session.aclose()
    assert processes_with(marker) == []


# ---------------------------------------------------------------------------------------------------------------
# Tool calls and results
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_session_lists_tools_by_server_name(echo_session: MCPSession) -> None:
    assert sorted(echo_session.tools) == ECHO_TOOLS
    assert echo_session.server_names == ("echo",)
    echo = echo_session.tools["echo"]
    assert (echo.name, echo.description) == ("echo", "Return the text unchanged.")
    assert echo.input_schema["properties"]["text"]["description"] == "What to send back."
    with anyio.fail_after(HANG_GUARD_S):
        assert sorted(await echo_session.list_tools()) == ECHO_TOOLS


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("echo", {"text": "hi"}, ToolResult(text="hi", structured={"result": "hi"})),
        ("fail", {}, ToolResult(text="ERROR: Cannot move left - no valid moves in that direction")),
        ("raise_error", {}, ToolResult(text=CRASH_TEXTS[0], is_error=True)),
        ("needs_login", {}, ToolResult(text="URL elicitation required", is_error=True)),
        ("grade_text", {"grade": 0.5}, ToolResult(text='{"grade": 0.5, "done": false}')),
    ],
    ids=["text", "error-text-with-is-error-false", "tool-raised", "json-rpc-error", "text-only"],
)
async def test_call_tool_returns_tool_failures_as_results(
    echo_session: MCPSession, tool: str, arguments: dict[str, Any], expected: ToolResult
) -> None:
    with anyio.fail_after(HANG_GUARD_S):
        result = await echo_session.call_tool(tool, arguments)
    if tool == "raise_error":
        assert result.text in CRASH_TEXTS and result.is_error
    else:
        assert result == expected


@pytest.mark.anyio
async def test_call_tool_reports_invalid_arguments_as_result(echo_session: MCPSession) -> None:
    with anyio.fail_after(HANG_GUARD_S):
        result = await echo_session.call_tool("echo", {"wrong": 1})
    assert result.is_error
    assert result.text.startswith(
        "Error executing tool echo: 1 validation error for echoArguments\ntext\n  Field required"
    )


@pytest.mark.anyio
async def test_call_tool_normalises_images(echo_session: MCPSession) -> None:
    with anyio.fail_after(HANG_GUARD_S):
        result = await echo_session.call_tool("image", {})
    assert result.text == "clicked"
    assert result.images == (ImageData(result.images[0].data, "image/png"),)
    assert result.images[0].data.startswith("iVBORw0KGgo")  # base64 of the PNG signature
    assert not is_failed_tool_result(result)


@pytest.mark.anyio
async def test_grades_from_real_evaluate_results(echo_session: MCPSession) -> None:
    with anyio.fail_after(HANG_GUARD_S):
        evaluated = await echo_session.call_tool("evaluate", {"reward": 0.25, "done": False})
        failed = await echo_session.call_tool("evaluate_error", {})
        text_only = await echo_session.call_tool("grade_text", {"grade": 0.75})
    assert extract_grade([evaluated]) == Grade(
        0.25, False, "reward 0.25", {"source": "echo"}, False, "structuredContent.reward"
    )
    assert extract_grade([failed]) == Grade(
        0.0, content="the evaluator reported isError: true: sheet not found", is_error=True
    )
    assert extract_grade([failed, text_only]) == Grade(0.75, source="text.grade")


@pytest.mark.anyio
async def test_cancelled_call_leaves_session_usable(echo_session: MCPSession) -> None:
    with anyio.fail_after(HANG_GUARD_S):
        with anyio.move_on_after(0.2) as scope:
            await echo_session.call_tool("sleep", {"seconds": HANG_GUARD_S})
        assert scope.cancelled_caught
        assert echo_session.is_alive
        assert (await echo_session.call_tool("echo", {"text": "after"})).text == "after"


@pytest.mark.anyio
async def test_call_tool_unknown_name(echo_session: MCPSession) -> None:
    message = f"no MCP server offers a tool named 'jump'; available tools: {', '.join(ECHO_TOOLS)}"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        await echo_session.call_tool("jump", {})


@pytest.mark.anyio
async def test_session_resolves_templates_in_env(marker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUD_VF_GYM_TEST_GREETING", "hello from os.environ")
    config = {"echo": {**echo_entry(marker), "env": {"GREETING": "${HUD_VF_GYM_TEST_GREETING}", "OTHER": "${X:-dflt}"}}}
    with anyio.fail_after(HANG_GUARD_S):
        async with await MCPSession.open(config) as session:
            assert (await session.call_tool("show_env", {"name": "GREETING"})).text == "hello from os.environ"
            assert (await session.call_tool("show_env", {"name": "OTHER"})).text == "dflt"
        async with await MCPSession.open(config, environ={"HUD_VF_GYM_TEST_GREETING": "hi"}) as session:
            assert (await session.call_tool("show_env", {"name": "GREETING"})).text == "hi"


# ---------------------------------------------------------------------------------------------------------------
# Several servers
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_two_servers_prefix_tool_names_and_route_calls(marker: str) -> None:
    config = {
        "alpha": echo_entry(marker, "--extra-tool=only_alpha"),
        "beta": echo_entry(marker, "--extra-tool=only_beta"),
    }
    with anyio.fail_after(HANG_GUARD_S):
        async with await MCPSession.open(config) as session:
            assert session.server_names == ("alpha", "beta")
            assert sorted(session.tools) == sorted(
                [f"alpha_{tool}" for tool in [*ECHO_TOOLS, "only_alpha"]]
                + [f"beta_{tool}" for tool in [*ECHO_TOOLS, "only_beta"]]
            )
            assert session.tools["beta_echo"].name == "beta_echo"
            assert (await session.call_tool("alpha_echo", {"text": "A"})).text == "A"
            assert (await session.call_tool("beta_only_beta", {})).text == "only_beta"
            # an unprefixed name is accepted when only one server has it
            assert (await session.call_tool("only_alpha", {})).text == "only_alpha"
            with pytest.raises(
                ConfigError, match=re.escape("no MCP server offers a tool named 'echo'; available tools: alpha_die")
            ):
                await session.call_tool("echo", {"text": "which server?"})


# ---------------------------------------------------------------------------------------------------------------
# Infrastructure failures
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_server_dying_mid_call_raises_connection_error(marker: str) -> None:
    with anyio.fail_after(HANG_GUARD_S):
        async with await MCPSession.open({"echo": echo_entry(marker)}) as session:
            message = (
                f"MCP server 'echo' ({echo_command(marker)}) closed the connection during the call to tool 'die': "
                "its process exited with status 7\nlast lines of its stderr:\n  | echo server: dying on purpose"
            )
            with pytest.raises(ServerConnectionError, match=f"^{re.escape(message)}$"):
                await session.call_tool("die", {})
            assert not session.is_alive
            with pytest.raises(
                ServerConnectionError, match=re.escape("closed the connection during the call to tool 'echo'")
            ):
                await session.call_tool("echo", {"text": "anyone there?"})


@pytest.mark.anyio
async def test_call_that_never_answers_raises_timeout_error(marker: str) -> None:
    with anyio.fail_after(HANG_GUARD_S):
        async with await MCPSession.open({"echo": echo_entry(marker)}) as session:
            message = (
                f"MCP server 'echo' ({echo_command(marker)}) did not answer the call to tool 'sleep' within 1 s;"
                " pass a larger timeout_s or raise timeouts.tool_call_s if it is legitimately slow"
            )
            with pytest.raises(ServerTimeoutError, match=f"^{re.escape(message)}$"):
                await session.call_tool("sleep", {"seconds": HANG_GUARD_S}, timeout_s=1.0)
            # the connection itself is fine
            assert session.is_alive
            assert (await session.call_tool("echo", {"text": "still here"})).text == "still here"


@pytest.mark.anyio
async def test_call_timeout_defaults_to_timeouts_tool_call_s(marker: str) -> None:
    with anyio.fail_after(HANG_GUARD_S):
        async with await MCPSession.open({"echo": echo_entry(marker)}, timeouts=Timeouts(tool_call_s=0.5)) as session:
            with pytest.raises(
                ServerTimeoutError, match=re.escape("did not answer the call to tool 'sleep' within 0.5 s")
            ):
                await session.call_tool("sleep", {"seconds": HANG_GUARD_S})


@pytest.mark.anyio
async def test_missing_command_raises_start_error() -> None:
    message = (
        "could not start MCP server 'local' (hud-vf-gym-no-such-command run -i img): "
        "FileNotFoundError: [Errno 2] No such file or directory: 'hud-vf-gym-no-such-command'"
    )
    with anyio.fail_after(HANG_GUARD_S), pytest.raises(ServerStartError, match=f"^{re.escape(message)}$"):
        await MCPSession.open({"local": {"command": "hud-vf-gym-no-such-command", "args": ["run", "-i", "img"]}})


@pytest.mark.anyio
async def test_server_exiting_during_start_raises_start_error_without_secrets(marker: str) -> None:
    code = "import os, sys; print('token is', os.environ['API_TOKEN'], file=sys.stderr); sys.exit(3)"
    entry = python_entry(marker, code)
    config = {
        "local": {**entry, "args": [*entry["args"], "--token=${SECRET_TOKEN}"], "env": {"API_TOKEN": "${SECRET_TOKEN}"}}
    }
    message = (
        f"MCP server 'local' ({sys.executable} -c {code} --marker={marker} --token=***) exited or closed the "
        "connection while starting: its process exited with status 3\nlast lines of its stderr:\n  | token is ***"
    )
    with anyio.fail_after(HANG_GUARD_S), pytest.raises(ServerStartError, match=f"^{re.escape(message)}$"):
        await MCPSession.open(config, environ={"SECRET_TOKEN": "tok-0123456789"})


@pytest.mark.anyio
async def test_server_silent_during_start_raises_start_error(marker: str) -> None:
    message = (
        f"MCP server 'silent' ({sys.executable} -c {SILENT_SERVER} --marker={marker}) did not finish starting "
        "(initialize + tools/list) within 1 s; raise timeouts.connect_s if it is slow to start"
    )
    with anyio.fail_after(HANG_GUARD_S), pytest.raises(ServerStartError, match=f"^{re.escape(message)}$"):
        await MCPSession.open({"silent": python_entry(marker, SILENT_SERVER)}, timeouts=Timeouts(connect_s=1.0))


@pytest.mark.anyio
async def test_one_failing_server_closes_the_others(marker: str) -> None:
    config = {"good": echo_entry(marker), "bad": {"command": "hud-vf-gym-no-such-command"}}
    with (
        anyio.fail_after(HANG_GUARD_S),
        pytest.raises(ServerStartError, match=re.escape("could not start MCP server 'bad'")),
    ):
        await MCPSession.open(config)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.anyio
async def test_refused_connection_raises_start_error_without_secrets() -> None:
    port = unused_port()
    config = {"remote": {"url": f"http://127.0.0.1:{port}/mcp", "headers": {"Authorization": "Bearer ${HUD_API_KEY}"}}}
    message = (
        f"could not start MCP server 'remote' (http://127.0.0.1:{port}/mcp): "
        "ConnectError: All connection attempts failed"
    )
    with anyio.fail_after(HANG_GUARD_S), pytest.raises(ServerStartError, match=f"^{re.escape(message)}$"):
        await MCPSession.open(config, environ={"HUD_API_KEY": "sk-hud-0123456789"})


@pytest.mark.anyio
async def test_hub_without_api_key_fails_before_connecting() -> None:
    config = {"hud": {"url": "https://mcp.hud.ai/v3/mcp", "headers": {"Authorization": "Bearer ${HUD_API_KEY}"}}}
    with pytest.raises(ConfigError, match=re.escape("export HUD_API_KEY=...")):
        await MCPSession.open(config, environ={})


def test_timeouts_must_be_positive() -> None:
    # a session applies the config's `timeouts` section (rollout_s is the episode's, not the session's)
    assert Timeouts() == Timeouts(connect_s=30.0, tool_call_s=60.0, rollout_s=1800.0)
    raw = {"system_prompt": "p", "action_mappings": {"a": {}}, "timeouts": {"tool_call_s": 0}}
    with pytest.raises(ConfigError, match=re.escape("timeouts.tool_call_s: Input should be greater than 0 [input: 0]")):
        parse_config(raw)


# ---------------------------------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_redacted_config_hides_credentials(marker: str) -> None:
    config = {"echo": {**echo_entry(marker), "env": {"OPENAI_API_KEY": "${OPENAI_API_KEY}", "MODE": "${MODE}"}}}
    environ = {"OPENAI_API_KEY": "sk-openai-0123456789", "MODE": "fast"}
    with anyio.fail_after(HANG_GUARD_S):
        async with await MCPSession.open(config, environ=environ) as session:
            assert session.redacted_config == {
                # every value a ${VAR} resolved to is hidden, whatever the variable's name
                "echo": {**echo_entry(marker), "env": {"OPENAI_API_KEY": "***", "MODE": "***"}}
            }
            assert "sk-openai-0123456789" not in repr(vars(session))


# ---------------------------------------------------------------------------------------------------------------
# Lifecycle: tasks, cancellation, no process left behind
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_session_opened_in_one_task_is_used_and_closed_from_others(marker: str) -> None:
    async def open_session(*, task_status: anyio.abc.TaskStatus[MCPSession]) -> None:
        task_status.started(await MCPSession.open({"echo": echo_entry(marker)}))

    with anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as task_group:
            session = await task_group.start(open_session)
        assert processes_with(marker) != []
        assert (await session.call_tool("echo", {"text": "across tasks"})).text == "across tasks"
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(session.aclose)
    assert not session.is_alive
    assert processes_with(marker) == []


@pytest.mark.anyio
async def test_aclose_is_idempotent_and_refuses_later_calls(marker: str) -> None:
    with anyio.fail_after(HANG_GUARD_S):
        session = await MCPSession.open({"echo": echo_entry(marker)})
        await session.aclose()
        await session.aclose()
    assert not session.is_alive
    message = "cannot call tool 'echo': the MCP session to echo is closed; open a new one"
    with pytest.raises(ServerConnectionError, match=f"^{re.escape(message)}$"):
        await session.call_tool("echo", {"text": "too late"})


@pytest.mark.anyio
async def test_cancelling_a_task_mid_call_leaves_no_process(marker: str) -> None:
    calling = anyio.Event()

    async def hold_session() -> None:
        async with await MCPSession.open({"echo": echo_entry(marker)}) as session:
            calling.set()
            await session.call_tool("sleep", {"seconds": HANG_GUARD_S})

    with anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(hold_session)
            await calling.wait()
            assert processes_with(marker) != []
            task_group.cancel_scope.cancel()
    assert processes_with(marker) == []


@pytest.mark.anyio
async def test_cancelling_open_mid_start_leaves_no_process(marker: str) -> None:
    with anyio.fail_after(HANG_GUARD_S):
        with anyio.move_on_after(0.5) as scope:
            await MCPSession.open({"silent": python_entry(marker, SILENT_SERVER)})
        assert scope.cancelled_caught
    assert processes_with(marker) == []


@pytest.mark.anyio
@pytest.mark.parametrize("option", ["--spawn-grandchild", "--stubborn"], ids=["grandchild", "ignores-eof-and-sigterm"])
async def test_closing_awkward_servers_leaves_no_process(marker: str, option: str) -> None:
    with anyio.fail_after(HANG_GUARD_S):
        async with await MCPSession.open(
            {"tiny": {"command": sys.executable, "args": [str(TINY_SERVER), option, f"--marker={marker}"]}}
        ):
            assert processes_with(marker) != []
    assert processes_with(marker) == []


@pytest.mark.anyio
async def test_many_concurrent_sessions_leave_no_process(marker: str) -> None:
    limiter = anyio.CapacityLimiter(8)
    answers: list[str] = []

    async def one_rollout(index: int) -> None:
        config = {"tiny": {"command": sys.executable, "args": [str(TINY_SERVER), f"--marker={marker}"]}}
        async with limiter, await MCPSession.open(config) as session:
            answers.append((await session.call_tool("echo", {"text": str(index)})).text)

    with anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as task_group:
            for index in range(20):
                task_group.start_soon(one_rollout, index)
    assert sorted(answers, key=int) == [str(index) for index in range(20)]
    assert processes_with(marker) == []


# ---------------------------------------------------------------------------------------------------------------
# Remote transports (a real FastMCP server on 127.0.0.1)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["streamable-http", "sse"])
def http_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """Serve the echo server over HTTP on a free port; yield its URL (the path selects the transport)."""
    transport = request.param
    port = unused_port()
    process = subprocess.Popen(
        [sys.executable, str(ECHO_SERVER), f"--transport={transport}", f"--port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/{'sse' if transport == 'sse' else 'mcp'}"
    finally:
        process.kill()
        process.wait()


def wait_for_port(port: int) -> None:
    for _ in range(HANG_GUARD_S * 20):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the test server did not listen on port {port}")


@pytest.mark.anyio
async def test_remote_server_over_http_and_sse(http_server: str) -> None:
    config = {"remote": {"url": http_server, "headers": {"Authorization": "Bearer ${TOKEN}"}}}
    with anyio.fail_after(HANG_GUARD_S):
        async with await MCPSession.open(config, environ={"TOKEN": "tok-0123456789"}) as session:
            assert sorted(session.tools) == ECHO_TOOLS
            assert (await session.call_tool("echo", {"text": "over the wire"})).text == "over the wire"
            with pytest.raises(ServerTimeoutError):
                await session.call_tool("sleep", {"seconds": HANG_GUARD_S}, timeout_s=0.5)
            assert session.redacted_config == {"remote": {"url": http_server, "headers": {"Authorization": "***"}}}


@pytest.mark.anyio
async def test_illegal_header_error_hides_the_secret_everywhere(http_server: str) -> None:
    # A key read from a file with its trailing newline: h11 refuses the header and quotes it (hud-python#110).
    config = {"remote": {"url": http_server, "headers": {"Authorization": "Bearer ${TOKEN}"}}}
    message = (
        f"could not start MCP server 'remote' ({http_server}): "
        "LocalProtocolError: Illegal header value b'Bearer ***\\n'"
    )
    secret = "tok-0123456789"
    environ = {"TOKEN": secret + "\n"}  # kept off the line that raises, which the traceback quotes
    with anyio.fail_after(HANG_GUARD_S), pytest.raises(ServerStartError, match=f"^{re.escape(message)}$") as caught:
        await MCPSession.open(config, environ=environ)
    assert caught.value.__cause__ is None  # chaining the cause would print the key in every traceback
    assert secret not in "".join(traceback.format_exception(caught.value))
