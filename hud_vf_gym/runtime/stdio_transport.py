"""The client side of MCP's stdio transport, with the server process in view.

mcp's `stdio_client` hides its process, and two of its failures stall a rollout for a whole call timeout: a server
that exits while a child it started keeps its stdout open is never noticed (stdout never ends), and a write to a
dead server's stdin crashes the transport's task group without failing the requests waiting for an answer. This is
the same protocol (one JSON-RPC message per line each way, the server in its own process group, mcp's safe default
environment plus the entry's `env`) with three differences:

- a watcher awaits the process and reports its exit status to `on_exit` the moment it exits; stdout then gets a
  short drain (a last answer may still be in the pipe) and the read stream ends, so `ClientSession` fails whatever
  is still waiting;
- a write to a closed stdin ends the writer quietly (the watcher reports why); later sends fail at once;
- the process id is yielded, so the caller knows the server's process group without searching /proc.

Shutdown follows the MCP spec's numbered steps (see `_shut_down`).
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import TextIO

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client.stdio import get_default_environment
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from hud_vf_gym.runtime.mcp_compat import dump_message, parse_message
from hud_vf_gym.runtime.processes import signal_group
from hud_vf_gym.runtime.servers import StdioServer

__all__ = ["PROCESS_TERMINATION_TIMEOUT_S", "describe_exit", "stdio_transport"]

# MCP's stdio shutdown: after closing stdin, and again after SIGTERM, wait this long for the server to exit.
PROCESS_TERMINATION_TIMEOUT_S = 2.0
# After the server exits, how long stdout may still deliver lines (an answer written just before exiting) before
# the read stream ends; only a child process holding stdout open makes this wait its full length.
_EXIT_DRAIN_S = 0.2


def describe_exit(returncode: int) -> str:
    """How a process ended, for an error message: `exited with status 3`, `was killed by signal 9 (SIGKILL)`."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"was killed by signal {-returncode}"
    return f"was killed by signal {-returncode} ({name})"


@asynccontextmanager
async def stdio_transport(
    entry: StdioServer, errlog: TextIO, on_exit: Callable[[int], None]
) -> AsyncIterator[
    tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage], int]
]:
    """Start the server and yield the read stream, the write stream and the server's process id.

    Args:
        entry: the validated (resolved) stdio entry.
        errlog: where the server's stderr goes (a capture file).
        on_exit: called with the exit status (negative: the signal) the moment the process exits.
    """
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    try:
        process = await anyio.open_process(
            [entry.command, *entry.args],
            env={**get_default_environment(), **entry.env},
            stderr=errlog,
            cwd=entry.cwd,
            start_new_session=True,  # its own process group, so everything it starts can be killed with it
        )
    except OSError:
        for stream in (read_writer, read_stream, write_stream, write_reader):
            await stream.aclose()
        raise
    async with anyio.create_task_group() as task_group, process:
        reader_scope = anyio.CancelScope()
        stdout_ended = anyio.Event()
        task_group.start_soon(_read_stdout, process, read_writer, reader_scope, stdout_ended)
        task_group.start_soon(_write_stdin, process, write_reader)
        task_group.start_soon(_watch_exit, process, on_exit, reader_scope, stdout_ended)
        try:
            yield read_stream, write_stream, process.pid
        finally:
            await _shut_down(process)
            task_group.cancel_scope.cancel()
            for stream in (read_stream, write_stream):
                await stream.aclose()


async def _read_stdout(
    process: anyio.abc.Process,
    read_writer: MemoryObjectSendStream[SessionMessage | Exception],
    scope: anyio.CancelScope,
    ended: anyio.Event,
) -> None:
    """Pass each stdout line on as a message until stdout ends (or the watcher gives up on it)."""
    assert process.stdout is not None  # opened with a pipe
    with scope, suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):  # the session is gone
        async with read_writer:
            pending: list[bytes] = []  # the unfinished line, in chunks (a screenshot result is megabytes long)
            async for chunk in process.stdout:
                *finished, rest = chunk.split(b"\n")
                if finished:
                    finished[0] = b"".join([*pending, finished[0]])
                    pending = []
                    for line in finished:
                        if line.strip():
                            await read_writer.send(_parse_line(line))
                if rest:
                    pending.append(rest)
    ended.set()


def _parse_line(line: bytes) -> SessionMessage | Exception:
    """One line as a message; a malformed line becomes the exception, which `ClientSession` logs and skips."""
    try:
        return parse_message(line)
    except ValidationError as exc:
        return exc


async def _write_stdin(process: anyio.abc.Process, write_reader: MemoryObjectReceiveStream[SessionMessage]) -> None:
    """Write each message as one line; stop quietly when the server's stdin is closed (the exit watcher reports it)."""
    assert process.stdin is not None  # opened with a pipe
    async with write_reader:
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for message in write_reader:
                text = dump_message(message)
                await process.stdin.send(text.encode("utf-8") + b"\n")


async def _watch_exit(
    process: anyio.abc.Process,
    on_exit: Callable[[int], None],
    reader_scope: anyio.CancelScope,
    stdout_ended: anyio.Event,
) -> None:
    """Report the exit at once, let stdout drain briefly, then end the read stream even if a child holds stdout."""
    returncode = await process.wait()
    on_exit(returncode)
    with anyio.move_on_after(_EXIT_DRAIN_S):
        await stdout_ended.wait()
    reader_scope.cancel()


async def _shut_down(process: anyio.abc.Process) -> None:
    """Stop the server the way the MCP spec says, each wait bounded by `PROCESS_TERMINATION_TIMEOUT_S`."""
    # 1. Close its stdin: a well-behaved server exits on its own.
    if process.stdin is not None:
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await process.stdin.aclose()
    with anyio.move_on_after(PROCESS_TERMINATION_TIMEOUT_S):
        await process.wait()
        return
    # 2. SIGTERM the process group, and wait again.
    signal_group(process.pid, signal.SIGTERM)
    with anyio.move_on_after(PROCESS_TERMINATION_TIMEOUT_S):
        await process.wait()
        return
    # 3. SIGKILL the process group; the connection then waits until the group is gone.
    signal_group(process.pid)
