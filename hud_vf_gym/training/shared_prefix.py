"""Pack the rollouts of one GRPO group into one sequence that reads their shared prompt once.

A GRPO micro-batch holds several rollouts of the same prompt. TRL scores each row on its own, so the prompt is run
through the model once per rollout; in multi-turn training the prompt (system prompt, tool list, few-shot turns,
task) is most of every row: on the CPU learning check about 650 of 690 tokens. This module lays a group out as

    prompt[:-1] | prompt[-1], completion_1[:-1] | prompt[-1], completion_2[:-1] | ...

with position ids that restart at `len(prompt) - 1` for every segment and an attention mask under which a segment
sees the shared prompt and its own earlier tokens, never another segment. Each segment opens with a copy of the
prompt's last token at that token's own position, so its hidden state is the one that position has in the plain
row, and the segment's tokens are scored against the completion shifted by one (TRL's `shift_labels`): position k
of segment i predicts completion_i[k]. Every scored position sees exactly the context it sees in its own row, so
the log-probabilities are those of the rows (up to float summation order) and the gradient is their sum; the
shared prompt's activations are computed once and receive the gradient of every rollout.

Only the positions whose values the loss uses need the LM head: given the micro-batch's `trained` mask (TRL's
`tool_mask`, from the rollout's `env_mask`: 1 where the model wrote the token), the environment's tokens stay in
the sequence as context but are not scored, and their values are 0 as for padding.

The functions here are tensor bookkeeping (no model, no TRL): `pack_groups` plans the layout and `unpack`
puts per-position values back into TRL's `(rows, completion positions)` shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["PackedGroup", "PackingPlan", "pack_groups", "unpack"]

IGNORED_LABEL = -100  # the label value Hugging Face losses and TRL's fused head skip


@dataclass(frozen=True)
class PackedGroup:
    """Rows that share a prompt, as one packed sequence (tensors shaped for a batch of one).

    Attributes:
        rows: the micro-batch rows this sequence holds, in order.
        lengths: each row's completion length, in the same order.
        input_ids: `(1, length)` token ids.
        position_ids: `(1, length)` positions, restarting at the prompt's last token for every segment.
        visible: `(1, 1, length, length)` bool, True where a query position may attend a key position.
        shift_labels: `(1, length)` the token each scored position predicts; `IGNORED_LABEL` elsewhere (the shared
            prompt, and completion tokens the loss does not use).
        targets: `(scored positions,)` where each scored position's value goes in the flattened
            `(rows, logits_to_keep)` result, in sequence order.
    """

    rows: tuple[int, ...]
    lengths: tuple[int, ...]
    input_ids: torch.Tensor
    position_ids: torch.Tensor
    visible: torch.Tensor
    shift_labels: torch.Tensor
    targets: torch.Tensor

    @property
    def shared(self) -> int:
        """How many leading positions are the shared prompt (every segment opens with a copy of its last token)."""
        return int(self.input_ids.size(1)) - sum(self.lengths)

    @property
    def scored(self) -> torch.Tensor:
        """`(length,)` bool: the positions that predict a completion token."""
        return self.shift_labels[0] != IGNORED_LABEL

    def attention_mask(self, implementation: str, dtype: torch.dtype) -> torch.Tensor:
        """The mask in the form the attention implementation takes as given: additive for eager, else bool (SDPA)."""
        if implementation != "eager":
            return self.visible
        additive = torch.zeros(self.visible.shape, dtype=dtype, device=self.visible.device)
        return additive.masked_fill_(~self.visible, torch.finfo(dtype).min)


@dataclass(frozen=True)
class PackingPlan:
    """How a micro-batch is scored: packed groups, and the rows left to score on their own."""

    groups: list[PackedGroup]
    alone: list[int]


def pack_groups(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    max_tokens: int,
    trained: torch.Tensor | None = None,
) -> PackingPlan | None:
    """Group the rows of a TRL micro-batch by prompt and pack each group (see the module docs).

    Args:
        input_ids: `(rows, prompt + completion positions)`, prompts left-padded, completions right-padded.
        attention_mask: the same shape, 1 on real tokens.
        logits_to_keep: how many trailing positions are the completion.
        max_tokens: the longest packed sequence (its attention mask has `max_tokens**2` entries); a group that
            would be longer is split, and a row that shares its prompt with no other fitting row is left alone.
        trained: `(rows, logits_to_keep)`, 1 at the completion positions whose values are used (None: all).

    Returns:
        The plan, or None when packing saves nothing (no two rows share a prompt) or does not apply (a
        completion's tokens are not one run from its start, an empty prompt).
    """
    prompt_width = input_ids.size(1) - logits_to_keep
    completion_mask = attention_mask[:, prompt_width:].bool()
    lengths = completion_mask.sum(dim=1)
    positions = torch.arange(logits_to_keep, device=input_ids.device)
    if not torch.equal(completion_mask, positions[None, :] < lengths[:, None]):
        return None  # a completion with holes in it: only the rows' own layout is safe
    rows_by_prompt: dict[tuple[int, ...], list[int]] = {}
    for row in range(input_ids.size(0)):
        prompt_ids = input_ids[row, :prompt_width][attention_mask[row, :prompt_width].bool()]
        if prompt_ids.numel() == 0:
            return None
        rows_by_prompt.setdefault(tuple(prompt_ids.tolist()), []).append(row)
    row_lengths = lengths.tolist()
    plan = PackingPlan(groups=[], alone=[])
    completions = input_ids[:, prompt_width:]
    for prompt, rows in rows_by_prompt.items():
        plan.alone.extend(row for row in rows if row_lengths[row] == 0)  # nothing to share with: TRL's zeros
        scored = [row for row in rows if row_lengths[row] > 0]
        for chunk in _chunks(scored, row_lengths, shared=len(prompt) - 1, max_tokens=max_tokens):
            if len(chunk) == 1:
                plan.alone.extend(chunk)
            else:
                plan.groups.append(_pack(prompt, chunk, completions, row_lengths, trained))
    return plan if plan.groups else None


def unpack(
    groups: Sequence[PackedGroup], scored: Sequence[torch.Tensor], rows: int, logits_to_keep: int
) -> torch.Tensor:
    """Values of the groups' scored positions as TRL's `(rows, logits_to_keep)`, 0 elsewhere.

    Args:
        groups: the packed groups.
        scored: per group, a value for each of its scored positions (labels not `IGNORED_LABEL`), in order.
        rows: the micro-batch's rows; rows of no group stay 0.
        logits_to_keep: the completion positions per row.

    The result stays connected to `scored` for autograd (TRL's loss backpropagates through the log-probabilities).
    """
    targets = torch.cat([group.targets for group in groups])
    flat = scored[0].new_zeros(rows * logits_to_keep)
    flat = flat.index_put((targets.to(flat.device),), torch.cat(list(scored)))
    return flat.view(rows, logits_to_keep)


def _chunks(rows: list[int], lengths: list[int], *, shared: int, max_tokens: int) -> list[list[int]]:
    """Split a prompt's rows so that the shared prompt plus their completions fit in `max_tokens`."""
    if not rows:
        return []
    chunks: list[list[int]] = [[]]
    used = shared
    for row in rows:
        if chunks[-1] and used + lengths[row] > max_tokens:
            chunks.append([])
            used = shared
        chunks[-1].append(row)
        used += lengths[row]
    return chunks


def _pack(
    prompt: tuple[int, ...],
    rows: list[int],
    completions: torch.Tensor,
    lengths: list[int],
    trained: torch.Tensor | None,
) -> PackedGroup:
    device = completions.device
    width = completions.size(1)
    targets: list[int] = []
    shared = len(prompt) - 1  # the prompt without its last token; every segment opens with that token
    tokens: list[int] = list(prompt[:-1])
    positions: list[int] = list(range(shared))
    labels: list[int] = [IGNORED_LABEL] * shared
    segment_of: list[int] = [0] * shared  # 0: the shared prompt, i: the i-th segment
    for segment, row in enumerate(rows, start=1):
        completion = completions[row, : lengths[row]].tolist()
        used = [True] * len(completion) if trained is None else trained[row, : len(completion)].bool().tolist()
        tokens += [prompt[-1], *completion[:-1]]
        positions += range(shared, shared + len(completion))
        labels += [token if keep else IGNORED_LABEL for token, keep in zip(completion, used, strict=True)]
        targets += [row * width + index for index, keep in enumerate(used) if keep]
        segment_of += [segment] * len(completion)
    segments = torch.tensor(segment_of, device=device)
    index = torch.arange(len(tokens), device=device)
    causal = index[None, :] <= index[:, None]
    visible = causal & ((segments[None, :] == 0) | (segments[None, :] == segments[:, None]))
    return PackedGroup(
        rows=tuple(rows),
        lengths=tuple(lengths[row] for row in rows),
        input_ids=torch.tensor([tokens], device=device),
        position_ids=torch.tensor([positions], device=device),
        visible=visible[None, None],
        shift_labels=torch.tensor([labels], device=device),
        targets=torch.tensor(targets, dtype=torch.long, device=device),
    )
