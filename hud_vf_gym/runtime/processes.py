"""The process group of a stdio MCP server: find it, kill what is left of it, wait until it is gone (Linux /proc).

The SDK's `stdio_client` starts the server in a new session (so it leads its own process group) but does not expose
the process, and on close it signals the group only when the server outlives its grace period. A server that exits
on time can leave its own children (a browser, a game backend) running, so the connection finds the group through
the server's stderr capture file and kills what is left once the server has exited.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import TextIO

import anyio

__all__ = ["find_child_process_group", "kill_process_group", "signal_group", "stat_fields"]

# Killed processes vanish within milliseconds; this only bounds the wait should one linger (a zombie nobody reaps).
_GROUP_EXIT_WAIT_S = 1.0
_GROUP_EXIT_POLL_S = 0.01


def find_child_process_group(stderr_file: TextIO) -> int | None:
    """The process group of the child we started with `stderr_file` as its stderr; None where /proc is missing.

    stdio_client does not expose its process. Its child leads a new process group, and its stderr is our capture
    file, which tells it apart from every other child of this process.
    """
    capture = os.fstat(stderr_file.fileno())
    for pid, fields in _process_stats():
        try:
            stderr = os.stat(f"/proc/{pid}/fd/2")
        except OSError:  # gone, or another user's process
            continue
        if (stderr.st_dev, stderr.st_ino) == (capture.st_dev, capture.st_ino) and int(fields[1]) == os.getpid():
            return int(fields[2])
    return None


async def kill_process_group(process_group: int | None) -> None:
    """SIGKILL what is left of a stdio server's process group once the server itself has exited, and wait for it.

    mcp signals the group only when the server outlives the 2 s after stdin closes; a server that exits on time
    leaves its own children (a browser, a game backend) running. A group id cannot be reused while any member
    lives, so this never reaches an unrelated process.
    """
    if process_group is None:
        return
    # 1. Kill the group; usually it is empty already and there is nothing to wait for.
    if not signal_group(process_group):
        return
    # 2. Wait until the kernel has torn the processes down, so that "closed" means "gone" to the caller. The /proc
    #    scan runs in a thread: with a browser's process tree on a busy machine one scan takes tens of milliseconds,
    #    which on the event loop would stall every other rollout (and time out their connects).
    with anyio.move_on_after(_GROUP_EXIT_WAIT_S, shield=True):
        while await anyio.to_thread.run_sync(_group_has_live_members, process_group):
            await anyio.sleep(_GROUP_EXIT_POLL_S)


def _group_has_live_members(process_group: int) -> bool:
    """Whether any process of the group is still running (zombies and dead ones do not count)."""
    return any(int(fields[2]) == process_group and fields[0] not in "ZX" for _, fields in _process_stats())


def signal_group(process_group: int) -> bool:
    """SIGKILL a process group; False when it has no process left (or is not ours to signal)."""
    try:
        os.killpg(process_group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _process_stats() -> Iterator[tuple[str, list[str]]]:
    """Each process's id and the fields of /proc/<pid>/stat after its name (state, ppid, pgrp, ...)."""
    for pid in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else []):
        fields = stat_fields(pid)
        if fields is not None:
            yield pid, fields


def stat_fields(pid: str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the process name (state, ppid, pgrp, ...); None once it has exited."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):  # exited while we looked
        return None
