"""Block-wise attention over a packed group: the dense mask's values and gradients, and when it applies.

Values are compared in float64 against `transformers`' own SDPA attention given the packed group's dense mask, so
a wrong block (a segment seeing another segment, a prompt position seeing a segment) shows far above rounding.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="the training tests need: pip install -e '.[train]'")
transformers = pytest.importorskip("transformers", reason="the training tests need: pip install -e '.[train]'")

from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: E402
from transformers.masking_utils import AttentionMaskInterface  # noqa: E402

from hud_vf_gym.training.shared_prefix import pack_groups  # noqa: E402
from hud_vf_gym.training.shared_prefix_attention import (  # noqa: E402
    ATTENTION_NAME,
    LAYOUT_KEYWORD,
    SegmentLayout,
    shared_prefix_attention,
    shared_prefix_sdpa,
)

HEADS, KV_HEADS, DIM = 6, 2, 8
LAYOUT = SegmentLayout(shared=5, segments=(4, 1, 3))


def dense_mask(layout: SegmentLayout) -> Any:
    """The packed group's `(1, 1, length, length)` mask, built by `pack_groups` from a matching micro-batch."""
    prompt = list(range(100, 100 + layout.shared + 1))  # the shared part is the prompt without its last token
    width = max(layout.segments)
    ids = torch.zeros(len(layout.segments), len(prompt) + width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(layout.segments):
        ids[row, : len(prompt)] = torch.tensor(prompt)
        ids[row, len(prompt) : len(prompt) + length] = 7
        mask[row, : len(prompt) + length] = 1
    plan = pack_groups(ids, mask, logits_to_keep=width, max_tokens=1000)
    assert plan is not None and len(plan.groups) == 1 and plan.groups[0].shared == layout.shared
    return plan.groups[0].visible


def attention_inputs(length: int) -> tuple[Any, Any, Any, Any]:
    """A GQA attention module and float64 query/key/value that record their gradients."""
    generator = torch.Generator().manual_seed(0)
    module = SimpleNamespace(num_key_value_groups=HEADS // KV_HEADS, training=False)

    def tensor(heads: int) -> Any:
        return torch.randn(1, heads, length, DIM, generator=generator, dtype=torch.float64).requires_grad_()

    return module, tensor(HEADS), tensor(KV_HEADS), tensor(KV_HEADS)


def test_block_wise_attention_gives_the_dense_masks_values_and_gradients() -> None:
    module, query, key, value = attention_inputs(LAYOUT.length)
    mask = dense_mask(LAYOUT)
    dense, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    blocks, _ = shared_prefix_sdpa(module, query, key, value, mask, scaling=0.3, **{LAYOUT_KEYWORD: LAYOUT})
    torch.testing.assert_close(blocks, dense, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(dense.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dense_grads = torch.autograd.grad(dense, (query, key, value), upstream)
    block_grads = torch.autograd.grad(blocks, (query, key, value), upstream)
    for from_blocks, from_dense in zip(block_grads, dense_grads, strict=True):
        torch.testing.assert_close(from_blocks, from_dense, rtol=1e-12, atol=1e-12)
    assert dense_grads[1][:, :, LAYOUT.shared :].abs().sum() > 0  # segment keys take part: not a vacuous match


@pytest.mark.parametrize(
    "layout",
    [None, SegmentLayout(shared=5, segments=(4, 1)), SegmentLayout(shared=0, segments=(12,))],
    ids=["no layout", "another length", "no prompt"],
)
def test_without_a_layout_that_fits_the_call_it_is_sdpa(layout: SegmentLayout | None) -> None:
    module, query, key, value = attention_inputs(LAYOUT.length)
    mask = dense_mask(LAYOUT)
    expected, _ = sdpa_attention_forward(module, query, key, value, mask)
    extra = {} if layout is None else {LAYOUT_KEYWORD: layout}
    output, _ = shared_prefix_sdpa(module, query, key, value, mask, **extra)
    assert torch.equal(output, expected)


def test_the_switch_applies_to_sdpa_models_only_and_is_undone() -> None:
    sdpa = SimpleNamespace(config=transformers.LlamaConfig(num_hidden_layers=1, attn_implementation="sdpa"))
    eager = SimpleNamespace(config=transformers.LlamaConfig(num_hidden_layers=1, attn_implementation="eager"))
    with shared_prefix_attention(sdpa) as switched:
        assert switched and sdpa.config._attn_implementation == ATTENTION_NAME
        with shared_prefix_attention(sdpa) as nested:  # a pass inside a training step: already switched
            assert nested
        assert sdpa.config._attn_implementation == ATTENTION_NAME
    assert sdpa.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError), shared_prefix_attention(sdpa):
        raise RuntimeError("a failing step")
    assert sdpa.config._attn_implementation == "sdpa"
    with shared_prefix_attention(eager) as switched:
        assert not switched and eager.config._attn_implementation == "eager"
    assert ATTENTION_NAME in AttentionMaskInterface._global_mapping  # masks built from 2D ones meanwhile: SDPA's


def test_the_layout_reaches_every_layer_in_the_forward_and_in_checkpointings_recompute(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64)
    model.config._attn_implementation = "sdpa"
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    layouts: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        layouts.append(kwargs.get(LAYOUT_KEYWORD))
        return shared_prefix_sdpa(*args, **kwargs)

    monkeypatch.setitem(transformers.AttentionInterface._global_mapping, ATTENTION_NAME, spy)
    ids = torch.arange(3, 3 + LAYOUT.length)[None]
    positions = torch.tensor([[0, 1, 2, 3, 4, 4, 5, 6, 7, 4, 4, 5, 6]])
    with shared_prefix_attention(model):
        hidden = model.base_model(
            input_ids=ids,
            attention_mask=dense_mask(LAYOUT),
            position_ids=positions,
            use_cache=False,
            **{LAYOUT_KEYWORD: LAYOUT},
        ).last_hidden_state
        hidden.sum().backward()
    layers = model.config.num_hidden_layers
    assert layouts == [LAYOUT] * (2 * layers)  # the forward, then the backward's recomputation of each layer
