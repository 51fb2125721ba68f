"""The key/value cache of one rollout call's rows, carried from turn to turn so no turn re-reads its whole context.

Without it every model turn of a multi-turn episode runs the model over the prompt and every earlier turn again:
4 turns of a 1,000-token episode cost about 2,500 tokens of prefill per row instead of 1,000. `TurnCache` keeps the
cache of the previous `generate` call and feeds the model only what is new in each row (the environment's tokens,
and the model's last sampled token, which `generate` never fed back):

- **Rows are matched by content, not by position**: a context continues the cached row with which it shares the
  longest token prefix. So rows may finish, be dropped or repeat between turns, and a rollout that cuts a model
  turn short (its token cap, its first stop token) just leaves the cut tokens' cache entries unused.
- **Holes, not copies**: a batch's rows grow by different amounts, so each turn's new tokens are left-padded into
  one block appended to every row. Padding, the cut tokens of a turn and the tokens `generate` writes after a
  row's stop token stay in the cache but are masked out (attention mask 0). Position ids come from the attention
  mask (its running sum), as in `generate`, so every real token keeps the position it has in the plain sequence.
- **Shared prompts are read once**: on the first turn identical contexts (a GRPO group's prompts) are pre-filled
  once and their cache rows copied.

The tokens sampled are those a full re-read would sample, up to floating-point rounding of the attention sums
(equal greedy outputs are tested with a float64 model). Only plain full-attention caches can hold holes: for
sliding-window, linear-attention or recurrent layers `supports_model` is False and the generator re-reads instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TurnCache", "common_prefix_length", "supports_model"]


def common_prefix_length(first: Sequence[int], second: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    length = min(len(first), len(second))
    for index in range(length):
        if first[index] != second[index]:
            return index
    return length


def supports_model(model: Any) -> bool:
    """Whether `model`'s default cache is made only of full-attention layers (which may hold masked holes)."""
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if config is not None and hasattr(config, "get_text_config") else config
    if text_config is None or getattr(text_config, "is_encoder_decoder", False):
        return False
    layer_types = getattr(text_config, "layer_types", None)
    if layer_types:  # models that name each layer's attention (transformers 5)
        return all(kind == "full_attention" for kind in layer_types)
    return not (getattr(text_config, "sliding_window", None) or getattr(text_config, "attention_chunk_size", None))


@dataclass
class _Row:
    """One cache row: the real tokens it holds, in order, and the cache column of each."""

    tokens: list[int] = field(default_factory=list)
    columns: list[int] = field(default_factory=list)


class TurnCache:
    """The cache, token ids and attention mask of one rollout call's rows (see the module docs).

    Args:
        model: the causal LM that generates (unwrapped; its forward takes `cache=`).
        pad_token_id: the id written into padding and hole positions (masked out; its value never matters).
        device: where the input tensors go.
    """

    def __init__(self, model: Any, pad_token_id: int, device: Any) -> None:
        """Start empty: the first `prepare` pre-fills."""
        self.model = model
        self.pad_token_id = pad_token_id
        self.device = device
        self.cache: Any = None
        self._ids: Any = None  # [rows, columns] token ids the cache holds, holes included
        self._mask: Any = None  # [rows, columns] 1 for a real token, 0 for a hole
        self._rows: list[_Row] = []
        self._block_start = 0  # the column where the last prepared block began

    @property
    def columns(self) -> int:
        """How many positions (holes included) each cache row has."""
        return 0 if self._ids is None else int(self._ids.shape[1])

    @property
    def attention_mask(self) -> Any:
        """[rows, columns]: 1 where the cache holds a real token, 0 at a hole (None before the first `prepare`)."""
        return self._mask

    def prepare(self, contexts: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        """The `input_ids` and `attention_mask` for `generate(..., cache=self.cache)`: cached columns plus new ones.

        Every context must hold at least one token. The cache is re-ordered (and rows repeated) to the contexts'
        order; `generate` then reads only the last block, the tokens each row has that its cache row lacks.
        """
        torch = _torch()
        if any(not context for context in contexts):
            raise ValueError("every context needs at least one token")
        matches = self._match(contexts)
        if matches is None:
            self._prefill_unique(contexts)
            matches = self._match(contexts)
            assert matches is not None  # every context now has its own prefix row
        indices = torch.tensor([row for row, _ in matches], device=self.device)
        self.cache.batch_select_indices(indices)
        ids, mask = self._ids[indices], self._mask[indices].clone()
        rows = []
        for position, (row_index, shared) in enumerate(matches):
            source = self._rows[row_index]
            mask[position, source.columns[shared:]] = 0  # cached tokens this context does not continue
            rows.append(_Row(source.tokens[:shared], source.columns[:shared]))
        width = max(len(context) - shared for context, (_, shared) in zip(contexts, matches, strict=True))
        start = int(ids.shape[1])
        block = torch.full((len(contexts), width), self.pad_token_id, dtype=ids.dtype, device=self.device)
        block_mask = torch.zeros((len(contexts), width), dtype=mask.dtype, device=self.device)
        for position, (context, (_, shared)) in enumerate(zip(contexts, matches, strict=True)):
            new = list(context[shared:])
            offset = width - len(new)  # left-padded: every row's last new token is in the block's last column
            block[position, offset:] = torch.tensor(new, dtype=ids.dtype, device=self.device)
            block_mask[position, offset:] = 1
            rows[position].tokens.extend(new)
            rows[position].columns.extend(range(start + offset, start + width))
        self._ids, self._mask, self._rows = torch.cat([ids, block], 1), torch.cat([mask, block_mask], 1), rows
        self._block_start = start
        return self._ids, self._mask

    def absorb(self, sequences: Any, kept: Sequence[int]) -> None:
        """Take in what `generate` returned: its cache now also holds every sampled token but the last one.

        Args:
            sequences: `generate`'s output ids, [rows, prepared columns + new tokens].
            kept: per row, how many of its new tokens are real (up to and including its stop token); the rest
                were written after the row stopped and become holes.
        """
        torch = _torch()
        prepared = self.columns
        cached = int(self.cache.get_seq_length())
        new_columns = cached - prepared  # generate never feeds back the token it sampled last
        if new_columns < 0 or int(sequences.shape[1]) < cached:
            raise RuntimeError(f"generate left {cached} cached positions for {prepared} prepared ones")
        generated_mask = torch.zeros((len(kept), new_columns), dtype=self._mask.dtype, device=self.device)
        for position, count in enumerate(kept):
            real = min(count, new_columns)
            generated_mask[position, :real] = 1
            row = self._rows[position]
            row.tokens.extend(int(token) for token in sequences[position, prepared : prepared + real].tolist())
            row.columns.extend(range(prepared, prepared + real))
        self._ids = sequences[:, :cached]
        self._mask = torch.cat([self._mask, generated_mask], 1)

    def _match(self, contexts: Sequence[Sequence[int]]) -> list[tuple[int, int]] | None:
        """Per context, the cache row it continues and how many tokens they share; None when one continues none."""
        if self.cache is None or not self._rows:
            return None
        matches = []
        for context in contexts:
            best_row, best_shared = 0, -1
            for index, row in enumerate(self._rows):
                shared = min(common_prefix_length(row.tokens, context), len(context) - 1)
                if shared > best_shared:
                    best_row, best_shared = index, shared
            if best_shared <= 0 and len(context) > 1:
                return None
            matches.append((best_row, max(best_shared, 0)))
        return matches

    def _prefill_unique(self, contexts: Sequence[Sequence[int]]) -> None:
        """Start over: run the model once over every distinct context minus its last token (left-padded)."""
        torch = _torch()
        from hud_vf_gym.local_model.growing_cache import growing_cache

        prefixes = list(dict.fromkeys(tuple(context[:-1]) for context in contexts))
        width = max(len(prefix) for prefix in prefixes)
        ids = torch.full((len(prefixes), width), self.pad_token_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(prefixes), width), dtype=torch.long, device=self.device)
        rows = []
        for position, prefix in enumerate(prefixes):
            offset = width - len(prefix)
            if prefix:
                ids[position, offset:] = torch.tensor(prefix, dtype=torch.long, device=self.device)
                mask[position, offset:] = 1
            rows.append(_Row(list(prefix), list(range(offset, width))))
        self.cache = growing_cache(self.model.config)  # decoding steps write in place, not by copying
        if width:
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            self.model(  # only the cache is wanted: one position's logits, not the whole vocabulary per token
                input_ids=ids,
                attention_mask=mask,
                position_ids=position_ids,
                cache=self.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        self._ids, self._mask, self._rows = ids, mask, rows


def _torch() -> Any:
    import torch

    return torch
