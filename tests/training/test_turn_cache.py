"""The turn cache: a multi-turn episode generated with the key/value cache kept between turns writes the same
tokens as re-reading every context in full, with a real (tiny, random) model and transformers' `generate`.

The model runs in float64 so that rounding (the cached and the re-read attention sum in a different order) cannot
flip a greedy choice; the comparison is then exact. Sampling is compared by seed: the same seed draws the same
tokens either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hud_vf_gym.training import GeneratedTurn, TransformersGenerator
from hud_vf_gym.training.turn_cache import TurnCache, common_prefix_length, supports_model

transformers = pytest.importorskip("transformers", reason="the training tests need: pip install -e '.[train]'")
torch = pytest.importorskip("torch", reason="the training tests need: pip install -e '.[train]'")
accelerate = pytest.importorskip("accelerate", reason="the training tests need: pip install -e '.[train]'")


def trainer_for(model: Any, tokenizer: Any, **sampling: Any) -> Any:
    """The parts of a GRPOTrainer the generator reads, around a real model, tokenizer and Accelerator."""
    generation_config = transformers.GenerationConfig(
        do_sample=bool(sampling),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id],
        **sampling,
    )
    return SimpleNamespace(
        args=SimpleNamespace(use_vllm=False, ds3_gather_for_generation=True, gradient_checkpointing_kwargs=None),
        model_wrapped=model,
        accelerator=accelerate.Accelerator(cpu=True),
        generation_kwargs=None,
        generation_config=generation_config,
        processing_class=tokenizer,
        eos_token_ids=[tokenizer.eos_token_id],
    )


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model: Path) -> tuple[Any, Any]:
    """The tiny random Qwen2 in float64 (exact greedy comparisons) and its tokenizer."""
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64)
    model.eval()
    return model, transformers.AutoTokenizer.from_pretrained(tiny_model)


def play(
    generator: TransformersGenerator, prompts: Sequence[Sequence[int]], seed: int = 0
) -> list[list[GeneratedTurn]]:
    """Three turns as HUDRollout drives them: rows stop, turns are cut short, observations differ in length."""
    torch.manual_seed(seed)
    contexts = [list(prompt) for prompt in prompts]
    active = list(range(len(contexts)))
    history: list[list[GeneratedTurn]] = []
    with generator.session():
        for turn in range(3):
            outputs = generator.generate([contexts[row] for row in active], 6)
            history.append(outputs)
            for row, output in zip(active, outputs, strict=True):
                kept = list(output.token_ids[: 4 if row == 1 else 6])  # row 1: a smaller turn cap cuts its turns
                observation = [100 + row] * (row + turn + 1)  # a different length per row and turn
                contexts[row] += kept + observation
            if turn == 0:
                active = [row for row in active if row != 2]  # row 2's episode ends after its first turn
    return history


PROMPTS = (
    [5, 6, 7, 8, 9, 10, 11, 12],
    [5, 6, 7, 8, 9, 10, 11, 12],  # the same prompt: a GRPO group
    [20, 21, 22],  # shorter: left padding in the first prefill
    [5, 6, 7, 8, 9, 10, 11, 12],
)


def test_greedy_turns_with_cache_equal_full_rereads(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    cached = play(TransformersGenerator(trainer_for(model, tokenizer)), PROMPTS)
    reread = play(TransformersGenerator(trainer_for(model, tokenizer), reuse_cache=False), PROMPTS)
    assert cached == reread
    assert sum(len(turn.token_ids) for turns in cached for turn in turns) > 20  # real work was compared


def test_sampled_turns_with_cache_follow_the_seed(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    sampling = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
    first = play(TransformersGenerator(trainer_for(model, tokenizer, **sampling)), PROMPTS, seed=3)
    again = play(TransformersGenerator(trainer_for(model, tokenizer, **sampling)), PROMPTS, seed=3)
    reread = play(TransformersGenerator(trainer_for(model, tokenizer, **sampling), reuse_cache=False), PROMPTS, seed=3)
    assert first == again == reread


def test_cache_reads_only_new_tokens_and_prefills_a_shared_prompt_once(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    turns = TurnCache(model, tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        ids, mask = turns.prepare([PROMPTS[0], PROMPTS[1]])
        assert turns.cache.get_seq_length() == len(PROMPTS[0]) - 1  # one prefill row for the two equal prompts
        assert ids.shape == (2, len(PROMPTS[0]))  # generate reads the one last token of each
        output = model.generate(
            input_ids=ids, attention_mask=mask, cache=turns.cache, max_new_tokens=3, do_sample=False, min_new_tokens=3
        )
        turns.absorb(output, [3, 1])  # row 1 "stopped" after its first token: its later ones become holes
        assert turns.columns == len(PROMPTS[0]) + 2  # generate never feeds back the last token it sampled
        assert turns.attention_mask[:, -2:].tolist() == [[1, 1], [1, 0]]
        before = turns.columns
        longer = [list(PROMPTS[0]) + output[0, len(PROMPTS[0]) :].tolist() + [40, 41]]
        ids, _ = turns.prepare(longer)
        assert ids.shape[1] == before + 3  # the last sampled token and the two observation tokens, nothing else


def test_helpers() -> None:
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([], [1]) == 0
    sliding = SimpleNamespace(config=transformers.MistralConfig(sliding_window=16, num_hidden_layers=2))
    assert not supports_model(sliding)
    full = SimpleNamespace(config=transformers.LlamaConfig(num_hidden_layers=2))
    assert supports_model(full)
