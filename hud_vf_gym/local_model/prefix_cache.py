"""Keys and values of earlier requests, so a conversation's next turn runs the model only over its new tokens.

A chat endpoint receives the whole conversation with every turn: turn 10 of an episode repeats turns 1-9, and
running the model over them again (prefill) costs more than writing the reply. `PrefixCache` keeps, per finished
request, the key/value tensors of every token the model read or wrote, keyed by those tokens. A new request takes
the entry sharing its longest token prefix (at least `MIN_SHARED_TOKENS`) and the model reads only the rest; the
entry is taken out (the request's own entry, longer, replaces it when it finishes). The least recently stored
entries are dropped beyond `max_tokens` tokens in all (SmolLM2-135M in float32: 46 KiB per token).

The reply is the one a full prefill would give, up to floating-point rounding (the attention over cached keys sums
in another order; equal greedy outputs are tested with a float64 model).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CachedPrefix", "PrefixCache"]

MIN_SHARED_TOKENS = 16  # a shorter shared prefix (a chat template's header) is not worth copying tensors for


@dataclass(frozen=True, slots=True)
class CachedPrefix:
    """The first `length` tokens of a request, already read: per layer, keys and values [1, heads, length, dim]."""

    length: int
    layers: tuple[tuple[Any, Any], ...]


class PrefixCache:
    """Finished requests' key/value tensors by token sequence, bounded by `max_tokens` (see the module docs).

    Not thread-safe: the local model's one worker thread uses it.
    """

    def __init__(self, max_tokens: int) -> None:
        """Hold at most `max_tokens` tokens' tensors (0 holds nothing)."""
        self.max_tokens = max_tokens
        self.hits = 0  # requests that started from a cached prefix
        self.reused_tokens = 0  # prompt tokens those requests did not have to read
        self._entries: OrderedDict[tuple[int, ...], tuple[tuple[Any, Any], ...]] = OrderedDict()
        self._tokens = 0

    def __len__(self) -> int:
        """How many entries are held."""
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry (their tensors are freed once no decode holds them)."""
        self._entries.clear()
        self._tokens = 0

    def take(self, prompt_ids: Sequence[int]) -> CachedPrefix | None:
        """Remove and return the entry sharing the longest prefix with `prompt_ids` (None below the minimum).

        At least the prompt's last token is left to read: the model must compute its logits.
        """
        best_key, best_shared = None, 0
        for key in self._entries:
            shared = _shared_prefix(key, prompt_ids)
            if shared > best_shared:
                best_key, best_shared = key, shared
        best_shared = min(best_shared, len(prompt_ids) - 1)
        if best_key is None or best_shared < MIN_SHARED_TOKENS:
            return None
        layers = self._entries.pop(best_key)
        self._tokens -= len(best_key)
        self.hits += 1
        self.reused_tokens += best_shared
        return CachedPrefix(best_shared, layers)

    def put(self, token_ids: Sequence[int], layers: tuple[tuple[Any, Any], ...]) -> None:
        """Keep the tensors of `token_ids` (each layer's [1, heads, len(token_ids), dim]); evict the oldest."""
        key = tuple(token_ids)
        if len(key) > self.max_tokens or len(key) < MIN_SHARED_TOKENS:
            return
        if key in self._entries:
            self._tokens -= len(key)
            del self._entries[key]
        self._entries[key] = layers
        self._tokens += len(key)
        while self._tokens > self.max_tokens:
            evicted, _ = self._entries.popitem(last=False)
            self._tokens -= len(evicted)


def _shared_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    length = min(len(first), len(second))
    for index in range(length):
        if first[index] != second[index]:
            return index
    return length
