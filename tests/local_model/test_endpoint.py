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


QUESTIONS = ("Say hello.", "Name a colour.", "Count to three.", "What is 2 + 2?")


async def _ask(client: openai.AsyncOpenAI, question: str, **sampling: object) -> str:
    response = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": question}],
        max_completion_tokens=10,
        **sampling,  # type: ignore[arg-type]
    )
    return response.choices[0].message.content or ""


@pytest.mark.anyio
async def test_concurrent_requests_are_batched_with_the_replies_they_get_alone(model: LocalChatModel) -> None:
    serial = LocalChatModel(model.model, model.tokenizer, name=model.name, folder=model.folder, max_batch_size=1)
    batched = LocalChatModel(model.model, model.tokenizer, name=model.name, folder=model.folder)
    sampled = {"temperature": 1.0, "seed": 11}
    try:
        with anyio.fail_after(REQUEST_TIMEOUT_S):
            async with local_openai_client(serial) as client:
                alone = [await _ask(client, question, temperature=0) for question in QUESTIONS]
                alone_sampled = await _ask(client, QUESTIONS[0], **sampled)
            async with local_openai_client(batched) as client:
                results: dict[int, str] = {}

                async def ask(index: int, question: str) -> None:
                    results[index] = await _ask(client, question, temperature=0)

                async with anyio.create_task_group() as group:  # four rollouts' turns at once
                    for index, question in enumerate(QUESTIONS):
                        group.start_soon(ask, index, question)
                    group.start_soon(ask, -1, QUESTIONS[0])  # a duplicate, plus a seeded sampled request:
                    together_sampled: list[str] = []

                    async def ask_sampled() -> None:
                        together_sampled.append(await _ask(client, QUESTIONS[0], **sampled))

                    group.start_soon(ask_sampled)
    finally:
        serial.close()
        batched.close()
    assert [results[index] for index in range(len(QUESTIONS))] == alone  # greedy: batched or alone, the same
    assert results[-1] == alone[0]
    assert together_sampled == [alone_sampled]  # the seed decides the sample, not the batch it landed in
    assert serial.generator.batch_sizes == [1] * (len(QUESTIONS) + 1)
    assert max(batched.generator.batch_sizes) > 1
