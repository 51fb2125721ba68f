"""A real OpenAI-compatible chat server on 127.0.0.1 that answers with a scripted policy.

Tests and benchmarks point `openai.OpenAI`, `openai.AsyncOpenAI` or verifiers' client at `server.base_url` and get
proper `ChatCompletion` answers without a model:

```python
with ScriptedChatServer(Play2048Policy(max_moves=10)) as server:
    client = AsyncOpenAI(base_url=server.base_url, api_key="x")
```

Routes:
    `POST /v1/chat/completions`: the policy's reply comes back as `choices[0].message.content`, with word-count
        token usage, or, when the policy returns a `ToolCallReply`, as one native function call in
        `choices[0].message.tool_calls` (for environments that use OpenAI tools). With `stream: true` (verifiers
        v1's interception proxy streams) the same reply comes as `chat.completion.chunk` server-sent events: the
        whole message in one delta, then the finish reason, the usage when `stream_options.include_usage` asks,
        and `[DONE]`.
    `GET /v1/models`: lists the server's model name.
    `GET /health`: `{"status": "ok"}`.

The server must not be what a benchmark measures, so it answers at once: HTTP/1.1 keep-alive, Nagle's algorithm off
and each response (headers and body) sent in a single write. Two writes with Nagle on cost ~40 ms per call through
delayed ACKs (see the perf baseline, "Surprises" item 3).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol, TypedDict, cast

__all__ = ["DEFAULT_MODEL_NAME", "Policy", "RecordedRequest", "ScriptedChatServer", "ToolCallReply", "message_text"]

DEFAULT_MODEL_NAME = "scripted"
HOST = "127.0.0.1"  # loopback only: the server has no authentication
MAX_RECORDED_REQUESTS = 1000  # keep only the newest requests, so long benchmarks don't grow memory
SHUTDOWN_POLL_S = 0.05  # serve_forever checks for shutdown this often, so stop() returns within about this long
LISTEN_BACKLOG = 1024  # socketserver's default of 5 overflows under concurrent connects: SYN retries (1 s) and resets
THREAD_JOIN_TIMEOUT_S = 5.0  # threads exit right after shutdown() and EOF; this only guards against a hung policy

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
HEALTH_PATH = "/health"


@dataclass(frozen=True, slots=True)
class ToolCallReply:
    """A policy's reply that is one native function call (OpenAI `tool_calls`) instead of text."""

    name: str
    arguments: Mapping[str, Any]


class Policy(Protocol):
    """A scripted model: gets a request's messages and returns the assistant's reply text (or a native call)."""

    def __call__(self, messages: list[dict[str, Any]], /) -> str | ToolCallReply:
        """Return the reply to `messages` (OpenAI-style dicts whose content the server flattened to text)."""
        ...


class RecordedRequest(TypedDict):
    """One request the server received, kept for tests to inspect."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    json: Any  # the parsed body; None for a GET or a body that is not JSON


def message_text(message: Mapping[str, Any]) -> str:
    """Return a message's content as text: a string as it is, list content as its text parts joined by newlines.

    Image, audio and other non-text parts are ignored; missing or `None` content gives "".
    """
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, Mapping) and part.get("type") == "text"]
        return "\n".join(text for text in texts if isinstance(text, str))
    return str(content)


def _count_words(text: str) -> int:
    """Estimate a token count as the number of whitespace-separated words."""
    return len(text.split())


def _error_body(message: str, error_type: str) -> dict[str, Any]:
    """Build an error body in the shape the OpenAI API uses, which the openai client reads into its exceptions."""
    return {"error": {"message": message, "type": error_type, "param": None, "code": None}}


def _chat_completion(model: str, reply: str | ToolCallReply, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Build a `chat.completion` object holding `reply` as its only choice."""
    prompt_tokens = sum(_count_words(message_text(message)) for message in messages)
    if isinstance(reply, ToolCallReply):
        arguments = json.dumps(dict(reply.arguments))
        function = {"name": reply.name, "arguments": arguments}
        call = {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": function}
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        completion_tokens, finish_reason = _count_words(arguments) + 1, "tool_calls"
    else:
        message, completion_tokens, finish_reason = {"role": "assistant", "content": reply}, _count_words(reply), "stop"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class _ChatHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its `ScriptedChatServer` and can end its open keep-alive connections."""

    daemon_threads = True  # a handler thread blocked on an idle connection must not keep the process alive
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, chat: ScriptedChatServer) -> None:
        """Bind to an ephemeral loopback port; `chat` holds the policy and the request log."""
        self.chat = chat
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._connections_lock = threading.Lock()
        super().__init__((HOST, 0), _ChatRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember the connection, then serve it in its own thread."""
        with self._connections_lock:
            self._connections.add(request)
        self.chat._count_connection()
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection and close it."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection in this (handler) thread, which `close_connections` can then join."""
        thread = threading.current_thread()
        with self._connections_lock:
            self._handler_threads.add(thread)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._handler_threads.discard(thread)

    def close_connections(self, timeout_s: float) -> None:
        """Shut down every open connection, then join the handler threads, which see EOF and exit."""
        with self._connections_lock:
            connections, threads = list(self._connections), list(self._handler_threads)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client closed it already
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up mid-request; report anything else the default way."""
        # handle_error runs inside the except block that caught the error, so sys.exc_info() holds it.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _ChatRequestHandler(BaseHTTPRequestHandler):
    """Serves the OpenAI-compatible routes for one connection."""

    protocol_version = "HTTP/1.1"  # keep-alive: the openai client reuses its connections
    disable_nagle_algorithm = True  # with Nagle on, delayed ACKs add ~40 ms to every keep-alive call
    server: _ChatHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # `format` is the base class's name
        """Log nothing: a benchmark makes thousands of requests."""

    def do_GET(self) -> None:  # http.server dispatches on this name
        """Serve `/v1/models` and `/health`."""
        path = self.path.split("?", 1)[0]
        self.server.chat._record(self._recorded("GET", path, None))
        if path == MODELS_PATH:
            model = {"id": self.server.chat.model_name, "object": "model", "created": 0, "owned_by": "hud-vf-gym"}
            self._send_json(HTTPStatus.OK, {"object": "list", "data": [model]})
        elif path == HEALTH_PATH:
            self._send_json(HTTPStatus.OK, {"status": "ok"})
        else:
            self._send_not_found(path)

    def do_POST(self) -> None:  # http.server dispatches on this name
        """Serve `/v1/chat/completions`."""
        path = self.path.split("?", 1)[0]
        body = self._read_json_body()
        self.server.chat._record(self._recorded("POST", path, body))
        if path != CHAT_COMPLETIONS_PATH:
            self._send_not_found(path)
            return
        problem = _request_problem(body)
        if problem is not None:
            self._send_json(HTTPStatus.BAD_REQUEST, _error_body(problem, "invalid_request_error"))
            return
        self._answer_chat(cast(dict[str, Any], body))

    def _answer_chat(self, request: dict[str, Any]) -> None:
        """Ask the policy for a reply and send it as a chat completion (or a 500 when the policy fails)."""
        messages = [{**message, "content": message_text(message)} for message in request["messages"]]
        policy = self.server.chat.policy
        # The HTTP boundary: a failing policy becomes a 500 for this request and the server keeps serving,
        # the way a real endpoint reports its own failures.
        try:
            reply = policy(messages)
        except Exception as exc:
            message = f"policy {policy!r} raised {type(exc).__name__}: {exc}"
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, _error_body(message, "server_error"))
            return
        if not isinstance(reply, str | ToolCallReply):
            message = f"policy {policy!r} returned {type(reply).__name__}; expected str or ToolCallReply"
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, _error_body(message, "server_error"))
            return
        model = request.get("model")
        model_name = model if isinstance(model, str) else self.server.chat.model_name
        completion = _chat_completion(model_name, reply, messages)
        if request.get("stream"):
            options = request.get("stream_options")
            usage = isinstance(options, dict) and bool(options.get("include_usage"))
            self._send(HTTPStatus.OK, _stream_events(completion, usage=usage), "text/event-stream")
        else:
            self._send_json(HTTPStatus.OK, completion)

    def _read_json_body(self) -> Any:
        """Read the whole body (so the connection stays usable) and parse it; None when it is not JSON."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True  # the body's end is unknown, so this connection cannot carry another request
            return None
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def _recorded(self, method: str, path: str, body: Any) -> RecordedRequest:
        """Describe this request for the server's log."""
        headers = {name.lower(): value for name, value in self.headers.items()}
        return RecordedRequest(method=method, path=path, headers=headers, json=body)

    def _send_not_found(self, path: str) -> None:
        """Answer 404 with the routes that exist."""
        routes = f"POST {CHAT_COMPLETIONS_PATH}, GET {MODELS_PATH}, GET {HEALTH_PATH}"
        message = f"no route for {self.command} {path}; the scripted chat server serves {routes}"
        self._send_json(HTTPStatus.NOT_FOUND, _error_body(message, "not_found_error"))

    def _send_json(self, status: HTTPStatus, payload: Mapping[str, Any]) -> None:
        """Send a JSON response with headers and body in one write (see the module docstring for why)."""
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        """Send a response with headers and body in one write."""
        connection = "close" if self.close_connection else "keep-alive"
        head = (
            f"{self.protocol_version} {status.value} {status.phrase}\r\n"
            f"Server: hud-vf-gym-scripted\r\n"
            f"Date: {self.date_time_string()}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {connection}\r\n"
            f"\r\n"
        )
        self.wfile.write(head.encode("latin-1") + body)


def _stream_events(completion: Mapping[str, Any], *, usage: bool) -> bytes:
    """A chat completion as `chat.completion.chunk` server-sent events (one delta with the whole message)."""
    choice = completion["choices"][0]
    message = choice["message"]
    delta: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": index, **call} for index, call in enumerate(message["tool_calls"])]
    head = {key: completion[key] for key in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    chunks = [
        {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"], "logprobs": None}]},
    ]
    if usage:
        chunks.append({**head, "choices": [], "usage": completion["usage"]})
    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
    return "".join(events).encode("utf-8")


def _request_problem(body: Any) -> str | None:
    """Return why a chat completion request cannot be served, or None when it can."""
    if not isinstance(body, dict):
        return "expected a JSON object body with 'model' and 'messages'"
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(message, dict) for message in messages):
        return f"expected 'messages' to be a list of message objects, got {type(messages).__name__}"
    choices = body.get("n", 1)
    if choices not in (None, 1):
        return f"expected n=1 (the scripted chat server returns one choice), got n={choices!r}"
    return None


class ScriptedChatServer:
    """An OpenAI-compatible chat completions server on 127.0.0.1 whose replies come from a scripted policy.

    It runs a stdlib `ThreadingHTTPServer` on an ephemeral port in a daemon thread. Use it as a context manager, or
    call `start()` and `stop()` (stop can be called twice). Every request is recorded in `requests`.

    Args:
        policy: called with each request's messages (content flattened to text by `message_text`); its return value
            is the assistant's reply. An exception becomes an HTTP 500 and the server keeps running.
        model_name: the name `GET /v1/models` lists. Completions echo whatever model the request names.
        max_recorded_requests: how many of the newest requests `requests` keeps.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        model_name: str = DEFAULT_MODEL_NAME,
        max_recorded_requests: int = MAX_RECORDED_REQUESTS,
    ) -> None:
        """Store the settings; no socket is opened until `start()`."""
        if max_recorded_requests < 0:
            raise ValueError(f"max_recorded_requests must be >= 0, got {max_recorded_requests}")
        self.policy = policy
        self.model_name = model_name
        self._requests: deque[RecordedRequest] = deque(maxlen=max_recorded_requests)
        self._requests_lock = threading.Lock()
        self._request_count = 0
        self._connection_count = 0
        self._http_server: _ChatHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ScriptedChatServer:
        """Bind a free loopback port and start serving in a daemon thread; returns the server itself.

        Raises:
            RuntimeError: the server is already running.
        """
        if self._http_server is not None:
            raise RuntimeError("ScriptedChatServer is already running; call stop() before starting it again")
        http_server = _ChatHTTPServer(self)
        thread = threading.Thread(
            target=http_server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name=f"scripted-chat-server-{http_server.server_address[1]}",
            daemon=True,
        )
        thread.start()
        self._http_server, self._thread = http_server, thread
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and open connections, and join the threads; safe to call twice."""
        http_server, thread = self._http_server, self._thread
        self._http_server, self._thread = None, None
        if http_server is None:
            return
        # 1. End the accept loop (returns within SHUTDOWN_POLL_S).
        http_server.shutdown()
        # 2. Close the listening socket, so the port refuses new connections.
        http_server.server_close()
        # 3. Cut keep-alive connections, so their handler threads stop waiting for another request, and join those.
        http_server.close_connections(timeout_s=THREAD_JOIN_TIMEOUT_S)
        # 4. Join the serving thread.
        if thread is not None:
            thread.join(timeout=THREAD_JOIN_TIMEOUT_S)

    def __enter__(self) -> ScriptedChatServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    @property
    def is_running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._http_server is not None

    @property
    def port(self) -> int:
        """The loopback port the server listens on.

        Raises:
            RuntimeError: the server is not running.
        """
        if self._http_server is None:
            raise RuntimeError("ScriptedChatServer is not running; use it as a context manager or call start() first")
        return int(self._http_server.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give a client, `http://127.0.0.1:PORT/v1`."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the newest recorded requests, oldest first (at most `max_recorded_requests`)."""
        with self._requests_lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """How many requests the server has received since it was created, including ones no longer recorded."""
        with self._requests_lock:
            return self._request_count

    @property
    def connection_count(self) -> int:
        """How many TCP connections the server has accepted; with keep-alive, far fewer than `request_count`."""
        with self._requests_lock:
            return self._connection_count

    def clear_requests(self) -> None:
        """Forget the recorded requests (the total `request_count` is kept)."""
        with self._requests_lock:
            self._requests.clear()

    def _count_connection(self) -> None:
        """Count one accepted connection."""
        with self._requests_lock:
            self._connection_count += 1

    def _record(self, request: RecordedRequest) -> None:
        """Append a request to the bounded log."""
        with self._requests_lock:
            self._requests.append(request)
            self._request_count += 1
