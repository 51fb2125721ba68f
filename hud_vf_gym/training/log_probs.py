"""Log-probabilities of chosen tokens from hidden states, projecting only the positions that are scored.

TRL's fused LM head projects only the scored positions on Triton devices; elsewhere (CPU) it projects every position
of the sequence. In a packed group (`shared_prefix`) the shared prompt is most of the positions and none of them is
scored, so on CPU `HUDGRPOTrainer` selects the scored hidden states first and projects them here. Each chunk of
positions runs under activation checkpointing: its `(chunk, vocabulary)` logits are recomputed in the backward pass
instead of being kept, so memory stays at one chunk's logits however many positions are scored.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional
from torch.utils.checkpoint import checkpoint

__all__ = ["completion_log_probs", "plain_lm_head"]

# a chunk's logits and the tensors softmax and its backward derive from them (about 6 of that size at once):
# 256 x 49k-token vocabulary x 4 bytes = 50 MB each
CHUNK_POSITIONS = 256
# config fields by which a model rescales or caps its logits; a model with any of them keeps TRL's head
LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def plain_lm_head(model: Any) -> torch.nn.Linear | None:
    """The model's LM head when its logits are the head's output as it is (no softcap, no scale), else None."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):  # e.g. a PEFT wrapper: TRL's head knows how to reach through it
        return None
    text_config = model.config.get_text_config()
    if any(getattr(text_config, name, None) is not None for name in LOGIT_TRANSFORMS):
        return None
    head = model.get_output_embeddings()  # type: ignore[no-untyped-call]
    return head if isinstance(head, torch.nn.Linear) else None


def completion_log_probs(
    hidden: torch.Tensor, head: torch.nn.Linear, labels: torch.Tensor, temperature: float, *, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per position: the log-probability of `labels` under `head(hidden) / temperature`, and the entropy.

    Args:
        hidden: `(positions, hidden size)` the final hidden states of the scored positions.
        head: the LM head.
        labels: `(positions,)` the token each position predicts.
        temperature: the sampling temperature the logits are divided by (as TRL does).
        with_entropy: also return the entropy of each position's distribution (else None).
    """
    logps, entropies = [], []
    for start in range(0, hidden.size(0), CHUNK_POSITIONS):
        end = start + CHUNK_POSITIONS
        chunk_logps, chunk_entropy = checkpoint(
            _chunk_log_probs, hidden[start:end], head.weight, head.bias, labels[start:end], temperature,
            use_reentrant=False,
        )  # fmt: skip
        logps.append(chunk_logps)
        entropies.append(chunk_entropy)
    if not logps:
        empty = hidden.new_zeros(0)
        return empty, empty if with_entropy else None
    return torch.cat(logps), torch.cat(entropies) if with_entropy else None


def _chunk_log_probs(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    # float32 logits, whatever the model's dtype, as TRL's head returns them (its loss mixes both heads' values)
    log_probs = (functional.linear(hidden, weight, bias).float() / temperature).log_softmax(dim=-1)
    chosen = log_probs.gather(-1, labels[:, None]).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    return chosen, entropy
