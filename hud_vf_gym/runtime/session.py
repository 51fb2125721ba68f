"""MCP sessions: one connection to every server of a task's `mcp_config`.

Lifecycle of an `MCPSession`:

1. `MCPSession.open(mcp_config)` resolves `${VAR}` templates (from `os.environ` unless told otherwise), validates
   every server entry (all problems in one `ConfigError`), refuses a HUD hub entry whose API key is empty, and
   starts or connects every server at once.
2. Each server gets a background asyncio task, its *owner* (see `connection.py`), that enters the transport
   (our `stdio_transport`, mcp's `streamable_http_client` or `sse_client`) and the `ClientSession`, runs `initialize`
   and `tools/list` within `Timeouts.connect_s`, then waits to be told to close. anyio cancel scopes must exit in
   the task that entered them; the owner keeps that promise while the session is opened, used and closed from any
   tasks.
3. `call_tool` routes the agent-visible tool name to its server and waits at most `Timeouts.tool_call_s`. A tool's own
   failure (MCP `isError`, a JSON-RPC error) is a normal `ToolResult(is_error=True)`: the model can learn from it.
   Infrastructure failures raise `ServerTimeoutError` or `ServerConnectionError`.
4. `aclose()` tells every owner to exit (mcp's stdio shutdown: close stdin, wait, SIGTERM, SIGKILL on the process
   group; then the owner kills whatever the server left in its group), waits at most `CLOSE_TIMEOUT_S`, then
   cancels the owners, which kills what is left. It is shielded from the caller's cancellation and may be called
   any number of times.

A server that dies is noticed at once over every transport (see `connection.py`): the requests waiting on it fail
with `ServerConnectionError` within moments, not at their call timeout.

The session needs the asyncio backend (verifiers and TRL both run on asyncio). The resolved config, which holds
secrets, is kept only inside the private per-server connections; `redacted_config` is the copy that may be logged.
Every value a `${VAR}` resolved to is a secret, whatever the variable's name: errors, stderr tails and log records
(ours, mcp's, httpx's) show `***` instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import anyio
import mcp.types
from mcp import ClientSession

from hud_vf_gym.config import Timeouts
from hud_vf_gym.errors import ConfigError, MCPServerError, ServerConnectionError, ServerStartError
from hud_vf_gym.runtime.connection import (
    CLOSE_TIMEOUT_S,
    FORCED_CLOSE_TIMEOUT_S,
    ServerConnection,
    close_connections,
    list_all_tools,
)
from hud_vf_gym.runtime.mcp_compat import MCPError, call_tool_request, error_message, input_schema
from hud_vf_gym.runtime.results import normalize_result
from hud_vf_gym.runtime.servers import (
    RemoteServer,
    ServerEntry,
    StdioServer,
    check_hub_credentials,
    parse_mcp_config,
)
from hud_vf_gym.runtime.variables import install_log_redaction, redact, resolve_templates, secret_values
from hud_vf_gym.types import ToolResult, ToolSpec

__all__ = [
    "CLOSE_TIMEOUT_S",
    "FORCED_CLOSE_TIMEOUT_S",
    "MCPSession",
    "RemoteServer",
    "ServerEntry",
    "StdioServer",
    "check_hub_credentials",
    "parse_mcp_config",
]

# ---------------------------------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------------------------------


class MCPSession:
    """One open connection to all the MCP servers of an `mcp_config`; create it with `MCPSession.open`."""

    def __init__(
        self, connections: Mapping[str, ServerConnection], redacted_config: Mapping[str, Any], timeouts: Timeouts
    ) -> None:
        """Wrap started-or-not connections; use `MCPSession.open`, which also starts them."""
        self.redacted_config: Mapping[str, Any] = redacted_config
        """The resolved `mcp_config` with credentials replaced by `***`: safe to log and save."""
        self.timeouts = timeouts
        """The timeouts this session applies."""
        self.tools: dict[str, ToolSpec] = {}
        """Every tool by the name the agent uses (`<server>_<tool>` when there are several servers)."""
        self._connections = dict(connections)
        self._routes: dict[str, tuple[ServerConnection, str]] = {}
        self._closing: anyio.Event | None = None
        self._abandoned = False

    @classmethod
    async def open(
        cls,
        mcp_config: Mapping[str, Any],
        *,
        timeouts: Timeouts | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> MCPSession:
        """Resolve, validate and check `mcp_config`, then start every server and list its tools.

        Raises:
            ConfigError: the config is invalid, or a HUD hub entry has an empty API key.
            ServerStartError: a server could not be started, reached or initialised in time.
        """
        timeouts = Timeouts() if timeouts is None else timeouts
        environment = os.environ if environ is None else environ
        resolved = resolve_templates(mcp_config, environment)
        entries = parse_mcp_config(resolved)
        check_hub_credentials(resolved, mcp_config)
        secrets = secret_values(mcp_config, resolved, environment)
        install_log_redaction(secrets)  # mcp and httpx log request URLs; our own records may quote a target
        connections = {
            name: ServerConnection(name, entry, secrets, timeouts.connect_s) for name, entry in entries.items()
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
        return (
            self._closing is None
            and not self._abandoned
            and all(connection.is_alive for connection in self._connections.values())
        )

    @property
    def faulted(self) -> bool:
        """True once a request failed for an infrastructure reason or was cancelled mid-flight.

        A late answer to a cancelled or timed-out request could still arrive, and a server that timed out once may
        be wedged, so a pool never hands such a session to another rollout.
        """
        return any(connection.faulted for connection in self._connections.values())

    def servers_running(self) -> bool:
        """Whether the session is alive and every stdio server's process still runs (checked without a request)."""
        return self.is_alive and all(connection.process_running() for connection in self._connections.values())

    def abandon(self) -> None:
        """Without an event loop: SIGKILL the stdio servers' process groups and free what the session holds.

        For a session whose event loop has ended (its owner tasks can no longer run `aclose`) or at interpreter
        exit. The session counts as dead afterwards.
        """
        self._abandoned = True
        for connection in self._connections.values():
            connection.abandon()

    @property
    def process_groups(self) -> tuple[int, ...]:
        """The process groups of the stdio servers (a server's pid is its group's id)."""
        return tuple(group for c in self._connections.values() if (group := c.process_group) is not None)

    def server_tool(self, tool_name: str) -> tuple[str, ToolSpec]:
        """The server that runs the tool the agent calls `tool_name`, and that server's own listing of it.

        Raises:
            ConfigError: no server offers a tool of that name.
        """
        connection, name = self._route(tool_name)
        return connection.name, _tool_spec(name, next(tool for tool in connection.tools if tool.name == name))

    async def call_tool(self, name: str, arguments: Mapping[str, Any], *, timeout_s: float | None = None) -> ToolResult:
        """Call a tool by its agent-visible name; a tool's own failure comes back as `ToolResult(is_error=True)`.

        Raises:
            ConfigError: no server offers a tool of that name.
            ServerTimeoutError: the call ran past `timeout_s` (default `timeouts.tool_call_s`).
            ServerConnectionError: the server died or its connection dropped.
        """
        self._ensure_open(f"call tool {name!r}")
        connection, tool_name = self._route(name)
        request = call_tool_request(tool_name, arguments)

        async def send(client: ClientSession) -> mcp.types.CallToolResult:
            # send_request, not ClientSession.call_tool: that one may list tools again mid-call and raises a bare
            # RuntimeError when structured content misses the tool's output schema, which is the tool's problem.
            return await client.send_request(request, mcp.types.CallToolResult)

        timeout = self.timeouts.tool_call_s if timeout_s is None else timeout_s
        try:
            result = await connection.request(f"the call to tool {tool_name!r}", timeout, send)
        except MCPError as exc:  # a JSON-RPC error answer (invalid params, ...): the server is fine
            return ToolResult(text=error_message(exc), is_error=True)
        return normalize_result(result)

    async def list_tools(self) -> dict[str, ToolSpec]:
        """List the tools of every server again, refresh `tools` and return it.

        Raises:
            ServerTimeoutError: a server did not answer within `timeouts.tool_call_s`.
            ServerConnectionError: a server died or its connection dropped.
            MCPServerError: a server answered with a JSON-RPC error.
        """
        self._ensure_open("list tools")
        for connection in self._connections.values():
            try:
                connection.tools = await connection.request("tools/list", self.timeouts.tool_call_s, list_all_tools)
            except MCPError as exc:
                message = f"MCP server {connection.name!r} refused tools/list: {error_message(exc)}"
                raise MCPServerError(message) from exc
        self._build_routes()
        return self.tools

    def _ensure_open(self, action: str) -> None:
        """Refuse to use a session after `aclose`."""
        if self._closing is not None:
            raise ServerConnectionError(
                f"cannot {action}: the MCP session to {', '.join(self._connections)} is closed; open a new one"
            )

    def _route(self, name: str) -> tuple[ServerConnection, str]:
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
        routes: dict[str, tuple[ServerConnection, str]] = {}
        unprefixed: dict[str, list[tuple[ServerConnection, str]]] = {}
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

    async def aclose(self, *, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Shut every server down; safe to call again.

        Args:
            timeout_s: how long the polite shutdown may take (at most `CLOSE_TIMEOUT_S`); then the servers are
                killed, which takes at most `FORCED_CLOSE_TIMEOUT_S` more.
        """
        if self._closing is not None:
            await self._closing.wait()
            return
        self._closing = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                await close_connections(self._connections.values(), min(timeout_s, CLOSE_TIMEOUT_S))
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
        name=visible_name, description=tool.description or "", input_schema=input_schema(tool), meta=tool.meta
    )
