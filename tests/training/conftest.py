"""Shared fixtures for the training tests: a tiny random causal LM with an offline BPE tokenizer and a chat template."""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import pytest

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>"]
# The cheapest GRPO step train/grpo.py accepts: one task, one group of two rollouts, two short turns, a small cap.
CHEAP_RUN_ARGS = (
    "--num_tasks",
    "1",
    "--max_turns",
    "2",
    "--max_turn_tokens",
    "8",
    "--num_generations",
    "2",
    "--per_device_train_batch_size",
    "2",
    "--gradient_accumulation_steps",
    "1",
    "--max_completion_length",
    "64",
)  # fmt: skip  (one group of two rollouts per step, in one micro-batch)


def build_tiny_model(folder: Path) -> Path:
    """Train a 1024-token byte-level BPE on local text and save it with a random 2-layer Qwen2 (~0.2M parameters)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    files = sorted(glob.glob(f"{sys.base_prefix}/lib/python3.*/json/*.py"))[:8]  # any local text works
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train(files, trainer)
    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    hf_tokenizer.chat_template = CHATML_TEMPLATE
    hf_tokenizer.save_pretrained(folder)
    config = Qwen2Config(
        vocab_size=len(hf_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=hf_tokenizer.pad_token_id,
        eos_token_id=hf_tokenizer.eos_token_id,
        bos_token_id=hf_tokenizer.bos_token_id,
        tie_word_embeddings=False,
    )
    Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model folder, built once per session (about 5 s)."""
    pytest.importorskip("transformers", reason="the training tests need the train extra: pip install -e '.[train]'")
    pytest.importorskip("tokenizers", reason="the training tests need the train extra: pip install -e '.[train]'")
    return build_tiny_model(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def cheap_run_args() -> tuple[str, ...]:
    """train/grpo.py flags for the cheapest GRPO step (shared by the script test and `hud-vf-gym train`'s)."""
    return CHEAP_RUN_ARGS
