"""Attention over a packed group that skips the blocks its mask hides: each segment attends the prompt and itself.

`shared_prefix` packs a group as `prompt | segment_1 | segment_2 | ...` under a mask where a segment sees the
shared prompt and its own earlier tokens. SDPA given that mask as a dense `(length, length)` tensor computes every
block of it, hidden ones included: on the CPU learning check (a 655-token prompt, four segments of ~300 tokens)
about 60% of the attention work is masked out, and attention is about half of the packed pass's time. This module
computes the same values block by block:

- the prompt attends itself causally (`is_causal`, so SDPA's CPU and CUDA kernels skip the upper triangle);
- each segment's queries attend the prompt's keys and values followed by its own, under a `(segment, prompt +
  segment)` mask that is all-visible over the prompt and causal over the segment.

It is an attention function for Hugging Face models (`transformers.AttentionInterface`), registered as
`ATTENTION_NAME`. It reads the layout from the `shared_prefix_layout` keyword the model passes down to its attention
layers; without one (generation, any other forward) it is exactly `sdpa`. The packed sequence's dense mask still
goes to the model, so a model whose layers do not pass keywords down gets SDPA with that mask: slower, not wrong.

`shared_prefix_attention(model)` switches a model that uses SDPA to this function for the duration of a block
(the loss pass *and* its backward, where activation checkpointing recomputes the forward).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

__all__ = ["ATTENTION_NAME", "LAYOUT_KEYWORD", "SegmentLayout", "shared_prefix_attention", "shared_prefix_sdpa"]

ATTENTION_NAME = "hud_shared_prefix_sdpa"
LAYOUT_KEYWORD = "shared_prefix_layout"


@dataclass(frozen=True)
class SegmentLayout:
    """Where a packed sequence's parts lie: `shared` prompt positions, then segments of the given lengths."""

    shared: int
    segments: tuple[int, ...]

    @property
    def length(self) -> int:
        """The packed sequence's length."""
        return self.shared + sum(self.segments)


def shared_prefix_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """`transformers`' SDPA attention, computed per block when a `SegmentLayout` comes with the call.

    Shapes as in `sdpa_attention_forward`: query `(batch, heads, length, dim)`, key and value
    `(batch, kv_heads, length, dim)`; returns `(batch, length, heads, dim)` and no attention weights.
    """
    layout = kwargs.pop(LAYOUT_KEYWORD, None)
    if not isinstance(layout, SegmentLayout) or not _fits(layout, query, key):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    dropout_p = dropout if module.training else 0.0
    shared = layout.shared
    prompt_key, prompt_value = key[:, :, :shared], value[:, :, :shared]
    outputs = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, :shared], prompt_key, prompt_value, dropout_p=dropout_p, scale=scaling, is_causal=True
        )
    ]
    start = shared
    for length in layout.segments:
        end = start + length
        visible = torch.ones(length, shared + length, dtype=torch.bool, device=query.device)
        visible[:, shared:] = torch.ones(length, length, dtype=torch.bool, device=query.device).tril_()
        outputs.append(
            torch.nn.functional.scaled_dot_product_attention(
                query[:, :, start:end],
                torch.cat([prompt_key, key[:, :, start:end]], dim=2),
                torch.cat([prompt_value, value[:, :, start:end]], dim=2),
                attn_mask=visible,
                dropout_p=dropout_p,
                scale=scaling,
            )
        )
        start = end
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def _fits(layout: SegmentLayout, query: torch.Tensor, key: torch.Tensor) -> bool:
    """Whether the call is the packed sequence itself (one row, no cache: queries and keys both span it)."""
    return (
        query.shape[0] == 1
        and layout.shared > 0
        and query.shape[2] == key.shape[2] == layout.length
        and all(length > 0 for length in layout.segments)
    )


@contextlib.contextmanager
def shared_prefix_attention(model: Any) -> Iterator[bool]:
    """Within the block, a model that attends with SDPA uses `shared_prefix_sdpa` (yields whether it does)."""
    config: Any = getattr(model, "config", None)
    implementation = getattr(config, "_attn_implementation", None)
    if implementation != "sdpa":
        yield implementation == ATTENTION_NAME
        return
    config._attn_implementation = ATTENTION_NAME
    try:
        yield True
    finally:
        config._attn_implementation = "sdpa"


# registered at import: a name the models look up per call, with SDPA's mask format for masks built from 2D ones
AttentionInterface.register(ATTENTION_NAME, shared_prefix_sdpa)
AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
