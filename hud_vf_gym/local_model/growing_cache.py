"""A key/value cache that grows into spare room instead of copying itself on every decoding step.

`transformers`' `DynamicLayer` appends with `torch.cat`: every new token copies the layer's whole cache. On CPU
that copy is a third of a decoding step of SmolLM2-135M (four rows, ~700 cached positions: 47 of 140 ms), and it
grows with the context. `GrowingLayer` keeps each layer's keys and values in buffers with room at the end, writes
new positions in place and hands out views of the filled part; a full buffer is replaced by one with
`max(GROWTH_MINIMUM, length // GROWTH_DIVISOR)` positions to spare, so copies happen once every few hundred
tokens. Everything else (masks, lengths, row selection) is `DynamicLayer`'s: the values are the same tensors.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

__all__ = ["GROWTH_DIVISOR", "GROWTH_MINIMUM", "GrowingLayer", "growing_cache"]

GROWTH_MINIMUM = 256  # positions of spare room after a copy: 256 decoding steps, or a turn's new tokens
GROWTH_DIVISOR = 8  # long caches get an eighth of their length to spare (the copies stay a fixed share)


class GrowingLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """`DynamicLayer` whose `keys` and `values` are views of buffers with spare room (see the module docs).

    Methods inherited from `DynamicLayer` that replace `keys`/`values` (row selection, cropping, reordering)
    keep working: the next `update` sees tensors that are not its own views and moves them into a new buffer.
    """

    def __init__(self, **kwargs: Any) -> None:
        """An empty layer; buffers are made on the first `update`."""
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None
        self._handed_out: torch.Tensor | None = None  # the last `keys` view made here

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions after the cached ones; return the keys and values of every position."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        needed = length + key_states.shape[-2]
        if not self._owns_views() or needed > self._capacity():
            self._move_into_buffers(key_states, value_states, needed)
        assert self._key_buffer is not None and self._value_buffer is not None
        self._key_buffer[..., length:needed, :].copy_(key_states)
        self._value_buffer[..., length:needed, :].copy_(value_states)
        self.keys = self._key_buffer[..., :needed, :]
        self.values = self._value_buffer[..., :needed, :]
        self._handed_out = self.keys
        return self.keys, self.values

    def reset(self) -> None:
        """Drop the buffers with the cache."""
        self._key_buffer = self._value_buffer = self._handed_out = None
        super().reset()

    def _owns_views(self) -> bool:
        """Whether `keys` is still the view this layer handed out (no inherited method replaced it)."""
        return self._key_buffer is not None and self.keys is self._handed_out

    def _capacity(self) -> int:
        return 0 if self._key_buffer is None else int(self._key_buffer.shape[-2])

    def _move_into_buffers(self, key_states: torch.Tensor, value_states: torch.Tensor, needed: int) -> None:
        """New buffers with room beyond `needed`, holding the cached positions (if any)."""
        capacity = needed + max(GROWTH_MINIMUM, needed // GROWTH_DIVISOR)
        self._key_buffer = _buffer_like(key_states, capacity)
        self._value_buffer = _buffer_like(value_states, capacity)
        length = self.get_seq_length()
        if length:
            assert self.keys is not None and self.values is not None
            self._key_buffer[..., :length, :].copy_(self.keys)
            self._value_buffer[..., :length, :].copy_(self.values)


def _buffer_like(states: torch.Tensor, positions: int) -> torch.Tensor:
    rows, heads, _, dim = states.shape
    return states.new_empty((rows, heads, positions, dim))


def growing_cache(config: Any) -> DynamicCache:
    """A `DynamicCache` for `config` whose full-attention layers are `GrowingLayer`s (sliding ones stay as they are)."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
