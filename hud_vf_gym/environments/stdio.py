"""Serve a high-level MCP server (FastMCP on mcp 1, MCPServer on mcp 2) over stdio without a thread hop per message.

The SDK's `stdio_server` reads stdin and writes stdout through `anyio.wrap_file`, so every line read, every write and
every flush is a round trip to a worker thread: about a dozen thread switches per tool call, which is most of a
built-in server's CPU per call. Here stdin and stdout are asyncio pipes on the event loop, and the SDK's own
`stdio_server` still does the framing and JSON-RPC parsing (it takes any object with the same async file methods).

When stdin or stdout is not a pipe (a regular file, as in `server < requests.jsonl`), asyncio cannot watch it, and
the SDK's threaded transport is used instead.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio
from mcp.server.stdio import stdio_server

from hud_vf_gym.runtime.mcp_compat import lowlevel_server

if TYPE_CHECKING:
    from hud_vf_gym.runtime.mcp_compat import MCPServer

STDIN_FD, STDOUT_FD = 0, 1
READ_LIMIT = 64 * 2**20  # longest line accepted: a screenshot result is a few MiB of base64


class PipeLines:
    """stdin as the async line iterator `stdio_server` reads: decoded UTF-8 lines, invalid bytes replaced."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        """Wrap a reader connected to the stdin pipe."""
        self._reader = reader

    def __aiter__(self) -> AsyncIterator[str]:
        """Iterate lines until the client closes its end."""
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        while line := await self._reader.readline():
            yield line.decode("utf-8", errors="replace")


class PipeWriter:
    """stdout as the async text file `stdio_server` writes: `write` buffers in the transport, `flush` waits for room."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        """Wrap a writer connected to the stdout pipe."""
        self._writer = writer

    async def write(self, text: str) -> None:
        """Queue `text`, encoded as UTF-8."""
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        """Wait until the pipe has taken what is queued beyond the transport's high-water mark."""
        await self._writer.drain()


def is_pipe(fd: int) -> bool:
    """Whether asyncio can watch `fd`: a pipe, a socket or a character device (not a regular file)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


async def open_stdio_pipes() -> tuple[PipeLines, PipeWriter]:
    """Connect duplicates of fds 0 and 1 to this event loop (closing the transports leaves fds 0 and 1 open)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(STDIN_FD), "rb", 0))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(os.dup(STDOUT_FD), "wb", 0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return PipeLines(reader), PipeWriter(writer)


async def serve_stdio(server: MCPServer) -> None:
    """Serve `server` on stdin/stdout until the client closes stdin."""
    if not (is_pipe(STDIN_FD) and is_pipe(STDOUT_FD)):
        await server.run_stdio_async()
        return
    stdin, stdout = await open_stdio_pipes()
    async with stdio_server(stdin, stdout) as (read_stream, write_stream):  # type: ignore[arg-type]
        lowlevel = lowlevel_server(server)  # the SDK's own run_stdio_async does the same
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


def run_stdio(server: MCPServer) -> None:
    """Blocking entry point for a server's `main()`: `run_stdio(mcp)` instead of `mcp.run("stdio")`."""
    anyio.run(serve_stdio, server)
