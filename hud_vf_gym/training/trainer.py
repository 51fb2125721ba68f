"""`HUDGRPOTrainer`: TRL's `GRPOTrainer` whose log-probability passes read each group's shared prompt once.

The GRPO loss, sampling, reward weighting, logging and checkpointing are TRL's own; only
`_get_per_token_logps_and_entropies` (the forward pass that scores completions, for the loss and for old or
reference log-probabilities) changes: rows that share a prompt are packed into one sequence
(`hud_vf_gym.training.shared_prefix`), so the prompt runs through the model once per group instead of once per
rollout. The values are the per-row pass's up to float summation order, and so is the gradient. A model that
attends with SDPA attends the packed sequence block by block during a training step
(`hud_vf_gym.training.shared_prefix_attention`): each segment against the prompt and itself, never the hidden
blocks a dense mask would still compute.

```python
trainer = HUDGRPOTrainer(model=model, args=GRPOConfig(per_device_train_batch_size=4, num_generations=4, ...),
                         rollout_func=HUDRollout(config, tasks), reward_funcs=..., train_dataset=...)
```

Put a whole group in one micro-batch (`per_device_train_batch_size` a multiple of `num_generations`) for the
saving; rows that share their prompt with no other row of the micro-batch, vision-language inputs, MoE auxiliary
losses and attention implementations that take no custom mask (FlashAttention) go through TRL's pass unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback
from trl.trainer.grpo_trainer import GRPOTrainer

from hud_vf_gym.training.host_memory import (
    GENERATION_MMAP_THRESHOLD,
    LOSS_PASS_MMAP_THRESHOLD,
    release_free_memory,
    set_mmap_threshold,
)
from hud_vf_gym.training.log_probs import completion_log_probs, plain_lm_head
from hud_vf_gym.training.shared_prefix import PackedGroup, PackingPlan, pack_groups, unpack
from hud_vf_gym.training.shared_prefix_attention import (
    ATTENTION_NAME,
    LAYOUT_KEYWORD,
    SegmentLayout,
    shared_prefix_attention,
)

__all__ = ["HUDGRPOTrainer"]

# implementations that apply a custom 4D mask as given (ATTENTION_NAME: sdpa, switched during a training step)
PACKABLE_ATTENTION = ("sdpa", "eager", ATTENTION_NAME)
DEFAULT_MAX_PACKED_TOKENS = 8192  # a packed sequence's boolean mask is this squared: 64 MiB


class HUDGRPOTrainer(GRPOTrainer):
    """`trl.GRPOTrainer` that scores a group's rollouts in one packed sequence (see the module docs).

    Args:
        *args: `GRPOTrainer`'s arguments.
        share_prompts: pack rows that share a prompt (False: TRL's per-row pass, e.g. to compare).
        max_packed_tokens: the longest packed sequence; longer groups are split.
        release_host_memory: return the C allocator's free memory to the OS after each rollout and each
            optimizer step, and allocate the loss pass's large blocks as their own mappings (`host_memory`);
            None (default): when training on CPU, where it lowers the peak by the freed memory a phase would
            otherwise keep.
        **kwargs: `GRPOTrainer`'s keyword arguments.
    """

    def __init__(
        self,
        *args: Any,
        share_prompts: bool = True,
        max_packed_tokens: int = DEFAULT_MAX_PACKED_TOKENS,
        release_host_memory: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Build TRL's trainer, then remember how to pack."""
        super().__init__(*args, **kwargs)
        self.share_prompts = share_prompts
        self.max_packed_tokens = max_packed_tokens
        if release_host_memory is None:
            release_host_memory = self.accelerator.device.type == "cpu"
        self.release_host_memory = release_host_memory
        if release_host_memory:
            self.add_callback(_ReleaseAfterStep())
        self._trained_positions: torch.Tensor | None = None

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """TRL's training loop; the allocator's threshold for separate mappings is left at glibc's ceiling after."""
        try:
            return super().train(*args, **kwargs)
        finally:
            if self.release_host_memory:
                set_mmap_threshold(GENERATION_MMAP_THRESHOLD)

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        """TRL's step; an SDPA model attends packed groups block by block, in the loss pass and its backward."""
        # the switch spans backward too: activation checkpointing recomputes the forward there (and without a
        # packed group in the call the switched-to function is plain SDPA)
        with shared_prefix_attention(self.accelerator.unwrap_model(model)):
            return super().training_step(model, inputs, num_items_in_batch)  # type: ignore[no-any-return, no-untyped-call]

    def _generate_and_score_completions(self, inputs: Any) -> Any:
        """TRL's rollouts and rewards; then the memory generation freed goes back to the OS before the loss pass."""
        if self.release_host_memory:
            set_mmap_threshold(GENERATION_MMAP_THRESHOLD)
        output = super()._generate_and_score_completions(inputs)
        if self.release_host_memory:
            release_free_memory()
            set_mmap_threshold(LOSS_PASS_MMAP_THRESHOLD)  # until the next generation: loss, backward, optimizer
        return output

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        """TRL's loss; its log-probability pass scores only the positions the loss uses (the model's tokens)."""
        # TRL's tool_mask is the rollout's env_mask: its loss, entropy mask and metrics all multiply by it, so the
        # environment's tokens need no LM head (on the CPU learning check they are 80% of the completion)
        self._trained_positions = inputs.get("tool_mask")
        try:
            return super()._compute_loss(model, inputs)  # type: ignore[no-any-return, no-untyped-call]
        finally:
            self._trained_positions = None

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **model_inputs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Per-token log-probabilities and entropies of the completions, as TRL's method returns them."""
        plan = self._packing_plan(model, input_ids, attention_mask, logits_to_keep, compute_aux_loss, model_inputs)
        if plan is None:
            return super()._get_per_token_logps_and_entropies(  # type: ignore[no-any-return]
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **model_inputs,
            )
        scored = [self._score_group(model, group, compute_entropy) for group in plan.groups]
        rows = input_ids.size(0)
        per_token_logps = unpack(plan.groups, [logps for logps, _ in scored], rows, logits_to_keep)
        per_token_entropies = None
        if compute_entropy:
            entropies = [entropy for _, entropy in scored if entropy is not None]
            per_token_entropies = unpack(plan.groups, entropies, rows, logits_to_keep)
        if plan.alone:
            alone = torch.tensor(plan.alone, device=input_ids.device)
            alone_logps, alone_entropies, _ = super()._get_per_token_logps_and_entropies(
                model,
                input_ids[alone],
                attention_mask[alone],
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
            )
            per_token_logps = per_token_logps.index_put((alone,), alone_logps)
            if per_token_entropies is not None:
                per_token_entropies = per_token_entropies.index_put((alone,), alone_entropies)
        return per_token_logps, per_token_entropies, None

    def _score_group(
        self, model: Any, group: PackedGroup, compute_entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probabilities (and entropies) of a packed group's scored positions, in order."""
        unwrapped = self.accelerator.unwrap_model(model)
        head = plain_lm_head(unwrapped) if model is unwrapped and group.input_ids.device.type == "cpu" else None
        # the dense mask is what every implementation can apply; the block-wise SDPA reads the layout instead
        layout = {LAYOUT_KEYWORD: SegmentLayout(group.shared, group.lengths)}
        with shared_prefix_attention(unwrapped), self.accelerator.autocast():
            mask = group.attention_mask(unwrapped.config._attn_implementation, unwrapped.dtype)
            if head is None:
                outputs = model(
                    input_ids=group.input_ids,
                    attention_mask=mask,
                    position_ids=group.position_ids,
                    shift_labels=group.shift_labels,
                    fused_lm_head=True,
                    **layout,
                )
                entropy = outputs.entropy[0][group.scored] if compute_entropy else None
                return outputs.log_probs[0][group.scored], entropy
            # TRL's fused head scores every position off Triton devices; here the shared prompt is most of them
            hidden = unwrapped.base_model(
                input_ids=group.input_ids,
                attention_mask=mask,
                position_ids=group.position_ids,
                use_cache=False,
                **layout,
            ).last_hidden_state[0][group.scored]
            labels = group.shift_labels[0][group.scored]
            return completion_log_probs(hidden, head, labels, self.temperature, with_entropy=compute_entropy)

    def _packing_plan(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        compute_aux_loss: bool,
        model_inputs: dict[str, Any],
    ) -> PackingPlan | None:
        """The packed layout of this micro-batch, or None where TRL's per-row pass must (or may as well) run."""
        if not self.share_prompts or compute_aux_loss or any(value is not None for value in model_inputs.values()):
            return None
        config = self.accelerator.unwrap_model(model).config
        if config._attn_implementation not in PACKABLE_ATTENTION:
            return None
        text_config = config.get_text_config()
        window = getattr(text_config, "sliding_window", None)
        if window and getattr(text_config, "use_sliding_window", True) and input_ids.size(1) > window:
            return None  # a custom mask replaces the model's sliding window, which the rows would reach
        trained = self._trained_positions
        if trained is not None and tuple(trained.shape) != (input_ids.size(0), logits_to_keep):
            trained = None  # not this pass's rows: score every position
        return pack_groups(input_ids, attention_mask, logits_to_keep, self.max_packed_tokens, trained)


class _ReleaseAfterStep(TrainerCallback):
    """After the optimizer step (gradients freed, AdamW's temporaries gone), return the freed memory to the OS."""

    def on_step_end(self, *_: Any, **__: Any) -> None:
        release_free_memory()
