"""Batched decoding for the local model: a real (tiny, random) Llama decodes several requests in one batch.

The model runs in float64 so that batching cannot flip a greedy choice through rounding; batched and one-by-one
outputs are then compared exactly. Text for stop strings is a fixed map from token ids to letters (no tokenizer).
"""

from __future__ import annotations

import string
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from hud_vf_gym.local_model.batching import BatchingGenerator, DecodeRequest, DecodeResult, decode
from hud_vf_gym.local_model.prefix_cache import PrefixCache

torch = pytest.importorskip("torch", reason="the local model needs: pip install -e '.[local]'")
transformers = pytest.importorskip("transformers", reason="the local model needs: pip install -e '.[local]'")

EOS = 1
PAD = 0
VOCAB = 64


def text_of(tokens: Sequence[int]) -> str:
    """Token i is the i-th character of a fixed alphabet, so stop strings can be checked without a tokenizer."""
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(alphabet[token % len(alphabet)] for token in tokens)


@pytest.fixture(scope="module")
def model() -> Any:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=PAD,
        eos_token_id=EOS,
    )
    built = transformers.LlamaForCausalLM(config).to(torch.float64)
    built.eval()
    return built


def run(model: Any, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
    with torch.inference_mode():
        return decode(model, requests, pad_token_id=PAD, eos_token_ids=[EOS], text_of=text_of)


PROMPTS = ((5, 6, 7, 8, 9, 10), (11, 12), (13, 14, 15, 16), (5, 6, 7, 8, 9, 10))


def test_greedy_batch_equals_one_by_one(model: Any) -> None:
    requests = [DecodeRequest(prompt, max_new_tokens=4 + 3 * index) for index, prompt in enumerate(PROMPTS)]
    batched = run(model, requests)
    alone = [run(model, [request])[0] for request in requests]
    assert batched == alone
    assert [len(result.token_ids) for result in batched if not result.stopped] == [
        request.max_new_tokens for request, result in zip(requests, batched, strict=True) if not result.stopped
    ]
    assert sum(len(result.token_ids) for result in batched) > 12  # real tokens were compared


def test_a_seed_gives_the_same_reply_alone_or_in_any_batch(model: Any) -> None:
    seeded = DecodeRequest(PROMPTS[0], max_new_tokens=10, temperature=1.0, seed=7)
    alone = run(model, [seeded])[0]
    neighbours = [DecodeRequest(PROMPTS[1], max_new_tokens=3, temperature=0.7, seed=1), DecodeRequest(PROMPTS[2], 6)]
    in_batch = run(model, [neighbours[0], seeded, neighbours[1]])[1]
    assert in_batch == alone
    other_seeds = {run(model, [DecodeRequest(PROMPTS[0], 10, temperature=1.0, seed=seed)])[0] for seed in range(8)}
    assert len(other_seeds) > 1  # the seed matters: sampling is not greedy in disguise


def test_top_p_keeps_only_the_nucleus(model: Any) -> None:
    # top_p close to 0 keeps only the most likely token: the reply is the greedy one, whatever the seed
    greedy = run(model, [DecodeRequest(PROMPTS[2], max_new_tokens=8)])[0]
    nucleus = run(model, [DecodeRequest(PROMPTS[2], max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=3)])[0]
    assert nucleus.token_ids == greedy.token_ids


def test_each_row_stops_on_its_own_terms(model: Any) -> None:
    long = run(model, [DecodeRequest(PROMPTS[0], max_new_tokens=12)])[0]
    stop = text_of(long.token_ids[3:4])  # the text of the 4th token: a stop string hit at the latest there
    requests = [
        DecodeRequest(PROMPTS[0], max_new_tokens=12, stop=(stop,)),
        DecodeRequest(PROMPTS[1], max_new_tokens=2),
        DecodeRequest(PROMPTS[0], max_new_tokens=12),
    ]
    with_stop, short, full = run(model, requests)
    assert with_stop.stopped and stop in text_of(with_stop.token_ids)
    assert with_stop.token_ids == long.token_ids[: len(with_stop.token_ids)] and len(with_stop.token_ids) <= 4
    assert len(short.token_ids) <= 2 and (short.stopped or len(short.token_ids) == 2)
    assert full == long


def test_concurrent_submissions_are_decoded_together(model: Any) -> None:
    generator = BatchingGenerator(lambda batch: run(model, batch), max_batch_size=8, collect_window_s=0.2)
    requests = [DecodeRequest(prompt, max_new_tokens=5) for prompt in PROMPTS]
    start = threading.Barrier(len(requests))
    results: list[DecodeResult | None] = [None] * len(requests)

    def submit(index: int) -> None:
        start.wait()
        results[index] = generator.submit(requests[index]).result(timeout=120)

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(len(requests))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        generator.close()
    assert max(generator.batch_sizes) > 1 and sum(generator.batch_sizes) == len(requests)
    assert results == [run(model, [request])[0] for request in requests]


def test_serial_generator_decodes_one_at_a_time_and_reports_errors(model: Any) -> None:
    generator = BatchingGenerator(lambda batch: run(model, batch), max_batch_size=1, collect_window_s=0.2)
    try:
        futures = [generator.submit(DecodeRequest(prompt, max_new_tokens=3)) for prompt in PROMPTS]
        assert [future.result(timeout=120) for future in futures] == [
            run(model, [DecodeRequest(prompt, 3)])[0] for prompt in PROMPTS
        ]
        assert generator.batch_sizes == [1, 1, 1, 1]
        with pytest.raises(IndexError):  # a token id outside the vocabulary fails its batch, not the worker
            generator.submit(DecodeRequest((VOCAB + 5,), max_new_tokens=2)).result(timeout=120)
        assert generator.submit(DecodeRequest(PROMPTS[1], 2)).result(timeout=120).token_ids  # still serving
    finally:
        generator.close()
    with pytest.raises(RuntimeError, match="closed"):
        generator.submit(DecodeRequest(PROMPTS[1], 2))


def run_cached(model: Any, requests: Sequence[DecodeRequest], cache: PrefixCache) -> list[DecodeResult]:
    with torch.inference_mode():
        return decode(model, requests, pad_token_id=PAD, eos_token_ids=[EOS], text_of=text_of, prefix_cache=cache)


LONG = tuple(range(2, 40))  # longer than the cache's minimum shared prefix


def test_next_turns_read_from_the_cache_and_reply_as_a_full_read_does(model: Any) -> None:
    cache = PrefixCache(max_tokens=10_000)
    first_turns = [DecodeRequest(LONG, max_new_tokens=5), DecodeRequest(LONG[:30] + (7, 7), max_new_tokens=4)]
    assert run_cached(model, first_turns, cache) == run(model, first_turns)
    assert len(cache) == 2 and cache.hits == 0
    replies = run(model, first_turns)
    # each conversation's next turn: its prompt, the reply, then new tokens; plus a conversation the cache never saw
    next_turns = [
        DecodeRequest(LONG + replies[0].token_ids + (50, 51, 52), max_new_tokens=6),
        DecodeRequest(LONG[:30] + (7, 7) + replies[1].token_ids[:2] + (60,), max_new_tokens=6, temperature=1.0, seed=4),
        DecodeRequest((9, 8, 7, 6), max_new_tokens=6),
    ]
    assert run_cached(model, next_turns, cache) == run(model, next_turns)
    assert cache.hits == 2  # the third prompt shares nothing with any entry
    assert cache.reused_tokens >= len(LONG) + 30


def test_the_cache_keeps_at_most_its_token_budget(model: Any) -> None:
    cache = PrefixCache(max_tokens=100)
    for start in range(4):
        prompt = tuple(range(start * 3 + 2, start * 3 + 42))  # 40 tokens each, all different
        run_cached(model, [DecodeRequest(prompt, max_new_tokens=3)], cache)
    assert len(cache) == 2  # 4 entries of ~42 tokens: only the newest two fit in 100


def test_clearing_the_cache_drops_every_entry_and_the_next_turn_reads_in_full(model: Any) -> None:
    cache = PrefixCache(max_tokens=10_000)
    first = [DecodeRequest(LONG, max_new_tokens=3)]
    reply = run_cached(model, first, cache)[0]
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0
    next_turn = [DecodeRequest(LONG + reply.token_ids + (50,), max_new_tokens=3)]
    assert run_cached(model, next_turn, cache) == run(model, next_turn)
    assert cache.hits == 0  # nothing left to continue from
