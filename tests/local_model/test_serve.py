"""The embedded model behind a real HTTP endpoint on 127.0.0.1 (`python -m hud_vf_gym.local_model.serve`)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import openai
import pytest

from hud_vf_gym.local_model.model import LocalChatModel, embedded_gguf, ensure_converted, load_local_model
from hud_vf_gym.local_model.serve import LocalModelServer

REQUEST_TIMEOUT_S = 300  # a few tokens take a second; a busy 2-core machine can be far slower


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LocalChatModel:
    cache = tmp_path_factory.getbasetemp() / "hud-vf-gym-cache" / "models"  # shared with the other model tests
    return load_local_model(ensure_converted(embedded_gguf(), cache=cache))


@pytest.fixture
def server(model: LocalChatModel) -> Iterator[LocalModelServer]:
    with LocalModelServer(model) as running:
        yield running


def test_the_endpoint_answers_over_http_like_the_in_process_one(server: LocalModelServer) -> None:
    assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
    with openai.OpenAI(base_url=server.base_url, api_key="unused", timeout=REQUEST_TIMEOUT_S) as client:
        response = client.chat.completions.create(
            model="anything", messages=[{"role": "user", "content": "Say hello."}], max_tokens=5, temperature=0
        )
        again = client.chat.completions.create(
            model="anything", messages=[{"role": "user", "content": "Say hello."}], max_tokens=5, temperature=0
        )
        models = client.models.list()
    [choice] = response.choices
    assert response.model == "SmolLM2-135M-Instruct" and choice.message.content
    assert response.usage is not None and 0 < response.usage.completion_tokens <= 5
    assert again.choices[0].message.content == choice.message.content  # greedy: the same answer on a kept connection
    assert [item.id for item in models.data] == ["SmolLM2-135M-Instruct"]


def test_bad_requests_get_the_endpoints_own_errors(server: LocalModelServer) -> None:
    request = urllib.request.Request(f"{server.base_url}/chat/completions", data=b'{"messages": []}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(request, timeout=30)
    with bad.value:  # the error holds the response: close it
        assert bad.value.code == 400
        assert "non-empty list of message objects" in json.loads(bad.value.read())["error"]["message"]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{server.base_url}/embeddings", timeout=30)
    with missing.value:
        assert missing.value.code == 404


def test_stop_closes_the_port(model: LocalChatModel) -> None:
    running = LocalModelServer(model).start()
    port = int(running.base_url.split(":")[2].split("/")[0])
    running.stop()
    running.stop()  # twice is fine
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
