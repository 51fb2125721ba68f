"""An httpx client that reports the moment a remote MCP server's connection breaks.

mcp's streamable HTTP transport drops a response stream that breaks mid-answer (the server died during a call)
without failing the request waiting for it, and a refused POST crashes the transport's task group, again without
failing the waiting request: either way the request sits until its call timeout. Every request and response body
of this client goes through a transport wrapper that calls `on_broken(exc)` on the first transport error (refused,
reset, peer closed mid-body), so the connection can fail its waiting requests at once.

Timeouts are not reported: an idle SSE stream that times out is reopened by mcp, and a slow call has its own timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

import httpx

__all__ = ["watched_http_client"]


def watched_http_client(
    headers: Mapping[str, str] | None, timeout: httpx.Timeout | None, on_broken: Callable[[Exception], None]
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` (mcp's settings) whose transports report connection failures to `on_broken`.

    The client is built as usual first, so proxies from the environment keep working, and then each of its
    transports (the default one and any proxy mounts) is wrapped.
    """
    client = httpx.AsyncClient(headers=dict(headers or {}), timeout=timeout)
    # httpx has no public hook that sees a response body fail; its transports are the one place that does.
    client._transport = _WatchedTransport(client._transport, on_broken)
    client._mounts = {
        pattern: None if transport is None else _WatchedTransport(transport, on_broken)
        for pattern, transport in client._mounts.items()
    }
    return client


class _WatchedTransport(httpx.AsyncBaseTransport):
    """Pass requests to `inner`, reporting transport errors of the request and of its response body."""

    def __init__(self, inner: httpx.AsyncBaseTransport, on_broken: Callable[[Exception], None]) -> None:
        self._inner = inner
        self._on_broken = on_broken

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            self._report(exc)
            raise
        response.stream = _WatchedStream(response.stream, self._report)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    def _report(self, exc: httpx.TransportError) -> None:
        if not isinstance(exc, httpx.TimeoutException):
            self._on_broken(exc)


class _WatchedStream(httpx.AsyncByteStream):
    """A response body that reports a transport error while it is read."""

    def __init__(
        self, inner: httpx.SyncByteStream | httpx.AsyncByteStream, report: Callable[[httpx.TransportError], None]
    ) -> None:
        self._inner = inner
        self._report = report

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._inner, httpx.AsyncByteStream)  # an async transport's responses stream asynchronously
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.TransportError as exc:
            self._report(exc)
            raise

    async def aclose(self) -> None:
        assert isinstance(self._inner, httpx.AsyncByteStream)
        await self._inner.aclose()
