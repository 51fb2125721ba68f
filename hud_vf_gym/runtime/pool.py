"""Warm MCP sessions for `sessions.reuse: per_slot`: one server per concurrent rollout, reset by setup, not restarted.

Starting a Python MCP server costs about half a second of CPU (the `mcp` import); a 10-move 2048 rollout costs a few
milliseconds. Starting a server per rollout is correct but spends almost all the CPU on start-up. Sharing one server
between concurrent rollouts (as verifiers' MCPEnv does) is fast and wrong for a stateful environment: the rollouts
move the same game. A pool gives each rollout a server of its own, kept warm between rollouts:

1. `checkout(mcp_config)` resolves the config's `${VAR}` templates and looks for an idle session under that key (the
   resolved config's digest; the secrets it holds are never kept in the key). It takes the most recently returned
   one whose servers still run, belongs to the running event loop, and has not sat idle past `idle_timeout_s`;
   otherwise it opens a new session. A session is checked out by one rollout at a time.
2. The rollout runs its setup call, which resets the server (the harness checks that the server says so).
3. `checkin(session, reusable=...)` returns it. A session whose rollout failed, whose request timed out or was
   cancelled (`MCPSession.faulted`), whose server died, or that reached `max_uses` is closed instead. The pool
   never holds more sessions (idle and checked out) than were ever checked out at once, i.e. the caller's
   concurrency, nor more than `pool_size` idle ones; the longest-idle ones are closed first.
4. `aclose()` closes every idle session of the running loop. Sessions of a loop that has ended were shut down with
   it (their owner tasks were cancelled); at interpreter exit, whatever server is still running is killed.

Sessions are bound to the event loop that opened them (their owner tasks live there), so a pool used from several
loops (vf-eval's workers, a Gymnasium env's private loop) keeps each loop's sessions apart.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hud_vf_gym.config import SessionsConfig, Timeouts
from hud_vf_gym.environments import SETUP_RESETS_STATE_META
from hud_vf_gym.runtime.session import CLOSE_TIMEOUT_S, MCPSession
from hud_vf_gym.runtime.variables import resolve_templates

__all__ = ["SETUP_RESETS_STATE_META", "PoolStats", "SessionPool", "servers_not_reset"]


@dataclass(slots=True)
class PoolStats:
    """What a pool has done so far (for logs and benchmarks)."""

    opened: int = 0  # sessions started because none was idle
    reused: int = 0  # checkouts served by an idle session
    discarded: int = 0  # sessions closed because they failed, died, expired, were evicted or reached max_uses
    idle: int = 0  # sessions waiting in the pool now
    checked_out: int = 0  # sessions in use by a rollout now
    peak_checked_out: int = 0  # the most sessions in use at once so far


@dataclass(slots=True, eq=False)
class _Entry:
    """A session the pool opened, with its bookkeeping."""

    session: MCPSession
    key: str
    loop: asyncio.AbstractEventLoop
    uses: int = 1
    idle_since: float = field(default_factory=time.monotonic)


class SessionPool:
    """Warm MCP sessions keyed by resolved `mcp_config`, each used by one rollout at a time (see module docs).

    Args:
        settings: the config's `sessions` section (max_uses, idle_timeout_s, pool_size).
        timeouts: the timeouts every session applies (default: `Timeouts()`).
        environ: where `${VAR}` values come from (default: `os.environ`, read at each checkout).
    """

    def __init__(
        self, settings: SessionsConfig, *, timeouts: Timeouts | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        """Declare an empty pool; no server starts until the first checkout."""
        self.settings = settings
        self.timeouts = Timeouts() if timeouts is None else timeouts
        self.environ = environ
        self._counts = PoolStats()  # `idle` is left at 0 here: `stats` counts it when asked
        self._entries: dict[MCPSession, _Entry] = {}  # every session the pool opened and has not closed
        self._idle: dict[str, list[_Entry]] = {}  # per key, oldest first
        # Bookkeeping only, never held across an await: a pool may serve event loops in several threads.
        self._lock = threading.Lock()
        _LIVE_POOLS.add(self)

    async def checkout(self, mcp_config: Mapping[str, Any]) -> MCPSession:
        """An idle session for `mcp_config`, or a newly opened one; the caller owns it until `checkin`.

        Raises:
            ConfigError: the config is invalid (see `MCPSession.open`).
            ServerStartError: a new session's server could not be started.
        """
        environ = os.environ if self.environ is None else self.environ
        key = _config_key(resolve_templates(mcp_config, environ))
        loop = asyncio.get_running_loop()
        entry, stale = self._take_idle(key, loop)
        try:
            await _close_all(stale)
        except BaseException:  # cancelled while closing stale sessions: undo the checkout, lose nothing
            if entry is None:
                self._uncount_checkout()
            else:
                await asyncio.shield(self.checkin(entry.session, reusable=True))
            raise
        if entry is not None:
            return entry.session
        try:
            session = await MCPSession.open(mcp_config, timeouts=self.timeouts, environ=self.environ)
        except BaseException:
            self._uncount_checkout()
            raise
        with self._lock:
            self._entries[session] = _Entry(session, key, loop)
            self._counts.opened += 1
        return session

    @property
    def stats(self) -> PoolStats:
        """A snapshot of what the pool has done so far and holds now."""
        with self._lock:
            return replace(self._counts, idle=sum(len(entries) for entries in self._idle.values()))

    def idle_process_groups(self) -> tuple[int, ...]:
        """The process groups of the stdio servers of the idle sessions (what a soak may kill while they wait)."""
        with self._lock:
            sessions = [entry.session for entries in self._idle.values() for entry in entries]
        return tuple(group for session in sessions for group in session.process_groups)

    def _uncount_checkout(self) -> None:
        """Take back the count of a checkout that handed out no session."""
        with self._lock:
            self._counts.checked_out -= 1

    def _take_idle(self, key: str, loop: asyncio.AbstractEventLoop) -> tuple[_Entry | None, list[MCPSession]]:
        """Pop the freshest usable idle session of `key` on `loop` (counting the checkout); return those to close."""
        stale = self._drop_expired(loop)
        chosen: _Entry | None = None
        with self._lock:
            stats = self._counts
            stats.checked_out += 1
            stats.peak_checked_out = max(stats.peak_checked_out, stats.checked_out)
            candidates = self._idle.get(key, [])
            while chosen is None and (index := _last_on_loop(candidates, loop)) is not None:
                entry = candidates.pop(index)
                if entry.session.servers_running():
                    chosen = entry
                else:  # killed while idle: replaced now rather than failing the rollout's first call
                    stale.append(self._forget(entry))
            if chosen is not None:
                chosen.uses += 1
                stats.reused += 1
            else:  # a new server is about to start: make room by closing idle ones of other configs
                stale += self._evict_over_capacity(loop)
        return chosen, stale

    def _drop_expired(self, loop: asyncio.AbstractEventLoop) -> list[MCPSession]:
        """Forget idle sessions past `idle_timeout_s` on `loop` (returned, to close) and those of ended loops."""
        now = time.monotonic()
        expired: list[MCPSession] = []
        with self._lock:
            for key, entries in self._idle.items():
                kept = []
                for entry in entries:
                    if entry.loop.is_closed():  # its servers went down with the loop's tasks; nothing to await
                        self._forget(entry).abandon()
                    elif entry.loop is loop and now - entry.idle_since > self.settings.idle_timeout_s:
                        expired.append(self._forget(entry))
                    else:
                        kept.append(entry)
                self._idle[key] = kept
        return expired

    async def checkin(self, session: MCPSession, *, reusable: bool, close_timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Return a checked-out session: back to the pool when it is fit for another rollout, otherwise closed.

        Args:
            session: a session from `checkout` (any other session is simply closed).
            reusable: whether the rollout that used it ended cleanly (no error escaped any phase).
            close_timeout_s: how long closing may wait politely (what is left of the rollout's deadline).
        """
        loop = asyncio.get_running_loop()
        closing: list[MCPSession] = []
        with self._lock:
            entry = self._entries.get(session)
            if entry is None:
                closing.append(session)
            else:
                self._counts.checked_out -= 1
                if self._fit_for_reuse(entry, reusable, loop):
                    entry.idle_since = time.monotonic()
                    self._idle.setdefault(entry.key, []).append(entry)
                    closing += self._evict_over_capacity(loop)
                else:
                    closing.append(self._forget(entry))
        await _close_all(closing, close_timeout_s)

    def _fit_for_reuse(self, entry: _Entry, reusable: bool, loop: asyncio.AbstractEventLoop) -> bool:
        session = entry.session
        return (
            reusable
            and entry.loop is loop
            and entry.uses < self.settings.max_uses
            and not session.faulted
            and session.servers_running()
        )

    def _evict_over_capacity(self, loop: asyncio.AbstractEventLoop) -> list[MCPSession]:
        """Forget the longest-idle sessions of `loop` over the pool's bounds; the caller closes them (lock held).

        Bounds: at most `pool_size` idle sessions (when set), and no more sessions open, idle and checked out
        together, than were ever checked out at once; so servers of a config that is no longer used make way for
        the next one instead of adding up.
        """
        stats = self._counts
        idle = sorted(
            (entry for entries in self._idle.values() for entry in entries if entry.loop is loop),
            key=lambda entry: entry.idle_since,
        )
        total = stats.checked_out + sum(len(entries) for entries in self._idle.values())
        excess = total - max(1, stats.peak_checked_out)
        if self.settings.pool_size is not None:
            excess = max(excess, len(idle) - self.settings.pool_size)
        evicted = idle[: max(0, excess)]
        for entry in evicted:
            self._idle[entry.key].remove(entry)
        return [self._forget(entry) for entry in evicted]

    def _forget(self, entry: _Entry) -> MCPSession:
        """Drop an entry from the bookkeeping (the caller closes its session)."""
        self._entries.pop(entry.session, None)
        self._counts.discarded += 1
        return entry.session

    async def aclose(self) -> None:
        """Close every idle session of the running loop (and forget those of loops that have ended); reusable after.

        Sessions still checked out are their rollout's to close; `Harness.close_all` closes those.
        """
        loop = asyncio.get_running_loop()
        closing = self._drop_expired(loop)
        with self._lock:
            for key, entries in self._idle.items():
                closing += [self._forget(entry) for entry in entries if entry.loop is loop]
                self._idle[key] = [entry for entry in entries if entry.loop is not loop]
        await _close_all(closing)

    def kill_servers(self) -> None:
        """SIGKILL every server the pool still holds, idle or checked out (interpreter exit: no loop to close on)."""
        with self._lock:
            sessions = list(self._entries)
        for session in sessions:
            session.abandon()


def servers_not_reset(session: MCPSession, setup_tools: Sequence[str]) -> list[str]:
    """The servers of `session` that no declared-resetting setup call reaches (empty: safe to reuse).

    Args:
        session: an open session.
        setup_tools: the agent-visible names of the task's setup calls, in order.
    """
    reset: set[str] = set()
    for tool_name in setup_tools:
        server, tool = session.server_tool(tool_name)
        if (tool.meta or {}).get(SETUP_RESETS_STATE_META) is True:
            reset.add(server)
    return [name for name in session.server_names if name not in reset]


def _config_key(resolved_config: Any) -> str:
    """A digest of a resolved `mcp_config`: equal configs share servers; the secrets in it are not kept."""
    text = json.dumps(resolved_config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _last_on_loop(entries: list[_Entry], loop: asyncio.AbstractEventLoop) -> int | None:
    """The index of the most recently returned entry that belongs to `loop`."""
    return next((index for index in range(len(entries) - 1, -1, -1) if entries[index].loop is loop), None)


async def _close_all(sessions: list[MCPSession], timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close sessions at once; a close is bounded and never raises."""
    if sessions:
        await asyncio.gather(*(session.aclose(timeout_s=timeout_s) for session in sessions), return_exceptions=True)


_LIVE_POOLS: weakref.WeakSet[SessionPool] = weakref.WeakSet()


@atexit.register
def _kill_pooled_servers_at_exit() -> None:
    """A pool dropped without `aclose` (a crashed script) must not leave its servers running after the interpreter."""
    for pool in list(_LIVE_POOLS):
        pool.kill_servers()
