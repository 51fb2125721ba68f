"""The action server: each open rollout's mapped actions as MCP tools, over streamable HTTP on 127.0.0.1.

verifiers v1 runs the model's program (the harness) in its own process and hands it MCP URLs, while the HUD task's
MCP session (opened by `HUDTask.setup`, possibly a warm one from the pool) lives in this process. This server is
the bridge: one per process, started with the first rollout, serving every rollout at its own path
`/rollouts/<route>/mcp`. A request's path picks the rollout's `Rollout` (its `TaskEpisode`); `tools/list` answers
with the config's actions (`core.action_tools`), `tools/call` records the call as a turn and acts on it through the
same `ActionMapper` and session as a text turn (`TaskEpisode.record_call` + `act`).

A tool's own failure or a model mistake comes back as an `isError` result the model can read. An infrastructure
failure (the HUD server died or timed out) is kept on the rollout (`infra_error`) and ends it: the task's stop
predicate fires and `finalize` raises, so the rollout is recorded as failed, never scored as the model's failure.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
from dataclasses import dataclass
from typing import Any

import mcp.types

from hud_vf_gym.core.action_tools import action_tools
from hud_vf_gym.core.harness import TaskEpisode
from hud_vf_gym.core.parser import ParsedCall
from hud_vf_gym.core.record import TurnOutcome
from hud_vf_gym.errors import MCPServerError
from hud_vf_gym.runtime import mcp_compat

__all__ = ["ActionServer", "Rollout", "action_server", "action_servers"]

SERVER_NAME = "hud"  # verifiers prefixes the agent-visible tool names with it: hud_move, hud_done, ...
_FAILED_OUTCOMES = frozenset({TurnOutcome.PARSE_ERROR, TurnOutcome.ACTION_ERROR, TurnOutcome.TOOL_ERROR})

_route: contextvars.ContextVar[str | None] = contextvars.ContextVar("hud_vf_gym_v1_route", default=None)


@dataclass(slots=True)
class Rollout:
    """One rollout's episode as the action server and the task see it."""

    episode: TaskEpisode
    infra_error: MCPServerError | None = None

    @property
    def finished(self) -> bool:
        """done() was called, the turn budget is spent, the deadline passed, or the environment failed."""
        turns = len(self.episode.record.turns)
        max_turns = self.episode.harness.config.max_turns
        episode = self.episode
        return self.infra_error is not None or episode.is_done or episode.is_truncated or 0 < max_turns <= turns


class ActionServer:
    """The per-process MCP endpoint for every open rollout (see the module docstring)."""

    def __init__(self) -> None:
        """Nothing runs until `start`."""
        self.rollouts: dict[str, Rollout] = {}
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._server: Any = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>` once started."""
        if self._sock is None:
            raise RuntimeError("the action server is not started")
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def url(self, route: str) -> str:
        """The MCP URL of one rollout."""
        return f"{self.base_url}/rollouts/{route}/mcp"

    async def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve in the background on the running loop (once)."""
        if self._task is not None:
            await self._wait_started()
            return
        import uvicorn

        server = _server_with_handlers(self)
        app = mcp_compat.http_app(server)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        config = uvicorn.Config(_Router(app), log_level="critical", lifespan="on")
        self._server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        await self._wait_started()

    async def _wait_started(self) -> None:
        """A few loop iterations: the app's lifespan starts the MCP session manager."""
        assert self._task is not None and self._server is not None
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
                raise RuntimeError("the action server stopped while starting")
            await asyncio.sleep(0.01)

    async def aclose(self) -> None:
        """Stop serving (open rollouts are the tasks' to close)."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait({self._task}, timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._task = self._server = self._sock = None

    def rollout(self) -> Rollout:
        """The rollout the current request is for."""
        route = _route.get()
        rollout = self.rollouts.get(route or "")
        if rollout is None:
            raise ValueError(f"no open rollout at route {route!r}; it ended or never started")
        return rollout

    async def list_tools(self) -> list[mcp.types.Tool]:
        """The rollout's actions as MCP tools."""
        episode = self.rollout().episode
        session = episode.session
        tools = action_tools(episode.harness.mapper, session.tools if session is not None else {})
        return [
            mcp.types.Tool(name=tool.name, description=tool.description, inputSchema=dict(tool.input_schema))
            for tool in tools
        ]

    async def call_tool(self, name: str, arguments: dict[str, Any] | None) -> mcp.types.CallToolResult:
        """Record the call as a turn and act on it; the observation is the tool's result."""
        rollout = self.rollout()
        if rollout.finished:
            return _result("The episode is over; no further actions are taken.", is_error=True)
        turn = rollout.episode.record_call(ParsedCall(name, (), dict(arguments or {})))
        try:
            observation = await rollout.episode.act(turn)
        except MCPServerError as exc:  # the environment failed, not the model: the rollout ends, unscored
            rollout.infra_error = exc
            return _result(f"The environment failed; the episode ends. ({exc})", is_error=True)
        content: list[mcp.types.TextContent | mcp.types.ImageContent] = [
            mcp.types.TextContent(type="text", text=observation.text)
        ]
        content += [
            mcp.types.ImageContent(type="image", data=image.data, mimeType=image.mime_type)
            for image in observation.images
        ]
        return mcp.types.CallToolResult(content=list(content), isError=turn.outcome in _FAILED_OUTCOMES)


def _result(text: str, *, is_error: bool) -> mcp.types.CallToolResult:
    return mcp.types.CallToolResult(content=[mcp.types.TextContent(type="text", text=text)], isError=is_error)


def _server_with_handlers(actions: ActionServer) -> Any:
    """A high-level MCP server whose tools are the action server's (a subclass: mcp 1 binds them at construction)."""

    class _Server(mcp_compat.server_class()):  # type: ignore[misc]
        async def list_tools(self) -> list[mcp.types.Tool]:
            return await actions.list_tools()

        async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
            return await actions.call_tool(name, arguments)

    return _Server(name=SERVER_NAME, log_level="ERROR")


class _Router:
    """ASGI: `/rollouts/<route>/mcp` -> the MCP app at `/mcp`, with the route in a context variable."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        parts = scope["path"].strip("/").split("/")
        if len(parts) != 3 or parts[0] != "rollouts" or parts[2] != "mcp":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"unknown path"})
            return
        token = _route.set(parts[1])
        try:
            await self._app({**scope, "path": "/mcp", "raw_path": b"/mcp"}, receive, send)
        finally:
            _route.reset(token)


action_servers: dict[asyncio.AbstractEventLoop, ActionServer] = {}
"""Every event loop's action server (a process usually has one loop)."""


async def action_server() -> ActionServer:
    """This event loop's action server, started on first use."""
    loop = asyncio.get_running_loop()
    server = action_servers.get(loop)
    if server is None:
        server = action_servers[loop] = ActionServer()
    await server.start()
    return server
