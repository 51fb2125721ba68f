"""The CPU speed and memory settings change how a GRPO step is computed, not what it computes.

Three ways to compute one step: TRL's trainer with all rollouts in one batch and every activation kept; TRL's
trainer with one rollout per micro-batch (accumulated) and activation checkpointing; `HUDGRPOTrainer`, which packs
the group into one sequence that reads the shared prompt once (what bench/learn_cpu.py and
configs/train/2048-cpu.yaml use). Each takes one real GRPO step (TRL, the tiny random model, real 2048 servers) on
the same rollouts, with plain SGD and no clipping, so the change of every weight is the gradient itself: they must
agree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from hud_vf_gym.config import load_config
from hud_vf_gym.tasks.loading import load_taskset
from hud_vf_gym.training import GeneratedTurn, HUDGRPOTrainer, HUDRollout, reward_functions, training_dataset

transformers = pytest.importorskip("transformers", reason="the training tests need: pip install -e '.[train]'")
trl = pytest.importorskip("trl", reason="the training tests need: pip install -e '.[train]'")
torch = pytest.importorskip("torch", reason="the training tests need: pip install -e '.[train]'")

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using 'rollout_func':UserWarning"),  # TRL marks it experimental
]

# one reply per rollout of the group, so the rubric scores them differently and GRPO has advantages to learn from
REPLIES = ("<think>Merge.</think><tool>left()</tool>", "no tool here", "<tool>up()</tool>", "<tool>done()</tool>")


class PerRowGenerator:
    """Row i of every call writes REPLIES[i] (+ EOS): fixed, distinct episodes, the same under both settings."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        yield

    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: int) -> list[GeneratedTurn]:
        turns = []
        for index, _ in enumerate(contexts):
            ids = self.tokenizer.encode(REPLIES[index % len(REPLIES)], add_special_tokens=False)
            turns.append(GeneratedTurn(tuple([*ids, self.tokenizer.eos_token_id][:max_new_tokens])))
        return turns


def one_step(tiny_model: Path, output: Path, trainer_class: Any = None, **memory: Any) -> tuple[dict[str, Any], float]:
    """Each weight's change after one GRPO step (SGD, lr 1: minus the gradient) and the logged loss."""
    config = load_config("2048", max_turns=3)
    tasks = load_taskset("2048", num_tasks=1).tasks
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    funcs, weights = reward_functions(config.rubric.weights)
    args = trl.GRPOConfig(
        output_dir=str(output),
        use_cpu=True,
        bf16=False,
        max_steps=1,
        num_generations=4,
        max_completion_length=96,
        learning_rate=1.0,
        optim="sgd",  # the change of a weight is its gradient: comparable exactly, unlike Adam's first step
        max_grad_norm=0.0,  # no clipping
        lr_scheduler_type="constant",
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=0,
        **memory,
    )
    rollout = HUDRollout(config, tasks, turn_tokens=12, generator=PerRowGenerator(tokenizer))
    trainer = (trainer_class or trl.GRPOTrainer)(
        model=model,
        processing_class=tokenizer,
        reward_funcs=funcs,
        args=args,
        train_dataset=training_dataset(tasks),
        rollout_func=rollout,
    )
    try:
        trainer.train()
    finally:
        rollout.close()
    changes = {name: param.detach() - before[name] for name, param in model.named_parameters()}
    loss = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
    return changes, float(loss)


@pytest.fixture(scope="module")
def whole_batch_step(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], float]:
    """The reference: TRL's trainer, all four rollouts in one batch, every activation kept."""
    return one_step(
        tiny_model,
        tmp_path_factory.mktemp("whole"),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        gradient_checkpointing=False,
    )


def test_micro_batches_with_checkpointing_give_the_same_update(
    tiny_model: Path, tmp_path: Path, whole_batch_step: tuple[dict[str, Any], float]
) -> None:
    whole, whole_loss = whole_batch_step
    micro, micro_loss = one_step(
        tiny_model,
        tmp_path / "micro",
        per_device_train_batch_size=1,
        gradient_accumulation_steps=4,
        gradient_checkpointing=True,
    )
    assert max(change.abs().max().item() for change in whole.values()) > 1e-6  # the step did change the weights
    for name, change in whole.items():
        # TRL's chunked LM head accumulates its weight gradient in float32 even for a float64 model: fp32 tolerance
        torch.testing.assert_close(micro[name], change, rtol=1e-5, atol=1e-7, msg=f"{name} moved differently")
    assert micro_loss == pytest.approx(whole_loss, rel=1e-6, abs=1e-9)


def test_packing_the_shared_prompt_gives_the_same_update(
    tiny_model: Path, tmp_path: Path, whole_batch_step: tuple[dict[str, Any], float]
) -> None:
    whole, whole_loss = whole_batch_step
    calls: list[int] = []
    packed, packed_loss = one_step(
        tiny_model,
        tmp_path / "packed",
        trainer_class=_counting(HUDGRPOTrainer, calls),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        gradient_checkpointing=True,
    )
    assert calls == [4]  # one packed sequence held the group's four rollouts: the packed path did run
    for name, change in whole.items():
        torch.testing.assert_close(packed[name], change, rtol=1e-5, atol=1e-7, msg=f"{name} moved differently")
    assert packed_loss == pytest.approx(whole_loss, rel=1e-6, abs=1e-9)


def _counting(trainer_class: Any, calls: list[int]) -> Any:
    """`trainer_class` recording how many rows each packed sequence held."""

    class Counting(trainer_class):  # type: ignore[misc, valid-type]
        def _packing_plan(self, *args: Any, **kwargs: Any) -> Any:
            plan = super()._packing_plan(*args, **kwargs)
            calls.extend(len(group.rows) for group in (plan.groups if plan else []))
            return plan

    return Counting
