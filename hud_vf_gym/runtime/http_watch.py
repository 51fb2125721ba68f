"""An HTTP client that reports the moment a remote MCP server's connection breaks.

mcp's streamable HTTP transport drops a response stream that breaks mid-answer (the server died during a call)
without failing the request waiting for it, and a refused POST crashes the transport's task group, again without
failing the waiting request: either way the request sits until its call timeout. Every request and response body
of this client goes through a transport wrapper that calls `on_broken(exc)` on the first transport error (refused,
reset, peer closed mid-body), so the connection can fail its waiting requests at once.

The client is the one the installed mcp major speaks (`mcp_compat.http_module()`: `httpx` on mcp 1, `httpx2` on
mcp 2; both have the same transport and stream classes). Timeouts are not reported: an idle SSE stream that times
out is reopened by mcp, and a slow call has its own timeout.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from types import ModuleType
from typing import Any

from hud_vf_gym.runtime.mcp_compat import http_module

__all__ = ["watched_http_client"]


def watched_http_client(headers: Mapping[str, str] | None, timeout: Any, on_broken: Callable[[Exception], None]) -> Any:
    """An `AsyncClient` of mcp's HTTP library whose transports report connection failures to `on_broken`.

    The client is built as usual first, so proxies from the environment keep working, and then each of its
    transports (the default one and any proxy mounts) is wrapped.

    Args:
        headers: headers sent with every request.
        timeout: that library's `Timeout` (or None for its default).
        on_broken: called with the first transport error of a request or of a response body.
    """
    http = http_module()
    watched = _watched_transport_class(http)
    client = http.AsyncClient(headers=dict(headers or {}), timeout=timeout)
    # neither library has a public hook that sees a response body fail; its transports are the one place that does.
    client._transport = watched(client._transport, on_broken)
    client._mounts = {
        pattern: None if transport is None else watched(transport, on_broken)
        for pattern, transport in client._mounts.items()
    }
    return client


@functools.cache
def _watched_transport_class(http: ModuleType) -> type[Any]:
    """The transport wrapper for `http` (httpx or httpx2), built once per library."""
    stream_class = _watched_stream_class(http)

    class _WatchedTransport(http.AsyncBaseTransport):  # type: ignore[misc,name-defined]
        """Pass requests to `inner`, reporting transport errors of the request and of its response body."""

        def __init__(self, inner: Any, on_broken: Callable[[Exception], None]) -> None:
            self._inner = inner
            self._on_broken = on_broken

        async def handle_async_request(self, request: Any) -> Any:
            try:
                response = await self._inner.handle_async_request(request)
            except http.TransportError as exc:
                self._report(exc)
                raise
            response.stream = stream_class(response.stream, self._report)
            return response

        async def aclose(self) -> None:
            await self._inner.aclose()

        def _report(self, exc: Exception) -> None:
            if not isinstance(exc, http.TimeoutException):
                self._on_broken(exc)

    return _WatchedTransport


@functools.cache
def _watched_stream_class(http: ModuleType) -> type[Any]:
    """The response-body wrapper for `http` (httpx or httpx2), built once per library."""

    class _WatchedStream(http.AsyncByteStream):  # type: ignore[misc,name-defined]
        """A response body that reports a transport error while it is read."""

        def __init__(self, inner: Any, report: Callable[[Exception], None]) -> None:
            self._inner = inner
            self._report = report

        async def __aiter__(self) -> AsyncIterator[bytes]:
            assert isinstance(self._inner, http.AsyncByteStream)  # an async transport's responses stream asynchronously
            try:
                async for chunk in self._inner:
                    yield chunk
            except http.TransportError as exc:
                self._report(exc)
                raise

        async def aclose(self) -> None:
            assert isinstance(self._inner, http.AsyncByteStream)
            await self._inner.aclose()

    return _WatchedStream
