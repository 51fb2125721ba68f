"""The one place that knows which mcp major is installed: 1.24-1.x or 2.x.

verifiers 0.3.1 (the classic HUDGym) needs mcp<2, verifiers 0.4 pins mcp==2.0.0, and current MCP servers from PyPI
pull mcp 2.3, so the runtime and the built-in servers run on both. Everything else imports what differs from here:

| what                 | mcp 1.x                                | mcp 2.x                                      |
|----------------------|----------------------------------------|----------------------------------------------|
| server class         | `mcp.server.fastmcp.FastMCP`           | `mcp.server.mcpserver.MCPServer`             |
| its lowlevel server  | `server._mcp_server`                   | `server._lowlevel_server`                    |
| JSON-RPC error       | `mcp.shared.exceptions.McpError`       | `mcp.shared.exceptions.MCPError`             |
| type fields          | camelCase (`isError`, `inputSchema`)   | snake_case (`is_error`, `input_schema`)      |
| a request            | wrapped in `ClientRequest(...)`        | the bare request (`ClientRequest`: a Union)  |
| streamable HTTP      | an `httpx` client; yields 3 values     | an `httpx2` client; yields 2 values          |
| HTTP client library  | `httpx` (also SSE's client factory)    | `httpx2`                                     |
| a stdio line         | `JSONRPCMessage.model_validate_json`   | `jsonrpc_message_adapter.validate_json`      |

Constructors accept the camelCase spellings on both (`CallToolResult(isError=True)`), so only reads go through the
helpers below. The server side is imported on first use only: a client never pays for it.

Typing follows mcp 1.x, the major the classic venv's mypy sees; the 2.x branches are exercised by the mcp 2 suite.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import mcp.types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP as MCPServer
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import McpError as MCPError

    MCP_MAJOR: int
else:
    try:  # mcp 2.x
        from mcp.shared.exceptions import MCPError

        MCP_MAJOR = 2
    except ImportError:  # mcp 1.x
        from mcp.shared.exceptions import McpError as MCPError

        MCP_MAJOR = 1

__all__ = [
    "MCP_MAJOR",
    "MCPError",
    "MCPServer",
    "Streams",
    "call_tool_request",
    "create_server",
    "dump_message",
    "error_message",
    "http_app",
    "http_module",
    "input_schema",
    "is_error",
    "lowlevel_server",
    "mime_type",
    "next_cursor",
    "parse_message",
    "run_server",
    "server_class",
    "streamable_http_transport",
    "structured_content",
]

Streams = tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]
"""What every transport yields: the session's read and write streams."""


# -- the server side ----------------------------------------------------------------------------------------------


def server_class() -> type[MCPServer]:
    """The high-level server class: `MCPServer` on mcp 2, `FastMCP` on mcp 1 (imported on first use)."""
    if MCP_MAJOR >= 2:
        from mcp.server.mcpserver import MCPServer as server  # type: ignore[import-not-found,unused-ignore]
    else:
        from mcp.server.fastmcp import FastMCP as server
    return cast("type[MCPServer]", server)


def __getattr__(name: str) -> Any:
    """`MCPServer` at run time (`server_class()`), so `from ... import MCPServer` works on either major."""
    if name == "MCPServer":
        return server_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_server(
    name: str,
    *,
    log_level: str = "ERROR",
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
) -> MCPServer:
    """A high-level server named `name` (keyword arguments only: mcp 2 changed the positional order).

    Args:
        name: the server name reported at `initialize`.
        log_level: the SDK's own log level; stdout carries the protocol, so its logging goes to stderr.
        lifespan: an async context manager factory run around the server's life (it gets the server).
    """
    return server_class()(name=name, log_level=log_level, lifespan=lifespan)  # type: ignore[arg-type]


def lowlevel_server(server: MCPServer) -> Server[Any, Any]:
    """The lowlevel `Server` inside a high-level server; neither major has a public accessor."""
    lowlevel = getattr(server, "_lowlevel_server", None) or getattr(server, "_mcp_server")  # noqa: B009
    return cast("Server[Any, Any]", lowlevel)


def run_server(server: MCPServer, transport: str = "stdio", *, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve `server` on `transport` ("stdio", "streamable-http" or "sse") until it is stopped (blocking).

    mcp 1 reads the HTTP host and port from `server.settings`; mcp 2 takes them as `run()` arguments.
    """
    if transport == "stdio":
        server.run("stdio")
    elif MCP_MAJOR >= 2:
        cast("Any", server).run(transport, host=host, port=port)
    else:
        server.settings.host, server.settings.port = host, port
        server.run(cast("Any", transport))


def http_app(server: MCPServer) -> Any:
    """The server as a stateless streamable HTTP ASGI app (JSON responses, path `/mcp`) for 127.0.0.1 clients.

    mcp 1 reads these settings from `server.settings`; mcp 2 takes them as `streamable_http_app()` arguments.
    """
    from mcp.server.transport_security import TransportSecuritySettings

    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)  # reached on 127.0.0.1 only
    if MCP_MAJOR >= 2:
        return cast("Any", server).streamable_http_app(
            json_response=True, stateless_http=True, transport_security=security
        )
    server.settings.json_response, server.settings.stateless_http = True, True
    server.settings.transport_security = security
    return server.streamable_http_app()


# -- errors and field reads ---------------------------------------------------------------------------------------


def error_message(exc: MCPError) -> str:
    """The message of a JSON-RPC error answer."""
    return exc.error.message


def _field(obj: Any, snake: str, camel: str) -> Any:
    return getattr(obj, snake if MCP_MAJOR >= 2 else camel)


def is_error(result: mcp.types.CallToolResult) -> bool:
    """Whether a tool result says the tool failed (`isError`)."""
    return bool(_field(result, "is_error", "isError"))


def structured_content(result: mcp.types.CallToolResult) -> dict[str, Any] | None:
    """A tool result's `structuredContent`, or None."""
    return cast("dict[str, Any] | None", _field(result, "structured_content", "structuredContent"))


def input_schema(tool: mcp.types.Tool) -> dict[str, Any]:
    """A tool's `inputSchema` (JSON schema of its arguments)."""
    return cast("dict[str, Any]", _field(tool, "input_schema", "inputSchema"))


def mime_type(
    block: mcp.types.ImageContent
    | mcp.types.AudioContent
    | mcp.types.TextResourceContents
    | mcp.types.BlobResourceContents,
) -> str | None:
    """A content block's or resource's `mimeType`."""
    return cast("str | None", _field(block, "mime_type", "mimeType"))


def next_cursor(page: mcp.types.ListToolsResult) -> str | None:
    """A paginated listing's `nextCursor` (None on the last page)."""
    return cast("str | None", _field(page, "next_cursor", "nextCursor"))


# -- requests and transports --------------------------------------------------------------------------------------


def call_tool_request(name: str, arguments: Mapping[str, Any]) -> mcp.types.ClientRequest:
    """A `tools/call` request for `ClientSession.send_request`: wrapped on mcp 1, bare on mcp 2."""
    request = mcp.types.CallToolRequest(params=mcp.types.CallToolRequestParams(name=name, arguments=dict(arguments)))
    if MCP_MAJOR >= 2:
        return cast("mcp.types.ClientRequest", request)
    return mcp.types.ClientRequest(request)


def parse_message(line: bytes) -> SessionMessage:
    """One JSON-RPC message read from a stdio server (a RootModel on mcp 1, a union's type adapter on mcp 2).

    Raises:
        pydantic.ValidationError: the line is not a JSON-RPC message.
    """
    if MCP_MAJOR >= 2:
        adapter: Any = getattr(mcp.types, "jsonrpc_message_adapter")  # noqa: B009 - mcp 2 only
        return SessionMessage(adapter.validate_json(line, by_name=False))
    return SessionMessage(mcp.types.JSONRPCMessage.model_validate_json(line))


def dump_message(message: SessionMessage) -> str:
    """A JSON-RPC message as one line of JSON for a stdio server, as each major's own stdio client writes it."""
    if MCP_MAJOR >= 2:  # mcp 2 keeps explicit nulls (a tool argument may be None) and drops unset fields
        return message.message.model_dump_json(by_alias=True, exclude_unset=True)
    return message.message.model_dump_json(by_alias=True, exclude_none=True)


def http_module() -> Any:
    """The HTTP library mcp's HTTP transports take clients of: `httpx` on mcp 1, `httpx2` on mcp 2."""
    return importlib.import_module("httpx2" if MCP_MAJOR >= 2 else "httpx")


@asynccontextmanager
async def streamable_http_transport(
    url: str,
    headers: Mapping[str, str],
    connect_timeout_s: float,
    read_timeout_s: float,
    *,
    on_broken: Callable[[Exception], None] | None = None,
) -> AsyncIterator[Streams]:
    """Mcp's streamable HTTP transport with our headers and timeouts, yielding only the two streams.

    mcp 1 takes an `httpx` client and yields (read, write, get_session_id); mcp 2 takes an `httpx2` client and yields
    (read, write). With `on_broken`, the client reports its first transport error there (`runtime/http_watch.py`).
    """
    from mcp.client.streamable_http import streamable_http_client

    http = http_module()
    timeout = http.Timeout(connect_timeout_s, read=read_timeout_s)
    if on_broken is not None:
        from hud_vf_gym.runtime.http_watch import watched_http_client  # it imports this module

        client = watched_http_client(headers, timeout, on_broken)
    else:
        client = http.AsyncClient(headers=dict(headers), timeout=timeout)
    async with client as http_client, streamable_http_client(url, http_client=http_client) as streams:
        yield streams[0], streams[1]
