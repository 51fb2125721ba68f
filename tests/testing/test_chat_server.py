"""Tests for hud_vf_gym.testing: the scripted chat server (through real openai clients) and the scripted policies."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

import hud_vf_gym.testing as testing
from hud_vf_gym.testing import (
    FixedRepliesPolicy,
    NonsensePolicy,
    Play2048Policy,
    ScriptedChatServer,
    ToolCallReply,
    make_policy,
    message_text,
)

TIMEOUT_S = 10.0  # a generous bound against hangs; a scripted answer takes milliseconds
WELL_FORMED_CALL = re.compile(r"<tool>\s*\w+\(.*?\)\s*</tool>", re.DOTALL)
CANNOT_MOVE_DOWN = "ERROR: Cannot move down - no valid moves in that direction"
# more simultaneous connects than socketserver's default listen backlog (5), which dropped or reset some of them
CONCURRENT_REQUESTS = 64
BOARD = "Moved LEFT\nScore: 4\n+---+---+\n| 2 |   |\n+---+---+\n[ASCII]"


def echo_policy(messages: list[dict[str, Any]]) -> str:
    """Echo the last message; "boom" makes the policy fail, to test the 500 path."""
    text = message_text(messages[-1])
    if text == "boom":
        raise RuntimeError("policy exploded")
    return f"echo: {text}"


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ScriptedChatServer]:
    server = ScriptedChatServer(echo_policy)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(shared_server: ScriptedChatServer) -> ScriptedChatServer:
    shared_server.clear_requests()
    return shared_server


def sync_client(server: ScriptedChatServer) -> OpenAI:
    # max_retries=0: the openai client retries 5xx by default, which would hide the 500 path and slow the tests
    return OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=TIMEOUT_S)


def async_client(server: ScriptedChatServer) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=TIMEOUT_S)


def raw_request(server: ScriptedChatServer, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT_S)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# --- the server, through the real openai clients ---


def test_chat_server_sync_client_gets_chat_completion(server: ScriptedChatServer) -> None:
    with sync_client(server) as client:
        completion = client.chat.completions.create(
            model="my-model",
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
            max_completion_tokens=32,
        )

    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "my-model"
    assert len(completion.choices) == 1
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    # prompt: "be brief" + "hello there" = 4 words; completion: "echo: hello there" = 3 words
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 3)
    assert completion.usage.total_tokens == 7


def test_chat_server_records_request(server: ScriptedChatServer) -> None:
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    with sync_client(server) as client:
        client.chat.completions.create(
            model="m", messages=messages, max_completion_tokens=16, n=1, extra_headers={"X-Session-Id": "abc"}
        )

    [recorded] = server.requests
    assert recorded["method"] == "POST"
    assert recorded["path"] == "/v1/chat/completions"
    assert recorded["headers"]["x-session-id"] == "abc"
    assert recorded["headers"]["authorization"] == "Bearer x"
    assert recorded["json"]["model"] == "m"
    assert recorded["json"]["messages"] == messages
    assert recorded["json"]["max_completion_tokens"] == 16
    assert server.request_count >= 1


def test_chat_server_flattens_list_content_for_policy(server: ScriptedChatServer) -> None:
    content: list[Any] = [
        {"type": "text", "text": "look at"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this board"},
    ]
    with sync_client(server) as client:
        completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": content}])

    assert completion.choices[0].message.content == "echo: look at\nthis board"
    assert server.requests[-1]["json"]["messages"][0]["content"] == content  # the record keeps the original


def test_chat_server_lists_models_and_health(server: ScriptedChatServer) -> None:
    with sync_client(server) as client:
        models = client.models.list()

    assert [model.id for model in models.data] == ["scripted"]
    assert raw_request(server, "GET", "/health") == (200, {"status": "ok"})


def test_chat_server_policy_exception_is_500_and_server_keeps_running(server: ScriptedChatServer) -> None:
    with sync_client(server) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "boom"}])
        after = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "still there?"}])

    assert caught.value.status_code == 500
    assert "RuntimeError: policy exploded" in caught.value.message
    assert after.choices[0].message.content == "echo: still there?"


@pytest.mark.parametrize("reply", ["streamed text", ToolCallReply("move", {"direction": "left"})], ids=["text", "call"])
def test_chat_server_streams_the_same_reply(reply: str | ToolCallReply) -> None:
    # verifiers v1's interception proxy asks for stream=true: the reply must read the same as without streaming
    with ScriptedChatServer(FixedRepliesPolicy([reply])) as streaming, sync_client(streaming) as client:
        messages = [{"role": "user", "content": "hi"}]
        chunks = list(
            client.chat.completions.create(
                model="m", messages=messages, stream=True, stream_options={"include_usage": True}
            )
        )
        plain = client.chat.completions.create(model="m", messages=messages)
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert "".join(delta.content or "" for delta in deltas) == (plain.choices[0].message.content or "")
    calls = [call for delta in deltas for call in delta.tool_calls or []]
    expected_calls = plain.choices[0].message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        (c.function.name, c.function.arguments) for c in expected_calls
    ]
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == plain.usage.total_tokens  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "expected a JSON object body with 'model' and 'messages'"),
        (b'{"model": "m", "messages": "hi"}', "expected 'messages' to be a list of message objects, got str"),
        (
            b'{"model": "m", "messages": [], "n": 2}',
            "expected n=1 (the scripted chat server returns one choice), got n=2",
        ),
    ],
    ids=["not-json", "messages-not-list", "n-2"],
)
def test_chat_server_rejects_bad_request(server: ScriptedChatServer, body: bytes, expected: str) -> None:
    status, payload = raw_request(server, "POST", "/v1/chat/completions", body)

    assert status == 400
    assert payload["error"]["message"] == expected


def test_chat_server_unknown_route_is_404(server: ScriptedChatServer) -> None:
    status, payload = raw_request(server, "GET", "/v1/nothing")

    assert status == 404
    assert payload["error"]["message"] == (
        "no route for GET /v1/nothing; the scripted chat server serves "
        "POST /v1/chat/completions, GET /v1/models, GET /health"
    )


@pytest.mark.anyio
async def test_chat_server_answers_concurrent_async_requests(server: ScriptedChatServer) -> None:
    replies: dict[int, str | None] = {}

    async def ask(client: AsyncOpenAI, index: int) -> None:
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"request {index}"}]
        )
        replies[index] = completion.choices[0].message.content

    with anyio.fail_after(TIMEOUT_S):
        async with async_client(server) as client:
            for _ in range(2):  # the second round runs over the kept-alive connections of the first
                async with anyio.create_task_group() as group:
                    for index in range(CONCURRENT_REQUESTS):
                        group.start_soon(ask, client, index)

    assert replies == {index: f"echo: request {index}" for index in range(CONCURRENT_REQUESTS)}
    assert len(server.requests) == 2 * CONCURRENT_REQUESTS


@pytest.mark.anyio
async def test_chat_server_works_with_verifiers_client(server: ScriptedChatServer) -> None:
    import verifiers as vf

    with anyio.fail_after(TIMEOUT_S):
        async with async_client(server) as openai_client:
            client = vf.OpenAIChatCompletionsClient(openai_client)
            response = await client.get_response(
                prompt=[vf.UserMessage(content="play")],
                model="scripted",
                sampling_args={"max_tokens": 16, "temperature": 0.0},
            )

    assert response.model == "scripted"
    assert response.message.content == "echo: play"
    assert response.message.finish_reason == "stop"
    body = server.requests[-1]["json"]
    assert body["max_completion_tokens"] == 16  # verifiers renames max_tokens
    assert body["messages"] == [{"role": "user", "content": "play"}]


def test_chat_server_keeps_connections_alive() -> None:
    with ScriptedChatServer(echo_policy) as server, sync_client(server) as client:
        for _ in range(5):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])

        assert server.request_count == 5
        assert server.connection_count == 1


def test_chat_server_bounds_recorded_requests() -> None:
    with ScriptedChatServer(echo_policy, max_recorded_requests=3) as server:
        for _ in range(5):
            raw_request(server, "GET", "/health")

        assert len(server.requests) == 3
        assert server.request_count == 5


def test_chat_server_stop_is_idempotent_and_closes_port() -> None:
    threads_before = set(threading.enumerate())
    server = ScriptedChatServer(echo_policy).start()
    try:
        port = server.port
        with sync_client(server) as client:  # leave a kept-alive connection open across stop()
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            server_threads = set(threading.enumerate()) - threads_before
            server.stop()
            server.stop()
    finally:
        server.stop()

    assert len(server_threads) == 2  # the accept loop and the kept-alive connection's handler
    assert not [thread for thread in server_threads if thread.is_alive()]
    assert not server.is_running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S).close()
    with pytest.raises(RuntimeError, match=re.escape("ScriptedChatServer is not running; use it as a context manager")):
        _ = server.base_url


def test_chat_server_context_manager_base_url() -> None:
    with ScriptedChatServer(echo_policy) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        with pytest.raises(RuntimeError, match=re.escape("ScriptedChatServer is already running; call stop()")):
            server.start()
    assert not server.is_running


def test_testing_exports_sorted_all() -> None:
    assert testing.__all__ == sorted(testing.__all__)
    assert all(hasattr(testing, name) for name in testing.__all__)


# --- message_text ---


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("plain", "plain"),
        (None, ""),
        ([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}], "a"),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "a\nb"),
    ],
    ids=["string", "none", "text-and-image", "two-texts"],
)
def test_message_text(content: Any, expected: str) -> None:
    assert message_text({"role": "user", "content": content}) == expected


# --- Play2048Policy ---


def game(*turns: tuple[str, str]) -> list[dict[str, Any]]:
    """Build a 2048 conversation: the prompt, then (assistant reply, observation) pairs."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": f"Play 2048.\n{BOARD}"}]
    for reply, observation in turns:
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": observation}]
    return messages


def test_play2048_policy_starts_with_first_preference() -> None:
    assert Play2048Policy()(game()) == "<tool>down()</tool>"


def test_play2048_policy_tries_next_direction_after_cannot_move() -> None:
    policy = Play2048Policy()

    assert policy(game(("<tool>down()</tool>", CANNOT_MOVE_DOWN))) == "<tool>left()</tool>"
    cannot_move_left = CANNOT_MOVE_DOWN.replace("down", "left")
    history = game(("<tool>down()</tool>", CANNOT_MOVE_DOWN), ("<tool>left()</tool>", cannot_move_left))
    assert policy(history) == "<tool>right()</tool>"


def test_play2048_policy_returns_to_first_preference_after_success() -> None:
    history = game(("<tool>down()</tool>", CANNOT_MOVE_DOWN), ("<tool>left()</tool>", BOARD))

    assert Play2048Policy()(history) == "<tool>down()</tool>"


def test_play2048_policy_reads_tool_messages() -> None:
    history = game()
    history += [{"role": "assistant", "content": "<tool>down()</tool>"}, {"role": "tool", "content": CANNOT_MOVE_DOWN}]

    assert Play2048Policy()(history) == "<tool>left()</tool>"


def test_play2048_policy_done_after_max_moves() -> None:
    policy = Play2048Policy(max_moves=2)
    one_move = game(("<tool>down()</tool>", BOARD))
    two_moves = game(
        ("<tool>down()</tool>", BOARD), ("<tool>down()</tool>", CANNOT_MOVE_DOWN), ("<tool>left()</tool>", BOARD)
    )

    assert policy(one_move) == "<tool>down()</tool>"
    assert policy(two_moves) == "<tool>done()</tool>"


def test_play2048_policy_done_when_no_direction_moves() -> None:
    turns = [(f"<tool>{d}()</tool>", CANNOT_MOVE_DOWN.replace("down", d)) for d in ("down", "left", "right", "up")]

    assert Play2048Policy()(game(*turns)) == "<tool>done()</tool>"


def test_play2048_policy_done_on_game_over() -> None:
    assert Play2048Policy()(game(("<tool>down()</tool>", f"{BOARD}\nGAME OVER!"))) == "<tool>done()</tool>"


def test_play2048_policy_thinking_emits_think_and_tool() -> None:
    reply = Play2048Policy(thinking=True)(game(("<tool>down()</tool>", CANNOT_MOVE_DOWN)))

    assert re.fullmatch(r"<think>[^<]+</think>\n<tool>left\(\)</tool>", reply)


def test_play2048_policy_is_deterministic_and_plays_through_server() -> None:
    history = game(("<tool>down()</tool>", CANNOT_MOVE_DOWN))
    policy = Play2048Policy()
    assert policy(history) == policy(list(history))

    messages: list[Any] = history
    with ScriptedChatServer(policy) as server, sync_client(server) as client:
        completion = client.chat.completions.create(model="m", messages=messages)
    assert completion.choices[0].message.content == "<tool>left()</tool>"


def test_play2048_policy_rejects_bad_order() -> None:
    expected = "order must be distinct directions from down, left, right, up, got ['down', 'down']"
    with pytest.raises(ValueError, match=re.escape(expected)):
        Play2048Policy(order=["down", "down"])


# --- NonsensePolicy ---


def test_nonsense_policy_never_makes_well_formed_call() -> None:
    replies = [NonsensePolicy(seed)(game()[:1] * length) for seed in range(20) for length in range(1, 30)]

    assert not [reply for reply in replies if WELL_FORMED_CALL.search(reply)]
    assert any("<to" in reply for reply in replies)  # sometimes a broken tag


def test_nonsense_policy_is_deterministic() -> None:
    history = game(("hmm", BOARD))

    assert NonsensePolicy(seed=3)(history) == NonsensePolicy(seed=3)(list(history))
    assert NonsensePolicy(seed=3)(history) != NonsensePolicy(seed=3)(history[:-1])


# --- FixedRepliesPolicy ---


def test_fixed_replies_policy_indexes_by_assistant_turns() -> None:
    policy = FixedRepliesPolicy(["first", "second"])

    assert policy(game()) == "first"
    assert policy(game(("first", BOARD))) == "second"
    assert policy(game(("first", BOARD), ("second", BOARD), ("second", BOARD))) == "second"  # clamped to the last


def test_fixed_replies_policy_rejects_empty() -> None:
    with pytest.raises(ValueError, match=re.escape("replies must be a non-empty sequence of strings, got []")):
        FixedRepliesPolicy([])


# --- make_policy ---


def test_make_policy_builds_by_name() -> None:
    assert isinstance(make_policy("2048", max_moves=3), Play2048Policy)
    assert isinstance(make_policy("nonsense", seed=1), NonsensePolicy)
    assert make_policy("fixed", replies=["x"])(game()) == "x"


def test_make_policy_unknown_name() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown policy 'chess'; expected one of 2048, fixed, nonsense")):
        make_policy("chess")


def test_chat_server_sends_a_tool_call_reply_as_native_tool_calls() -> None:
    def call_move(messages: list[dict[str, Any]]) -> ToolCallReply:
        return ToolCallReply("move", {"direction": "left"})

    with ScriptedChatServer(call_move) as tool_server, sync_client(tool_server) as client:
        completion = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "play"}], max_completion_tokens=16
        )

    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("move", {"direction": "left"})
    assert call.id.startswith("call_")
