"""The in-process OpenAI-compatible endpoint, through a real `openai.AsyncOpenAI` and the real embedded model."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import openai
import pytest

from hud_vf_gym.local_model.endpoint import generation_options, local_openai_client
from hud_vf_gym.local_model.model import (
    GenerationOptions,
    LocalChatModel,
    load_local_model,
)

REQUEST_TIMEOUT_S = 300  # a few tokens take a second; a busy 2-core machine can be far slower
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def model(embedded_model_folder: Path) -> LocalChatModel:
    return load_local_model(embedded_model_folder)


@pytest.fixture
async def client(model: LocalChatModel) -> AsyncIterator[openai.AsyncOpenAI]:
    async with local_openai_client(model) as opened:
        yield opened


@pytest.mark.anyio
async def test_local_endpoint_answers_a_chat_completion(client: openai.AsyncOpenAI) -> None:
    with anyio.fail_after(REQUEST_TIMEOUT_S):
        response = await client.chat.completions.create(
            model="anything", messages=MESSAGES, max_completion_tokens=6, temperature=0
        )
    assert response.model == "SmolLM2-135M-Instruct"
    [choice] = response.choices
    assert choice.message.role == "assistant" and choice.message.content
    assert response.usage is not None
    assert 0 < response.usage.completion_tokens <= 6
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert choice.finish_reason == ("length" if response.usage.completion_tokens == 6 else "stop")


@pytest.mark.anyio
async def test_local_endpoint_lists_its_model(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [item.id for item in models.data] == ["SmolLM2-135M-Instruct"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"n": 2}, "expected n=1 (the local model returns one choice), got n=2"),
        ({"stream": True}, "streaming is not supported by the local model endpoint; send stream=false"),
    ],
    ids=["two-choices", "stream"],
)
async def test_local_endpoint_refuses_what_it_cannot_do(
    client: openai.AsyncOpenAI, extra: dict[str, object], message: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=re.escape(message)):
        await client.chat.completions.create(model="m", messages=MESSAGES, **extra)  # type: ignore[call-overload]


def test_generation_options_read_the_openai_fields() -> None:
    body = {"max_completion_tokens": 12, "temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": "</tool>"}
    assert generation_options(body) == GenerationOptions(12, 0.5, 0.9, 3, ("</tool>",))
    # OpenAI's defaults: temperature 1, no stop; `max_tokens` is the older name of the limit
    assert generation_options({"max_tokens": 5}) == GenerationOptions(max_new_tokens=5, temperature=1.0)
