"""The embedded model (or a local model folder) as a real OpenAI-compatible HTTP endpoint on 127.0.0.1.

```
python -m hud_vf_gym.local_model.serve [--model-path DIR] [--port 0]
serving SmolLM2-135M-Instruct at http://127.0.0.1:41231/v1
```

`hud-vf-gym eval` needs no socket: it answers from the model in process (`hud_vf_gym.local_model.endpoint`). A
client in another process needs one: ART and LiteLLM (which run on Python 3.12, where this machine has no CPU torch),
a RULER judge, `vf-eval`. The routes and their behaviour are exactly the in-process endpoint's: every request is
handed to `LocalModelTransport`, so both serve the same answers. The first line on stdout is the base URL; the
server runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from hud_vf_gym.local_model.endpoint import LocalModelTransport

if TYPE_CHECKING:
    import httpx2 as httpx

    from hud_vf_gym.local_model.model import LocalChatModel
else:  # the same httpx the endpoint's transport is built on (openai 3 runs on httpx2, openai 2 on httpx)
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx

__all__ = ["LocalModelServer", "main"]

HOST = "127.0.0.1"  # loopback only: the endpoint has no authentication
READY_PREFIX = "serving "  # the first stdout line: "serving <model> at <base url>"
SHUTDOWN_POLL_S = 0.1


class _Handler(BaseHTTPRequestHandler):
    """Forwards each request to the model's transport and writes its answer back."""

    protocol_version = "HTTP/1.1"  # keep-alive: the openai client and LiteLLM reuse connections
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # `format` is the base class's name
        """Log nothing: the caller reports its own requests."""

    def do_GET(self) -> None:  # http.server dispatches on this name
        """Serve `/v1/models` (and a 404 naming the routes)."""
        self._forward(b"")

    def do_POST(self) -> None:  # http.server dispatches on this name
        """Serve `/v1/chat/completions`."""
        length = int(self.headers.get("Content-Length") or 0)
        self._forward(self.rfile.read(length) if length > 0 else b"")

    def _forward(self, body: bytes) -> None:
        request = httpx.Request(self.command, f"http://{HOST}{self.path}", content=body)
        future = asyncio.run_coroutine_threadsafe(self.server.transport.handle_async_request(request), self.server.loop)
        response = future.result()
        payload = response.read()
        self.send_response(HTTPStatus(response.status_code))
        self.send_header("Content-Type", response.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, transport: LocalModelTransport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        super().__init__((HOST, port), _Handler)


class LocalModelServer:
    """A loaded local model served over HTTP on 127.0.0.1 (use as a context manager, or `start()`/`stop()`).

    Args:
        model: the loaded model (`load_local_model`).
        port: the port to bind; 0 picks a free one.
    """

    def __init__(self, model: LocalChatModel, *, port: int = 0) -> None:
        """Bind nothing yet; `start()` does."""
        self.model = model
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._server: _Server | None = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`, for `openai.AsyncOpenAI(base_url=...)` or LiteLLM's `api_base`."""
        if self._server is None:
            raise RuntimeError("the server is not running; call start() first")
        return f"http://{HOST}:{self._server.server_address[1]}/v1"

    def start(self) -> LocalModelServer:
        """Start the model's event loop and the HTTP server, each in a daemon thread."""
        loop = asyncio.new_event_loop()
        server = _Server(self._port, LocalModelTransport(self.model), loop)
        self._loop, self._server = loop, server
        self._threads = [
            threading.Thread(target=loop.run_forever, name="local-model-loop", daemon=True),
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S}, name="local-model-http"
            ),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and the loop; safe to call twice."""
        server, loop, self._server, self._loop = self._server, self._loop, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads = []
        if loop is not None and not loop.is_running():
            loop.close()

    def __enter__(self) -> LocalModelServer:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model, serve it, print the base URL, and wait for SIGINT or SIGTERM."""
    from hud_vf_gym.errors import HUDGymError
    from hud_vf_gym.local_model.model import load_local_model, resolve_model_folder

    parser = argparse.ArgumentParser(prog="python -m hud_vf_gym.local_model.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--model-path", type=Path, default=None, help="A local HF model folder (default: embedded).")
    parser.add_argument("--port", type=int, default=0, help="Port on 127.0.0.1 (default: 0, a free one).")
    args = parser.parse_args(argv)
    try:
        model = load_local_model(resolve_model_folder(args.model_path))
    except HUDGymError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with LocalModelServer(model, port=args.port) as server:
        sys.stdout.write(f"{READY_PREFIX}{model.name} at {server.base_url}\n")
        sys.stdout.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
