"""One MCP server connection (hud_vf_gym/runtime/connection.py), on real stdio servers: start, request, failures, close.

`MCPSession` (tests/runtime/test_session.py) builds on this: it routes tool names and runs every server of a config.
Here each `ServerConnection` is driven by itself, the way a session does: `start()`, `wait_ready()`, `start_error()`,
`request(...)`, then `close_connections(...)`.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import psutil
import pytest
from mcp import ClientSession

from hud_vf_gym.errors import ServerConnectionError, ServerStartError, ServerTimeoutError
from hud_vf_gym.runtime.connection import ServerConnection, close_connections
from hud_vf_gym.runtime.mcp_compat import MCPError, is_error
from hud_vf_gym.runtime.servers import RemoteServer, StdioServer
from tests.support import ECHO_SERVER, TINY_SERVER, http_echo_server, processes_with

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_marked_process_left")]

HANG_GUARD_S = 30  # a cold echo server (importing mcp) starts in about a second; only a hang gets near this
SILENT_SERVER = "import sys; sys.stdin.read()"  # never answers `initialize`; exits when its stdin closes
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


def echo_server(marker: str) -> StdioServer:
    return StdioServer(command=sys.executable, args=[str(ECHO_SERVER), f"--marker={marker}"])


def tiny_server(marker: str, *options: str) -> StdioServer:
    return StdioServer(command=sys.executable, args=[str(TINY_SERVER), *options, f"--marker={marker}"])


def python_server(marker: str, code: str, *args: str) -> StdioServer:
    return StdioServer(command=sys.executable, args=["-c", code, f"--marker={marker}", *args])


@asynccontextmanager
async def started(
    entry: StdioServer, *, secrets: frozenset[str] = frozenset(), connect_timeout_s: float = HANG_GUARD_S
) -> AsyncIterator[ServerConnection]:
    """A started connection (connected, or failed to be: see `start_error()`), closed on exit."""
    connection = ServerConnection("server", entry, secrets, connect_timeout_s)
    try:
        with anyio.fail_after(HANG_GUARD_S):
            connection.start()
            await connection.wait_ready()
        yield connection
    finally:
        with anyio.fail_after(HANG_GUARD_S):
            await close_connections([connection])


def call(tool: str, **arguments: Any) -> Any:
    """The `send` function of a request that calls one tool."""

    async def send(client: ClientSession) -> Any:
        return await client.call_tool(tool, arguments)

    return send


def live_group_members(group: int) -> list[psutil.Process]:
    """Processes of a process group that still run (zombies do not: their code is gone, only the exit status waits)."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def text_of(result: Any) -> str:
    return "".join(block.text for block in result.content)


# -- starting and calling ---------------------------------------------------------------------------------------------


async def test_connection_starts_lists_tools_and_answers_requests(marker: str) -> None:
    async with started(echo_server(marker)) as connection:
        assert connection.start_error() is None
        assert connection.is_alive and not connection.faulted
        assert sorted(tool.name for tool in connection.tools) == ECHO_TOOLS
        assert connection.target == f"{sys.executable} {ECHO_SERVER} --marker={marker}"
        # the server leads its own process group, so the group id is the server's pid
        [server] = processes_with(marker)
        assert connection.process_group == server.pid and connection.process_running()
        result = await connection.request("the call to tool 'echo'", HANG_GUARD_S, call("echo", text="hi"))
        assert text_of(result) == "hi" and is_error(result) is False
    assert connection.is_finished and not connection.is_alive


async def test_connection_follows_tools_list_pagination(marker: str) -> None:
    async with started(tiny_server(marker, "--paged")) as connection:
        assert [tool.name for tool in connection.tools] == ["echo", "shout"]  # two pages, in order
        result = await connection.request("the call to tool 'shout'", HANG_GUARD_S, call("shout", text="hi"))
        assert text_of(result) == "HI"


async def test_connection_is_usable_from_tasks_other_than_the_one_that_started_it(marker: str) -> None:
    # anyio cancel scopes must exit in the task that entered them: the connection's own owner task holds them
    connection = ServerConnection("server", echo_server(marker), frozenset(), HANG_GUARD_S)

    async def start(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        connection.start()
        await connection.wait_ready()
        task_status.started()

    with anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as task_group:
            await task_group.start(start)
        result = await connection.request("the call to tool 'echo'", HANG_GUARD_S, call("echo", text="across"))
        assert text_of(result) == "across"
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(close_connections, [connection])
    assert connection.is_finished and processes_with(marker) == []


# -- failures of a request ------------------------------------------------------------------------------------------


async def test_request_past_its_timeout_raises_and_marks_the_connection_faulted(marker: str) -> None:
    async with started(echo_server(marker)) as connection:
        with pytest.raises(ServerTimeoutError) as caught:
            await connection.request("the call to tool 'sleep'", 0.5, call("sleep", seconds=HANG_GUARD_S))
        expected = f"MCP server 'server' ({connection.target}) did not answer the call to tool 'sleep' within 0.5 s; "
        assert str(caught.value).startswith(expected)
        # a late answer may still come, so a pool must not hand this connection on; the server itself is fine
        assert connection.faulted and connection.is_alive
        result = await connection.request("the call to tool 'echo'", HANG_GUARD_S, call("echo", text="still here"))
        assert text_of(result) == "still here"


async def test_json_rpc_error_answer_is_passed_on_and_is_no_fault(marker: str) -> None:
    async with started(echo_server(marker)) as connection:
        with pytest.raises(MCPError, match="URL elicitation required"):
            await connection.request("the call to tool 'needs_login'", HANG_GUARD_S, call("needs_login"))
        assert not connection.faulted and connection.is_alive


async def test_server_dying_mid_request_raises_connection_error_with_its_stderr(marker: str) -> None:
    async with started(echo_server(marker)) as connection:
        message = (
            f"MCP server 'server' ({connection.target}) closed the connection during the call to tool 'die': "
            "its process exited with status 7\n"
            "last lines of its stderr:\n  | echo server: dying on purpose"
        )
        with pytest.raises(ServerConnectionError, match=f"^{re.escape(message)}$"):
            await connection.request("the call to tool 'die'", HANG_GUARD_S, call("die"))
        assert connection.faulted and not connection.is_alive and not connection.process_running()
        # later requests fail at once, naming their own operation
        with pytest.raises(ServerConnectionError, match=re.escape("closed the connection during tools/list")):
            await connection.request("tools/list", HANG_GUARD_S, call("echo", text="anyone?"))


async def test_server_killed_while_idle_shows_before_the_next_request_fails(marker: str) -> None:
    async with started(tiny_server(marker)) as connection:
        assert connection.process_group is not None
        os.kill(connection.process_group, signal.SIGKILL)
        with anyio.fail_after(HANG_GUARD_S):
            while connection.process_running():  # what a pool checks before it hands a session out
                await anyio.sleep(0.01)
        with pytest.raises(ServerConnectionError, match=re.escape("closed the connection during the call to tool")):
            await connection.request("the call to tool 'echo'", HANG_GUARD_S, call("echo", text="x"))
        assert not connection.is_alive


# -- failures to start ------------------------------------------------------------------------------------------------


async def test_missing_command_is_a_start_error_with_its_cause() -> None:
    entry = StdioServer(command="hud-vf-gym-no-such-command", args=["run", "-i", "img"])
    async with started(entry) as connection:
        error = connection.start_error()
    assert isinstance(error, ServerStartError)
    assert str(error) == (
        "could not start MCP server 'server' (hud-vf-gym-no-such-command run -i img): "
        "FileNotFoundError: [Errno 2] No such file or directory: 'hud-vf-gym-no-such-command'"
    )
    assert error.__cause__ is not None  # `raise ... from`: the traceback shows where the start failed


async def test_server_silent_past_the_connect_timeout_is_a_start_error(marker: str) -> None:
    async with started(python_server(marker, SILENT_SERVER), connect_timeout_s=1.0) as connection:
        error = connection.start_error()
        assert connection.tools == [] and not connection.is_alive
    assert isinstance(error, ServerStartError)
    assert str(error).startswith(
        f"MCP server 'server' ({connection.target}) did not finish starting (initialize + tools/list) within 1 s; "
    )


async def test_start_error_hides_secrets_from_the_command_line_and_stderr(marker: str) -> None:
    secret = "tok-0123456789"
    code = "import sys; print('token', sys.argv[-1].split('=')[1], file=sys.stderr); sys.exit(3)"
    async with started(python_server(marker, code, f"--token={secret}"), secrets=frozenset({secret})) as connection:
        error = connection.start_error()
    assert connection.target == f"{sys.executable} -c {code} --marker={marker} --token=***"
    assert str(error) == (
        f"MCP server 'server' ({connection.target}) exited or closed the connection while starting: "
        "its process exited with status 3\n"
        "last lines of its stderr:\n  | token ***"
    )
    assert secret not in "".join(traceback.format_exception(error))  # its cause too, were one printed


# -- closing ----------------------------------------------------------------------------------------------------------


async def test_close_stops_the_server_and_everything_in_its_process_group(marker: str) -> None:
    async with started(tiny_server(marker, "--spawn-grandchild")) as connection:
        with anyio.fail_after(HANG_GUARD_S):
            while len(processes_with(marker)) < 2:  # the server and the child it leaves behind when it exits
                await anyio.sleep(0.01)
        group = connection.process_group
        assert group is not None
    assert connection.is_finished and processes_with(marker) == []
    assert live_group_members(group) == []


async def test_close_during_start_stops_the_server(marker: str) -> None:
    connection = ServerConnection("server", python_server(marker, SILENT_SERVER), frozenset(), HANG_GUARD_S)
    with anyio.fail_after(HANG_GUARD_S):
        connection.start()
        while not processes_with(marker):  # started, and waiting for an `initialize` answer that never comes
            await anyio.sleep(0.01)
        await close_connections([connection])
    assert connection.is_finished and not connection.is_alive
    assert isinstance(connection.start_error(), ServerStartError)
    assert processes_with(marker) == []


async def test_abandon_kills_the_server_without_awaiting_anything(marker: str) -> None:
    async with started(tiny_server(marker, "--spawn-grandchild")) as connection:
        with anyio.fail_after(HANG_GUARD_S):
            while len(processes_with(marker)) < 2:
                await anyio.sleep(0.01)
        connection.abandon()  # what runs at interpreter exit, when no event loop is left to close politely
        with anyio.fail_after(HANG_GUARD_S):
            while processes_with(marker):
                await anyio.sleep(0.01)
        assert not connection.process_running()


# -- a dead server is noticed at once (issue 15) ----------------------------------------------------------------------

# How soon a request waiting on a killed server must fail. Every request here is given HANG_GUARD_S, so only noticing
# the death (not the call timeout) can end it in time.
NOTICE_S = 1.0
# How long the tests let a request reach the server before killing it (killing earlier is the idle case, also covered).
IN_FLIGHT_S = 0.3


async def wait_for_processes(marker: str, count: int) -> None:
    """Wait until `count` processes carry `marker` (a server and the child it started)."""
    with anyio.fail_after(HANG_GUARD_S):
        while len(processes_with(marker)) < count:
            await anyio.sleep(0.01)


async def kill_during_request(connection: ServerConnection, pid: int, operation: str, send: Any) -> BaseException:
    """Start a request, SIGKILL `pid` while it waits, and return the error the request raised within NOTICE_S."""
    errors: list[BaseException] = []
    answered = anyio.Event()

    async def run_request() -> None:
        try:
            await connection.request(operation, HANG_GUARD_S, send)
        except Exception as exc:  # the error is the test's result
            errors.append(exc)
        answered.set()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(run_request)
        await anyio.sleep(IN_FLIGHT_S)
        os.kill(pid, signal.SIGKILL)
        with anyio.fail_after(NOTICE_S):
            await answered.wait()
    [error] = errors
    return error


@pytest.mark.parametrize("child_holds_stdout", [False, True], ids=["alone", "child-holds-stdout"])
async def test_server_killed_mid_call_fails_the_waiting_request_at_once(marker: str, child_holds_stdout: bool) -> None:
    options = ["--nap", "--spawn-grandchild"] if child_holds_stdout else ["--nap"]
    async with started(tiny_server(marker, *options)) as connection:
        await wait_for_processes(marker, 2 if child_holds_stdout else 1)
        assert connection.process_group is not None
        error = await kill_during_request(
            connection, connection.process_group, "the call to tool 'nap'", call("nap", seconds=HANG_GUARD_S)
        )
        assert isinstance(error, ServerConnectionError)
        assert str(error) == (
            f"MCP server 'server' ({connection.target}) closed the connection during the call to tool 'nap': "
            "its process was killed by signal 9 (SIGKILL)"
        )
        assert connection.faulted and not connection.is_alive
    assert processes_with(marker) == []  # the child that held stdout went with the server's process group


async def test_server_killed_while_idle_with_a_child_holding_stdout_is_noticed_at_once(marker: str) -> None:
    async with started(tiny_server(marker, "--spawn-grandchild")) as connection:
        await wait_for_processes(marker, 2)
        assert connection.process_group is not None
        os.kill(connection.process_group, signal.SIGKILL)
        with anyio.fail_after(NOTICE_S):
            while connection.is_alive:  # no request is needed to see it: the process's exit is watched
                await anyio.sleep(0.01)
            with pytest.raises(ServerConnectionError) as caught:
                await connection.request("the call to tool 'echo'", HANG_GUARD_S, call("echo", text="x"))
        assert str(caught.value) == (
            f"MCP server 'server' ({connection.target}) closed the connection during the call to tool 'echo': "
            "its process was killed by signal 9 (SIGKILL)"
        )


async def test_server_exiting_mid_call_names_its_exit_status_and_last_stderr_line(marker: str) -> None:
    async with started(echo_server(marker)) as connection:
        with anyio.fail_after(NOTICE_S * 5), pytest.raises(ServerConnectionError) as caught:  # it exits by itself
            await connection.request("the call to tool 'die'", HANG_GUARD_S, call("die", exit_code=7))
        assert str(caught.value) == (
            f"MCP server 'server' ({connection.target}) closed the connection during the call to tool 'die': "
            "its process exited with status 7\nlast lines of its stderr:\n  | echo server: dying on purpose"
        )


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_remote_server_killed_mid_call_fails_the_waiting_request_at_once(marker: str, transport: str) -> None:
    async with http_echo_server(marker, transport, start_timeout_s=HANG_GUARD_S) as (url, process):
        connection = ServerConnection("remote", RemoteServer(url=url), frozenset(), HANG_GUARD_S)
        try:
            with anyio.fail_after(HANG_GUARD_S):
                connection.start()
                await connection.wait_ready()
            assert connection.start_error() is None
            error = await kill_during_request(
                connection, process.pid, "the call to tool 'sleep'", call("sleep", seconds=HANG_GUARD_S)
            )
            assert isinstance(error, ServerConnectionError)
            assert str(error).startswith(
                f"MCP server 'remote' ({url}) closed the connection during the call to tool 'sleep': "
            )
            assert not connection.is_alive
        finally:
            with anyio.fail_after(HANG_GUARD_S):
                await close_connections([connection])


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_remote_server_killed_while_idle_fails_the_next_request_at_once(marker: str, transport: str) -> None:
    async with http_echo_server(marker, transport, start_timeout_s=HANG_GUARD_S) as (url, process):
        connection = ServerConnection("remote", RemoteServer(url=url), frozenset(), HANG_GUARD_S)
        try:
            with anyio.fail_after(HANG_GUARD_S):
                connection.start()
                await connection.wait_ready()
            process.kill()
            process.wait()
            with anyio.fail_after(NOTICE_S), pytest.raises(ServerConnectionError) as caught:
                await connection.request("the call to tool 'echo'", HANG_GUARD_S, call("echo", text="x"))
            assert str(caught.value).startswith(
                f"MCP server 'remote' ({url}) closed the connection during the call to tool 'echo'"
            )
        finally:
            with anyio.fail_after(HANG_GUARD_S):
                await close_connections([connection])
