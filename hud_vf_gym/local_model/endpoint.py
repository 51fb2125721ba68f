"""An OpenAI-compatible chat endpoint served in process by a local model, with no socket and no second process.

`local_openai_client(model)` returns an `openai.AsyncOpenAI` whose HTTP transport answers
`POST /v1/chat/completions` and `GET /v1/models` by calling `LocalChatModel.complete` in a worker thread. Everything
above the transport (the openai client, verifiers' client, the rollout loop) is exactly what an `--base-url` run
uses, so the embedded model and a remote endpoint take the same path.

Each request's `max_completion_tokens` (or `max_tokens`), `temperature`, `top_p`, `seed` and `stop` are honoured;
`n` must be 1 and `stream` false. Message content is read as text (image parts are dropped: the local models are
text-only). Concurrent requests are decoded together in batches by the model's worker thread
(`hud_vf_gym.local_model.batching`), each with its own sampling options and seed. Token counts in `usage` are real
tokenizer counts.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hud_vf_gym.local_model.model import GenerationOptions, LocalChatModel

if TYPE_CHECKING:
    import httpx2 as httpx
    from openai import AsyncOpenAI
else:  # openai 3 runs on httpx2, openai 2 on httpx; the transport must come from the one openai uses
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx

__all__ = ["LOCAL_BASE_URL", "LocalModelTransport", "local_openai_client"]

LOCAL_BASE_URL = "http://local-model.invalid/v1"  # never resolved: the transport answers before any connection
DEFAULT_MAX_TOKENS = 256  # when a request names no limit (OpenAI's own default is the context size)


def _error(status: int, message: str, error_type: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": error_type, "param": None}})


def _text_of(content: Any) -> str:
    """A message's content as text: a string as it is, list content as its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, Mapping) and part.get("type") == "text"]
        return "\n".join(part for part in parts if isinstance(part, str))
    return "" if content is None else str(content)


def _request_problem(body: Any) -> str | None:
    """Why a chat completion request cannot be served, or None when it can."""
    if not isinstance(body, dict):
        return "expected a JSON object body with 'model' and 'messages'"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(item, dict) for item in messages):
        return "expected 'messages' to be a non-empty list of message objects"
    if body.get("stream"):
        return "streaming is not supported by the local model endpoint; send stream=false"
    if body.get("n", 1) not in (None, 1):
        return f"expected n=1 (the local model returns one choice), got n={body.get('n')!r}"
    return None


def generation_options(body: Mapping[str, Any]) -> GenerationOptions:
    """Read the sampling fields of an OpenAI chat request."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    stop = body.get("stop") or ()
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    seed = body.get("seed")
    return GenerationOptions(
        max_new_tokens=int(limit),
        temperature=1.0 if temperature is None else float(temperature),  # OpenAI's default temperature is 1
        top_p=1.0 if top_p is None else float(top_p),
        seed=None if seed is None else int(seed),
        stop=(stop,) if isinstance(stop, str) else tuple(str(item) for item in stop),
    )


class LocalModelTransport(httpx.AsyncBaseTransport):
    """An httpx transport that serves the OpenAI chat routes from a `LocalChatModel`."""

    def __init__(self, model: LocalChatModel) -> None:
        """Serve `model`; requests that name another model are answered by it all the same."""
        self.model = model

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer one request (chat completion, model list, or a 404 naming the routes)."""
        path = request.url.path
        if request.method == "POST" and path.endswith("/chat/completions"):
            return await self._chat(await request.aread())
        if request.method == "GET" and path.endswith("/models"):
            model = {"id": self.model.name, "object": "model", "created": 0, "owned_by": "hud-vf-gym"}
            return httpx.Response(200, json={"object": "list", "data": [model]})
        routes = "POST /v1/chat/completions, GET /v1/models"
        return _error(404, f"no route for {request.method} {path}; the local model serves {routes}", "not_found")

    async def _chat(self, raw: bytes) -> httpx.Response:
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        problem = _request_problem(body)
        if problem is not None:
            return _error(400, problem, "invalid_request_error")
        try:
            options = generation_options(body)
        except (TypeError, ValueError) as exc:
            return _error(400, f"bad sampling field: {exc}", "invalid_request_error")
        messages = [
            {"role": item.get("role", "user"), "content": _text_of(item.get("content"))} for item in body["messages"]
        ]
        # The endpoint boundary: a failing generation becomes this request's 500, as a real server reports it.
        try:
            request = await asyncio.to_thread(self.model.encode, messages, options)  # templating off the event loop
            completion = await asyncio.wrap_future(self.model.submit(request))
        except Exception as exc:
            return _error(500, f"local model {self.model.name} failed: {type(exc).__name__}: {exc}", "server_error")
        usage = {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        }
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": completion.text},
            "finish_reason": completion.finish_reason,
            "logprobs": None,
        }
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model.name,
            "choices": [choice],
            "usage": usage,
        }
        return httpx.Response(200, json=payload)


def local_openai_client(model: LocalChatModel, *, timeout_s: float = 600.0) -> AsyncOpenAI:
    """An `AsyncOpenAI` client answered in process by `model` (close it with `await client.close()`).

    Args:
        model: the loaded local model.
        timeout_s: per-request limit, generous because requests queue for the one model.
    """
    from openai import AsyncOpenAI

    http_client = httpx.AsyncClient(transport=LocalModelTransport(model), timeout=timeout_s)
    return AsyncOpenAI(base_url=LOCAL_BASE_URL, api_key="local", http_client=http_client, max_retries=0)
