"""One MCP server connection, held open by a background task that owns its transport and `ClientSession`.

anyio cancel scopes (inside the transports and `ClientSession`) must be
exited by the task that entered them. A rollout opens its session in one task and closes it in another, and a pool
may hand it between rollouts, so no caller task may own those contexts. Each server gets an *owner* task instead:

1. it enters the transport and the `ClientSession`, then runs `initialize` and `tools/list` within the connect
   timeout (the timeout covers the requests only, so a server that is too slow is still shut down politely);
2. it reports ready (or the failure) and waits to be told to close;
3. it exits the contexts, which runs the transport's own shutdown (for stdio: close stdin, wait 2 s, SIGTERM the
   process group, wait 2 s, SIGKILL);
4. for stdio, it SIGKILLs whatever is left of the server's process group: a server that exits in time may leave
   its own children running.

Requests go through the `ClientSession` from any task. `close_connections` bounds the shutdown and cancels owners
that overrun it; cancellation makes the transport kill its child process outright.

A dead server is noticed at once, not at the call timeout: the stdio transport reports the process's exit the moment
it happens (even while a child the server started keeps its stdout open), the HTTP client reports a refused or broken
connection (`http_watch`), and the owner reports its transport ending. Each report marks the connection lost and
cancels every request waiting on it, which then raises `ServerConnectionError` with the reason (the exit status, or
the transport's error) and the last lines of the server's stderr.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import tempfile
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, TextIO, TypeVar

import anyio
import anyio.to_thread
import mcp.types
from mcp import ClientSession
from mcp.client.sse import sse_client

from hud_vf_gym.errors import ServerConnectionError, ServerStartError, ServerTimeoutError
from hud_vf_gym.runtime.http_watch import watched_http_client
from hud_vf_gym.runtime.mcp_compat import MCPError, Streams, next_cursor, streamable_http_transport
from hud_vf_gym.runtime.processes import is_running, kill_process_group, signal_group, stat_fields
from hud_vf_gym.runtime.servers import RemoteServer, ServerEntry, StdioServer
from hud_vf_gym.runtime.stdio_transport import describe_exit, stdio_transport
from hud_vf_gym.runtime.variables import redact_text

__all__ = ["CLOSE_TIMEOUT_S", "FORCED_CLOSE_TIMEOUT_S", "ServerConnection", "close_connections", "list_all_tools"]

logger = logging.getLogger(__name__)

# mcp's stdio shutdown waits 2 s after closing stdin, sends SIGTERM, waits 2 s more, then SIGKILLs the group:
# 4 s plus a margin. An HTTP session also sends one DELETE to end the server-side session.
CLOSE_TIMEOUT_S = 5.0
# After cancelling an owner that did not close in time, how long to wait for it; cancellation kills the child
# process at once, so this only waits for the event loop to reap it.
FORCED_CLOSE_TIMEOUT_S = 1.0
# How long a failed call waits for a remote server's owner task to record why its transport broke (or for a stdio
# server's exit status, which may trail its closed stdout by a moment), so the error can say "502 Bad Gateway" or
# "exited with status 3" instead of only "connection closed".
_FAILURE_REPORT_WAIT_S = 0.5
# An idle HTTP response stream may stay open this long before the HTTP client gives up on it (mcp's own default).
_HTTP_READ_TIMEOUT_S = 300.0
# How much of a stdio server's stderr an error message quotes.
_STDERR_TAIL_BYTES = 4096
_STDERR_TAIL_LINES = 12

_ResultT = TypeVar("_ResultT")


_CONNECTION_LOST_ERRORS = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    ConnectionError,
)


class _Lost(Exception):
    """A request cut short because its connection was lost (becomes a `ServerConnectionError`)."""


class ServerConnection:
    """One server of a session: the background task that owns its transport and `ClientSession`."""

    def __init__(self, name: str, entry: ServerEntry, secrets: frozenset[str], connect_timeout_s: float) -> None:
        """Prepare the connection (and, for stdio, the stderr capture file); `start` connects."""
        self.name = name
        self.tools: list[mcp.types.Tool] = []
        self._entry = entry  # resolved: holds secrets, never logged
        self._secrets = secrets
        self._connect_timeout_s = connect_timeout_s
        self.target = self._redact(
            entry.url if isinstance(entry, RemoteServer) else " ".join([entry.command, *entry.args])
        )
        self._client: ClientSession | None = None
        self.faulted = False
        """Set once a request failed for an infrastructure reason or was cancelled mid-flight (see `request`)."""
        self._failure: Exception | None = None
        self._timed_out = False
        self._lost = False
        self._loss: str | None = None  # why the connection was lost, as first noticed
        self._exited = anyio.Event()  # a stdio server's process has exited
        self._waiting: set[asyncio.Task[Any]] = set()  # the tasks inside `request`
        self._cut: set[asyncio.Task[Any]] = set()  # those `_lose` cancelled
        self._ready = anyio.Event()
        self._finished = anyio.Event()
        self._close_requested = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self._startup_scope: anyio.CancelScope | None = None
        self._task: asyncio.Task[None] | None = None
        self._stderr: TextIO | None = None
        self._process_group: int | None = None
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

    @property
    def process_group(self) -> int | None:
        """The stdio server's process group (None for a remote server, or where /proc is missing)."""
        return self._process_group

    def process_running(self) -> bool:
        """Whether a stdio server's process still runs (True for remote servers: only a request can tell).

        A server killed while its session sat idle leaves the session looking alive until the next request fails;
        a pool checks this first, so the rollout gets a new server instead of an infrastructure error.
        """
        if self._process_group is None:
            return self.is_alive
        return is_running(stat_fields(str(self._process_group)))  # the server leads its group: pid == group id

    def abandon(self) -> None:
        """Without an event loop: SIGKILL a stdio server's process group and free the capture file."""
        if self._process_group is not None:
            signal_group(self._process_group)
        self.release()

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
            if scope.cancelled_caught and self._client is None and not self._close_requested.is_set():
                self._timed_out = True
        except Exception as exc:  # the owner must not die with an unretrieved exception: callers read it instead
            self._failure = exc
        finally:
            # requests still waiting would otherwise wait for their timeout: the transport they wait on is gone
            self._lose(_describe_exception(self._failure) or "the connection was closed")
            await kill_process_group(self._process_group)
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
            self.tools = await list_all_tools(client)
            self._client = client
        self._startup_scope = None
        self._timed_out = startup_scope.cancelled_caught and not self._close_requested.is_set() and not self._lost
        return self._client is not None

    def _transport(self) -> AbstractAsyncContextManager[Streams]:
        """The mcp transport for this entry, yielding the read and write streams."""
        entry = self._entry
        if isinstance(entry, StdioServer):
            return self._stdio_streams(entry)
        if entry.uses_sse:

            def client_factory(
                headers: dict[str, str] | None = None,
                timeout: Any = None,  # an httpx (mcp 1) or httpx2 (mcp 2) Timeout
                auth: Any = None,  # mcp's factory signature; entries carry no auth object
            ) -> Any:
                return watched_http_client(headers, timeout, self._transport_broke)

            return sse_client(
                entry.url,
                headers=entry.headers,
                timeout=self._connect_timeout_s,
                sse_read_timeout=_HTTP_READ_TIMEOUT_S,
                httpx_client_factory=client_factory,
            )
        return streamable_http_transport(
            entry.url, entry.headers, self._connect_timeout_s, _HTTP_READ_TIMEOUT_S, on_broken=self._transport_broke
        )

    @asynccontextmanager
    async def _stdio_streams(self, entry: StdioServer) -> AsyncIterator[Streams]:
        """Our stdio transport (it watches the process), noting the server's pid, which is its process group."""
        assert self._stderr is not None  # created in __init__ for every stdio entry
        async with stdio_transport(entry, self._stderr, self._process_exited) as (read_stream, write_stream, pid):
            self._process_group = pid
            yield read_stream, write_stream

    def _process_exited(self, returncode: int) -> None:
        """The stdio transport's report: the server's process has exited."""
        self._exited.set()
        if not self._close_requested.is_set():
            self._lose(f"its process {describe_exit(returncode)}")

    def _transport_broke(self, exc: Exception) -> None:
        """The HTTP client's report: a request or a response body failed (refused, reset, cut off)."""
        if not self._close_requested.is_set():
            self._lose(_describe_exception(exc))

    def _lose(self, reason: str) -> None:
        """Mark the connection lost for `reason` and cancel every request waiting on it (and a start in progress)."""
        self._lost = True
        if self._loss is None:
            self._loss = reason
        if self._startup_scope is not None:
            self._startup_scope.cancel()
        for task in self._waiting - self._cut:
            self._cut.add(task)
            task.cancel()

    async def request(
        self, operation: str, timeout_s: float, send: Callable[[ClientSession], Awaitable[_ResultT]]
    ) -> _ResultT:
        """Run one request on the session, mapping timeouts and lost connections to our errors.

        Any failure but a JSON-RPC error answer (`MCPError`: the server is fine) marks the connection `faulted`.
        """
        try:
            return await self._bounded_request(operation, timeout_s, send)
        except MCPError:
            raise
        except BaseException:  # timed out, connection lost, or cancelled mid-request
            self.faulted = True
            raise

    async def _bounded_request(
        self, operation: str, timeout_s: float, send: Callable[[ClientSession], Awaitable[_ResultT]]
    ) -> _ResultT:
        if self._client is None or not self.is_alive:
            raise await self._connection_error(operation, cause=None)
        try:
            return await self._send_or_lose(timeout_s, send)
        except TimeoutError as exc:
            raise ServerTimeoutError(
                f"MCP server {self.name!r} ({self.target}) did not answer {operation} within {timeout_s:g} s; "
                f"pass a larger timeout_s or raise timeouts.tool_call_s if it is legitimately slow"
            ) from exc
        except MCPError as exc:
            if not _is_connection_closed(exc):
                raise
            raise await self._connection_error(operation, cause=None) from exc
        except _CONNECTION_LOST_ERRORS as exc:
            raise await self._connection_error(operation, cause=exc) from exc
        except _Lost:
            raise await self._connection_error(operation, cause=None) from None

    async def _send_or_lose(self, timeout_s: float, send: Callable[[ClientSession], Awaitable[_ResultT]]) -> _ResultT:
        """Run `send` within `timeout_s`; raise `_Lost` when `_lose` cut it short (the server is gone)."""
        assert self._client is not None  # checked by the caller
        task = asyncio.current_task()
        assert task is not None  # called from a coroutine
        self._waiting.add(task)
        try:
            # asyncio's own timeout: a third of anyio's fail_after per call, on the hottest path of every turn
            async with asyncio.timeout(timeout_s):
                return await send(self._client)
        except asyncio.CancelledError:
            # only while this task waits in `send` may `_lose` cancel it; any other cancellation goes on
            if task not in self._cut or task.uncancel() > 0:
                raise
        finally:
            self._waiting.discard(task)
            self._cut.discard(task)
        raise _Lost

    async def _connection_error(self, operation: str, cause: BaseException | None) -> ServerConnectionError:
        """Mark the connection lost and describe why, with the transport's failure and the server's stderr."""
        self._lost = True
        with anyio.move_on_after(_FAILURE_REPORT_WAIT_S):
            await (self._finished if isinstance(self._entry, RemoteServer) else self._exited).wait()
        why = self._loss or _describe_exception(self._failure or cause)
        message = f"MCP server {self.name!r} ({self.target}) closed the connection during {operation}"
        return ServerConnectionError(self._redact(message + (f": {why}" if why else "") + self._stderr_tail()))

    def start_error(self) -> ServerStartError | None:
        """The error to raise when the server did not start, or None when it did."""
        if self._client is not None and self._failure is None:
            return None
        if self._timed_out:
            message = (
                f"MCP server {self.name!r} ({self.target}) did not finish starting (initialize + tools/list) "
                f"within {self._connect_timeout_s:g} s; raise timeouts.connect_s if it is slow to start"
            )
        elif _is_connection_closed(_innermost(self._failure)) or (self._failure is None and self._lost):
            message = f"MCP server {self.name!r} ({self.target}) exited or closed the connection while starting"
            message += f": {self._loss}" if self._loss and self._loss.startswith("its process") else ""
        else:
            message = f"could not start MCP server {self.name!r} ({self.target}): {_describe_exception(self._failure)}"
        error = ServerStartError(self._redact(message + self._stderr_tail()))
        if self._failure is not None and not self._leaks_secret(self._failure):
            error.__cause__ = self._failure  # `raise ... from`, unless printing the cause would print a secret
        return error

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

    def _leaks_secret(self, exc: BaseException) -> bool:
        """Whether printing `exc` (with its groups, causes and contexts) would print one of this config's secrets."""
        printed = "".join(traceback.format_exception(exc))
        return self._redact(printed) != printed

    def _redact(self, text: str) -> str:
        """Hide this config's secrets in a message."""
        return redact_text(text, self._secrets)


async def list_all_tools(client: ClientSession) -> list[mcp.types.Tool]:
    """List every tool of a server, following pagination cursors."""
    tools: list[mcp.types.Tool] = []
    cursor: str | None = None
    while True:
        params = mcp.types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await client.list_tools(params=params)
        tools.extend(page.tools)
        cursor = next_cursor(page)
        if not cursor:
            return tools


def _innermost(exc: BaseException | None) -> BaseException | None:
    """The first leaf of a (nested) exception group; any other exception itself."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _is_connection_closed(exc: BaseException | None) -> bool:
    """Whether `exc` is the error mcp gives pending requests when the server's stream ends."""
    return isinstance(exc, MCPError) and exc.error.code == mcp.types.CONNECTION_CLOSED


def _describe_exception(exc: BaseException | None) -> str:
    """`Type: message` of an exception (the innermost one of a group), or "" for None."""
    exc = _innermost(exc)
    if exc is None:
        return ""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def close_connections(connections: Iterable[ServerConnection], timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close all connections at once: ask politely (at most `timeout_s`), then cancel the owners still running."""
    connections = list(connections)
    # 1. Ask every owner to exit its contexts: the transports run their own shutdown (stdin closed, SIGTERM, ...).
    for connection in connections:
        connection.request_close()
    pending = await _wait_finished(connections, timeout_s)
    # 2. Cancel the owners still running: cancellation kills their child processes at once.
    for connection in pending:
        connection.force_close()
    pending = await _wait_finished(pending, FORCED_CLOSE_TIMEOUT_S)
    # 3. Say which servers may have left a process behind, then free the capture files.
    for connection in pending:
        logger.warning("MCP server %r did not shut down; its process may be left running", connection.name)
    for connection in connections:
        connection.release()


async def _wait_finished(connections: list[ServerConnection], timeout_s: float) -> list[ServerConnection]:
    """Wait until the owners finish or `timeout_s` passes; return those still running."""
    with anyio.move_on_after(timeout_s):
        for connection in connections:
            await connection.wait_finished()
    return [connection for connection in connections if not connection.is_finished]
