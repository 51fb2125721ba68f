"""The process group of a stdio MCP server: signal it, kill what is left of it, wait until it is gone (Linux /proc).

The stdio transport starts the server in a new session, so it leads its own process group (its pid is the group's
id). On close the group is signalled only when the server outlives its grace period; a server that exits on time can
leave its own children (a browser, a game backend) running, so the connection kills what is left once it has exited.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import anyio

__all__ = ["is_running", "kill_process_group", "signal_group", "stat_fields"]

# /proc/<pid>/stat fields (after the name, 0-based): the process flags (PF_EXITING: it has begun to exit) and the
# bitmap of signals pending for the process's main thread.
_FLAGS_FIELD, _PENDING_FIELD = 6, 28
_PF_EXITING = 0x4
_SIGKILL_BIT = 1 << (signal.SIGKILL - 1)
# Killed processes vanish within milliseconds; this only bounds the wait should one linger (a zombie nobody reaps).
_GROUP_EXIT_WAIT_S = 1.0
_GROUP_EXIT_POLL_S = 0.01


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


def signal_group(process_group: int, signal_number: int = signal.SIGKILL) -> bool:
    """Signal a process group (SIGKILL unless told otherwise); False when it has no process left (or is not ours)."""
    try:
        os.killpg(process_group, signal_number)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def is_running(fields: list[str] | None) -> bool:
    """Whether the process whose `stat_fields` these are will run any more of its code.

    Not when it is gone, a zombie, exiting, or has a SIGKILL pending: `kill -9` returns as soon as the signal is
    queued, and until the kernel next schedules the process (on a busy machine, a while) its state still reads as
    running. Seen as running, a pooled server killed a moment ago was handed to a rollout whose setup then failed.
    """
    if fields is None or fields[0] in "ZX":
        return False
    try:
        exiting = int(fields[_FLAGS_FIELD]) & _PF_EXITING
        killed = int(fields[_PENDING_FIELD]) & _SIGKILL_BIT
    except (IndexError, ValueError):  # a kernel whose stat lacks these fields: the state alone decides
        return True
    return not (exiting or killed)


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
