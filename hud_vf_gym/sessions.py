"""MCP sessions: one connection to every server of a task's `mcp_config`.

Lifecycle of an `MCPSession`:

1. `MCPSession.open(mcp_config)` resolves `${VAR}` templates (from `os.environ` unless told otherwise), validates
   every server entry (all problems in one `ConfigError`), refuses a HUD hub entry whose API key is empty, and
   starts or connects every server at once.
2. Each server gets a background asyncio task, its *owner*, that enters the transport (`stdio_client`,
   `streamable_http_client` or `sse_client`) and the `ClientSession`, runs `initialize` and `tools/list` within
   `Timeouts.connect_s`, then waits to be told to close. anyio cancel scopes must exit in the task that entered
   them; the owner keeps that promise while the session itself is opened, used and closed from any tasks.
3. `call_tool` routes the agent-visible tool name to its server and waits at most `Timeouts.call_s`. A tool's own
   failure (MCP `isError`, a JSON-RPC error) is a normal `ToolResult(is_error=True)`: the model can learn from it.
   Infrastructure failures raise `ServerTimeoutError` or `ServerConnectionError`.
4. `aclose()` tells every owner to exit (mcp's stdio shutdown: close stdin, wait, SIGTERM, SIGKILL on the process
   group), waits at most `CLOSE_TIMEOUT_S`, then cancels the owners, which kills what is left. It is shielded from
   the caller's cancellation and may be called any number of times.

The session needs the asyncio backend (verifiers and TRL both run on asyncio). The resolved config, which holds
secrets, is kept only inside the private per-server connections; `redacted_config` is the copy that may be logged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TextIO, TypeVar

import anyio
import httpx
import mcp.types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import ClientSession, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.shared.message import SessionMessage

from hud_vf_gym.errors import ConfigError, MCPServerError, ServerConnectionError, ServerStartError, ServerTimeoutError
from hud_vf_gym.grading import normalize_result
from hud_vf_gym.mcp_config import (
    RemoteServer,
    ServerEntry,
    StdioServer,
    check_hub_credentials,
    parse_mcp_config,
)
from hud_vf_gym.templates import redact, redact_text, resolve_templates, secret_values
from hud_vf_gym.types import ToolResult, ToolSpec

__all__ = [
    "CLOSE_TIMEOUT_S",
    "DEFAULT_CALL_TIMEOUT_S",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "FORCED_CLOSE_TIMEOUT_S",
    "MCPSession",
    "RemoteServer",
    "ServerEntry",
    "StdioServer",
    "Timeouts",
    "check_hub_credentials",
    "parse_mcp_config",
]

logger = logging.getLogger(__name__)

# Starting a local server (or pulling a small docker image) and listing its tools takes seconds; a server that has
# not answered `initialize` and `tools/list` after 30 s is broken. HUD waits 600 s, which turns a missing API key
# into a 10-minute hang (hud-python#110).
DEFAULT_CONNECT_TIMEOUT_S = 30.0
# One game move or one browser action answers in well under a second; a minute covers a slow page load.
DEFAULT_CALL_TIMEOUT_S = 60.0
# mcp's stdio shutdown waits 2 s after closing stdin, sends SIGTERM, waits 2 s more, then SIGKILLs the group:
# 4 s plus a margin. An HTTP session also sends one DELETE to end the server-side session.
CLOSE_TIMEOUT_S = 5.0
# After cancelling an owner that did not close in time, how long to wait for it; cancellation kills the child
# process at once, so this only waits for the event loop to reap it.
FORCED_CLOSE_TIMEOUT_S = 1.0
# How long a failed call waits for a remote server's owner task to record why its transport broke, so the
# error can say (for example) "502 Bad Gateway" instead of only "connection closed".
_FAILURE_REPORT_WAIT_S = 0.5
# An idle HTTP response stream may stay open this long before httpx gives up on it (mcp's own default).
_HTTP_READ_TIMEOUT_S = 300.0
# How much of a stdio server's stderr an error message quotes.
_STDERR_TAIL_BYTES = 4096
_STDERR_TAIL_LINES = 12

_ResultT = TypeVar("_ResultT")
_Streams = tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long to wait for MCP servers; every external wait is bounded (HUD's 600 s is not a default).

    Attributes:
        connect_s: start or connect one server, `initialize` it and list its tools.
        call_s: one tool call (or a `tools/list` refresh).
    """

    connect_s: float = DEFAULT_CONNECT_TIMEOUT_S
    call_s: float = DEFAULT_CALL_TIMEOUT_S

    def __post_init__(self) -> None:
        """Refuse timeouts that are not positive numbers."""
        for name in ("connect_s", "call_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"Timeouts.{name} must be a positive number of seconds, got {value!r}")


# ---------------------------------------------------------------------------------------------------------------
# One server connection, owned by a background task
# ---------------------------------------------------------------------------------------------------------------

_CONNECTION_LOST_ERRORS = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    BrokenPipeError,
    ConnectionError,
)


class _ServerConnection:
    """One server of a session: the background task that owns its transport and `ClientSession`."""

    def __init__(self, name: str, entry: ServerEntry, secrets: frozenset[str], connect_timeout_s: float) -> None:
        self.name = name
        self.tools: list[mcp.types.Tool] = []
        self._entry = entry  # resolved: holds secrets, never logged
        self._secrets = secrets
        self._connect_timeout_s = connect_timeout_s
        self.target = self._redact(
            entry.url if isinstance(entry, RemoteServer) else " ".join([entry.command, *entry.args])
        )
        self._client: ClientSession | None = None
        self._failure: Exception | None = None
        self._timed_out = False
        self._lost = False
        self._ready = anyio.Event()
        self._finished = anyio.Event()
        self._close_requested = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._startup_scope: anyio.CancelScope | None = None
        self._task: asyncio.Task[None] | None = None
        self._stderr: TextIO | None = None
        if isinstance(entry, StdioServer):
            self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")

    @property
    def is_alive(self) -> bool:
        """Whether the connection is up and no call has seen it drop."""
        return self._client is not None and not self._lost and not self._finished.is_set()

    @property
    def is_finished(self) -> bool:
        """Whether the owner task has exited its contexts (or never started)."""
        return self._task is None or self._finished.is_set()

    def start(self) -> None:
        """Start the owner task."""
        self._task = asyncio.get_running_loop().create_task(self._own(), name=f"mcp-server-{self.name}")

    async def wait_ready(self) -> None:
        """Wait until the server is connected, or failed to be."""
        await self._ready.wait()

    async def _own(self) -> None:
        """Connect, then hold the transport and the session open until asked to close."""
        try:
            # A backstop for a transport that hangs while opening (an SSE endpoint that never sends its first
            # event) or while shutting down after a failed start; lifted once the server is up.
            with anyio.CancelScope(deadline=anyio.current_time() + self._connect_timeout_s + CLOSE_TIMEOUT_S) as scope:
                self._scope = scope
                async with AsyncExitStack() as stack:
                    if await self._connect(stack):
                        scope.deadline = math.inf
                        self._ready.set()
                        await self._close_requested.wait()
            self._timed_out = self._timed_out or (scope.cancelled_caught and self._client is None)
        except Exception as exc:  # the owner must not die with an unretrieved exception: callers read it instead
            self._failure = exc
        finally:
            self._ready.set()
            self._finished.set()

    async def _connect(self, stack: AsyncExitStack) -> bool:
        """Open the transport and the session on `stack`, then initialise and list tools within the timeout.

        The timeout covers only the requests, not the contexts, so that a server that fails to answer in time is
        still shut down politely (stdin closed first) when `stack` exits: a `docker run` client killed outright
        would leave its container running.
        """
        read_stream, write_stream = await stack.enter_async_context(self._transport())
        client = await stack.enter_async_context(ClientSession(read_stream, write_stream))
        with anyio.CancelScope(deadline=anyio.current_time() + self._connect_timeout_s) as startup_scope:
            self._startup_scope = startup_scope
            await client.initialize()
            self.tools = await _list_all_tools(client)
            self._client = client
        self._startup_scope = None
        self._timed_out = startup_scope.cancelled_caught and not self._close_requested.is_set()
        return self._client is not None

    def _transport(self) -> AbstractAsyncContextManager[_Streams]:
        """The mcp transport for this entry, yielding the read and write streams."""
        entry = self._entry
        if isinstance(entry, StdioServer):
            parameters = StdioServerParameters(
                command=entry.command, args=entry.args, env=entry.env or None, cwd=entry.cwd
            )
            assert self._stderr is not None  # created in __init__ for every stdio entry
            return stdio_client(parameters, errlog=self._stderr)
        if entry.uses_sse:
            return sse_client(
                entry.url, headers=entry.headers, timeout=self._connect_timeout_s, sse_read_timeout=_HTTP_READ_TIMEOUT_S
            )
        return _streamable_http_transport(entry.url, entry.headers, self._connect_timeout_s)

    async def request(
        self, operation: str, timeout_s: float, send: Callable[[ClientSession], Awaitable[_ResultT]]
    ) -> _ResultT:
        """Run one request on the session, mapping timeouts and lost connections to our errors."""
        if self._client is None or not self.is_alive:
            raise await self._connection_error(operation, cause=None)
        try:
            with anyio.fail_after(timeout_s):
                return await send(self._client)
        except TimeoutError as exc:
            raise ServerTimeoutError(
                f"MCP server {self.name!r} ({self.target}) did not answer {operation} within {timeout_s:g} s; "
                f"pass a larger timeout_s or raise Timeouts.call_s if it is legitimately slow"
            ) from exc
        except McpError as exc:
            if not _is_connection_closed(exc):
                raise
            raise await self._connection_error(operation, cause=None) from exc
        except _CONNECTION_LOST_ERRORS as exc:
            raise await self._connection_error(operation, cause=exc) from exc

    async def _connection_error(self, operation: str, cause: BaseException | None) -> ServerConnectionError:
        """Mark the connection lost and describe why, with the transport's failure and the server's stderr."""
        self._lost = True
        if isinstance(self._entry, RemoteServer):
            with anyio.move_on_after(_FAILURE_REPORT_WAIT_S):
                await self._finished.wait()
        why = _describe_exception(self._failure or cause)
        message = f"MCP server {self.name!r} ({self.target}) closed the connection during {operation}"
        return ServerConnectionError(self._redact(message + (f": {why}" if why else "") + self._stderr_tail()))

    def start_error(self) -> ServerStartError | None:
        """The error to raise when the server did not start, or None when it did."""
        if self._client is not None and self._failure is None:
            return None
        if self._timed_out:
            message = (
                f"MCP server {self.name!r} ({self.target}) did not finish starting (initialize + tools/list) "
                f"within {self._connect_timeout_s:g} s; raise Timeouts.connect_s if it is slow to start"
            )
        elif _is_connection_closed(_innermost(self._failure)):
            message = f"MCP server {self.name!r} ({self.target}) exited or closed the connection while starting"
        else:
            message = f"could not start MCP server {self.name!r} ({self.target}): {_describe_exception(self._failure)}"
        return ServerStartError(self._redact(message + self._stderr_tail()))

    def request_close(self) -> None:
        """Tell the owner task to exit its contexts (stopping a start in progress), which shuts the server down."""
        self._close_requested.set()
        if self._startup_scope is not None:
            self._startup_scope.cancel()

    def force_close(self) -> None:
        """Cancel the owner task's scope: the transport kills the child process instead of waiting for it."""
        if self._scope is not None:
            self._scope.cancel()
        elif self._task is not None:  # not started running yet: it never will, so nothing else sets the events
            self._task.cancel()
            self._ready.set()
            self._finished.set()

    async def wait_finished(self) -> None:
        """Wait until the owner task has exited its contexts."""
        if not self.is_finished:
            await self._finished.wait()

    def release(self) -> None:
        """Free what outlives the owner task: the stderr capture file."""
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _stderr_tail(self) -> str:
        """The last lines the stdio server wrote to stderr, formatted for an error message ("" when none)."""
        if self._stderr is None:
            return ""
        descriptor = self._stderr.fileno()
        size = os.fstat(descriptor).st_size
        tail_bytes = os.pread(descriptor, _STDERR_TAIL_BYTES, max(0, size - _STDERR_TAIL_BYTES))
        text = tail_bytes.decode("utf-8", errors="replace")
        lines = [line.rstrip() for line in text.splitlines() if line.strip()][-_STDERR_TAIL_LINES:]
        return "".join(["\nlast lines of its stderr:", *(f"\n  | {line}" for line in lines)]) if lines else ""

    def _redact(self, text: str) -> str:
        """Hide this config's secrets in a message."""
        return redact_text(text, self._secrets)


@asynccontextmanager
async def _streamable_http_transport(
    url: str, headers: Mapping[str, str], connect_timeout_s: float
) -> AsyncIterator[_Streams]:
    """Open mcp's streamable HTTP transport with our headers and connect timeout, yielding only the two streams."""
    timeout = httpx.Timeout(connect_timeout_s, read=_HTTP_READ_TIMEOUT_S)
    async with (
        httpx.AsyncClient(headers=dict(headers), timeout=timeout) as http_client,
        streamable_http_client(url, http_client=http_client) as (read_stream, write_stream, _session_id),
    ):
        yield read_stream, write_stream


async def _list_all_tools(client: ClientSession) -> list[mcp.types.Tool]:
    """List every tool of a server, following pagination cursors."""
    tools: list[mcp.types.Tool] = []
    cursor: str | None = None
    while True:
        params = mcp.types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await client.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.nextCursor
        if not cursor:
            return tools


def _innermost(exc: BaseException | None) -> BaseException | None:
    """The first leaf of a (nested) exception group; any other exception itself."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _is_connection_closed(exc: BaseException | None) -> bool:
    """Whether `exc` is the error mcp gives pending requests when the server's stream ends."""
    return isinstance(exc, McpError) and exc.error.code == mcp.types.CONNECTION_CLOSED


def _describe_exception(exc: BaseException | None) -> str:
    """`Type: message` of an exception (the innermost one of a group), or "" for None."""
    exc = _innermost(exc)
    if exc is None:
        return ""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# ---------------------------------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------------------------------


class MCPSession:
    """One open connection to all the MCP servers of an `mcp_config`; create it with `MCPSession.open`."""

    def __init__(
        self, connections: Mapping[str, _ServerConnection], redacted_config: Mapping[str, Any], timeouts: Timeouts
    ) -> None:
        """Wrap started-or-not connections; use `MCPSession.open`, which also starts them."""
        self.redacted_config: Mapping[str, Any] = redacted_config
        """The resolved `mcp_config` with credentials replaced by `***`: safe to log and save."""
        self.timeouts = timeouts
        """The timeouts this session applies."""
        self.tools: dict[str, ToolSpec] = {}
        """Every tool by the name the agent uses (`<server>_<tool>` when there are several servers)."""
        self._connections = dict(connections)
        self._routes: dict[str, tuple[_ServerConnection, str]] = {}
        self._closing: anyio.Event | None = None

    @classmethod
    async def open(
        cls, mcp_config: Mapping[str, Any], *, timeouts: Timeouts = Timeouts(), environ: Mapping[str, str] | None = None
    ) -> MCPSession:
        """Resolve, validate and check `mcp_config`, then start every server and list its tools.

        Raises:
            ConfigError: the config is invalid, or a HUD hub entry has an empty API key.
            ServerStartError: a server could not be started, reached or initialised in time.
        """
        environment = os.environ if environ is None else environ
        resolved = resolve_templates(mcp_config, environment)
        entries = parse_mcp_config(resolved)
        check_hub_credentials(resolved, mcp_config)
        secrets = secret_values(mcp_config, resolved, environment)
        connections = {
            name: _ServerConnection(name, entry, secrets, timeouts.connect_s) for name, entry in entries.items()
        }
        session = cls(connections, redact(resolved, secrets), timeouts)
        await session._start()
        return session

    async def _start(self) -> None:
        """Start every server at once; on any failure close them all and raise."""
        try:
            for connection in self._connections.values():
                connection.start()
            for connection in self._connections.values():
                await connection.wait_ready()
        except BaseException:
            await self.aclose()
            raise
        errors = [error for connection in self._connections.values() if (error := connection.start_error())]
        if errors:
            await self.aclose()
            if len(errors) == 1:
                raise errors[0]
            raise ServerStartError("\n".join([f"{len(errors)} MCP servers failed to start:", *map(str, errors)]))
        self._build_routes()

    @property
    def server_names(self) -> tuple[str, ...]:
        """The names of the servers, in `mcp_config` order."""
        return tuple(self._connections)

    @property
    def is_alive(self) -> bool:
        """False once the session is closed or a call has seen a server's connection drop."""
        return self._closing is None and all(connection.is_alive for connection in self._connections.values())

    async def call_tool(self, name: str, arguments: Mapping[str, Any], *, timeout_s: float | None = None) -> ToolResult:
        """Call a tool by its agent-visible name; a tool's own failure comes back as `ToolResult(is_error=True)`.

        Raises:
            ConfigError: no server offers a tool of that name.
            ServerTimeoutError: the call ran past `timeout_s` (default `timeouts.call_s`).
            ServerConnectionError: the server died or its connection dropped.
        """
        self._ensure_open(f"call tool {name!r}")
        connection, tool_name = self._route(name)
        request = mcp.types.ClientRequest(
            mcp.types.CallToolRequest(params=mcp.types.CallToolRequestParams(name=tool_name, arguments=dict(arguments)))
        )

        async def send(client: ClientSession) -> mcp.types.CallToolResult:
            # send_request, not ClientSession.call_tool: that one may list tools again mid-call and raises a bare
            # RuntimeError when structured content misses the tool's output schema, which is the tool's problem.
            return await client.send_request(request, mcp.types.CallToolResult)

        timeout = self.timeouts.call_s if timeout_s is None else timeout_s
        try:
            result = await connection.request(f"the call to tool {tool_name!r}", timeout, send)
        except McpError as exc:  # a JSON-RPC error answer (invalid params, ...): the server is fine
            return ToolResult(text=exc.error.message, is_error=True)
        return normalize_result(result)

    async def list_tools(self) -> dict[str, ToolSpec]:
        """List the tools of every server again, refresh `tools` and return it.

        Raises:
            ServerTimeoutError: a server did not answer within `timeouts.call_s`.
            ServerConnectionError: a server died or its connection dropped.
            MCPServerError: a server answered with a JSON-RPC error.
        """
        self._ensure_open("list tools")
        for connection in self._connections.values():
            try:
                connection.tools = await connection.request("tools/list", self.timeouts.call_s, _list_all_tools)
            except McpError as exc:
                raise MCPServerError(f"MCP server {connection.name!r} refused tools/list: {exc.error.message}") from exc
        self._build_routes()
        return self.tools

    def _ensure_open(self, action: str) -> None:
        """Refuse to use a session after `aclose`."""
        if self._closing is not None:
            raise ServerConnectionError(
                f"cannot {action}: the MCP session to {', '.join(self._connections)} is closed; open a new one"
            )

    def _route(self, name: str) -> tuple[_ServerConnection, str]:
        """The connection and server-side tool name for an agent-visible (or unambiguous unprefixed) name."""
        route = self._routes.get(name)
        if route is None:
            available = ", ".join(sorted(self.tools)) or "none"
            raise ConfigError(f"no MCP server offers a tool named {name!r}; available tools: {available}")
        return route

    def _build_routes(self) -> None:
        """Name every tool as the agent sees it, and accept unprefixed names that only one server offers."""
        prefixed = len(self._connections) > 1
        tools: dict[str, ToolSpec] = {}
        routes: dict[str, tuple[_ServerConnection, str]] = {}
        unprefixed: dict[str, list[tuple[_ServerConnection, str]]] = {}
        for connection in self._connections.values():
            for tool in connection.tools:
                visible_name = f"{connection.name}_{tool.name}" if prefixed else tool.name
                tools[visible_name] = _tool_spec(visible_name, tool)
                routes[visible_name] = (connection, tool.name)
                unprefixed.setdefault(tool.name, []).append((connection, tool.name))
        for tool_name, candidates in unprefixed.items():
            if len(candidates) == 1:
                routes.setdefault(tool_name, candidates[0])
        self.tools, self._routes = tools, routes

    async def aclose(self) -> None:
        """Shut every server down (bounded by `CLOSE_TIMEOUT_S` + `FORCED_CLOSE_TIMEOUT_S`); safe to call again."""
        if self._closing is not None:
            await self._closing.wait()
            return
        self._closing = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                await _close_connections(self._connections.values())
        finally:
            self._closing.set()

    async def __aenter__(self) -> Self:
        """Return the (already open) session."""
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Close the session."""
        await self.aclose()


def _tool_spec(visible_name: str, tool: mcp.types.Tool) -> ToolSpec:
    """Our `ToolSpec` for an MCP tool, under the name the agent sees."""
    return ToolSpec(
        name=visible_name, description=tool.description or "", input_schema=tool.inputSchema, meta=tool.meta
    )


async def _close_connections(connections: Iterable[_ServerConnection]) -> None:
    """Close all connections at once: ask politely, then cancel the owners that did not finish in time."""
    connections = list(connections)
    # 1. Ask every owner to exit its contexts: the transports run their own shutdown (stdin closed, SIGTERM, ...).
    for connection in connections:
        connection.request_close()
    pending = await _wait_finished(connections, CLOSE_TIMEOUT_S)
    # 2. Cancel the owners still running: cancellation kills their child processes at once.
    for connection in pending:
        connection.force_close()
    pending = await _wait_finished(pending, FORCED_CLOSE_TIMEOUT_S)
    # 3. Say which servers may have left a process behind, then free the capture files.
    for connection in pending:
        logger.warning("MCP server %r did not shut down; its process may be left running", connection.name)
    for connection in connections:
        connection.release()


async def _wait_finished(connections: list[_ServerConnection], timeout_s: float) -> list[_ServerConnection]:
    """Wait until the owners finish or `timeout_s` passes; return those still running."""
    with anyio.move_on_after(timeout_s):
        for connection in connections:
            await connection.wait_finished()
    return [connection for connection in connections if not connection.is_finished]
