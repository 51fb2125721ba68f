"""`GrowingLayer` holds what `DynamicLayer` holds, through every operation, without a copy per decoding step."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the embedded model needs: pip install -e '.[local]'")
transformers = pytest.importorskip("transformers", reason="the embedded model needs: pip install -e '.[local]'")

from transformers.cache_utils import DynamicLayer  # noqa: E402

from hud_vf_gym.local_model.growing_cache import GROWTH_MINIMUM, GrowingLayer, growing_cache  # noqa: E402


def states(rows: int, positions: int, seed: int) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(rows, 2, positions, 4, generator=generator),
        torch.randn(rows, 2, positions, 4, generator=generator),
    )


def assert_same(growing: GrowingLayer, dynamic: DynamicLayer) -> None:
    assert growing.get_seq_length() == dynamic.get_seq_length()
    assert torch.equal(growing.keys, dynamic.keys) and torch.equal(growing.values, dynamic.values)


def test_a_prefill_then_decoding_steps_write_in_place_and_match_dynamic_layer() -> None:
    growing, dynamic = GrowingLayer(), DynamicLayer()
    for layer in (growing, dynamic):
        layer.update(*states(3, 40, seed=0))
    assert_same(growing, dynamic)
    buffer = growing.keys.data_ptr()
    for step in range(GROWTH_MINIMUM):
        returned = growing.update(*states(3, 1, seed=step + 1))
        expected = dynamic.update(*states(3, 1, seed=step + 1))
        assert torch.equal(returned[0], expected[0]) and torch.equal(returned[1], expected[1])
    assert growing.keys.data_ptr() == buffer  # no step moved the cache: the spare room took every token
    growing.update(*states(3, 1, seed=999))
    dynamic.update(*states(3, 1, seed=999))
    assert_same(growing, dynamic)  # past the room: a bigger buffer, the same contents


@pytest.mark.parametrize(
    "operation",
    [
        lambda layer: layer.batch_select_indices(torch.tensor([2, 0, 0])),
        lambda layer: layer.crop(-5),
        lambda layer: layer.batch_repeat_interleave(2),
        lambda layer: layer.reorder_cache(torch.tensor([1, 2, 0])),
    ],
    ids=["select rows", "crop", "repeat rows", "reorder"],
)
def test_inherited_operations_that_replace_the_tensors_keep_the_layer_right(operation: Any) -> None:
    growing, dynamic = GrowingLayer(), DynamicLayer()
    for layer in (growing, dynamic):
        layer.update(*states(3, 30, seed=0))
        operation(layer)
    assert_same(growing, dynamic)
    rows = dynamic.keys.shape[0]
    for step in range(3):
        growing.update(*states(rows, 2, seed=step + 1))
        dynamic.update(*states(rows, 2, seed=step + 1))
        assert_same(growing, dynamic)


def test_reset_empties_the_layer() -> None:
    layer = GrowingLayer()
    layer.update(*states(1, 5, seed=0))
    layer.reset()
    assert layer.get_seq_length() == 0
    layer.update(*states(2, 3, seed=1))
    assert layer.get_seq_length() == 3 and layer.keys.shape[0] == 2


def test_generate_with_a_growing_cache_gives_the_dynamic_caches_tokens() -> None:
    config = transformers.LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    prompt = torch.randint(3, 97, (2, 20))
    settings: dict[str, Any] = {"max_new_tokens": 300, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    cache = growing_cache(config)
    assert all(isinstance(layer, GrowingLayer) for layer in cache.layers)
    with torch.no_grad():
        grown = model.generate(input_ids=prompt, cache=cache, **settings)
        plain = model.generate(input_ids=prompt, **settings)
    assert torch.equal(grown, plain) and grown.shape[1] == 320  # past GROWTH_MINIMUM: one regrowth on the way
    assert cache.get_seq_length() == 319  # generate wrote into this cache (every token but the last sampled one)
