"""The CPU GRPO setup bench/learn_cpu.py and bench/grpo_step.py share, and a per-phase meter for its steps.

`build_trainer` is the learning check's trainer (SmolLM2-135M, 2048 on 3x3 boards, 4 rollouts x 4 turns of 12
tokens, beta 0). `instrument` wraps the trainer's and the rollout's methods so a `PhaseMeter` sees, per step:

- `rollout`: TRL's call of the rollout function, split into `generate` (the model writing its turns) and the rest
  (MCP setup/act/evaluate, chat templating, scoring);
- `loss forward`: TRL's `compute_loss` (the log-prob pass with gradients);
- `backward`: `accelerator.backward`;
- `optimizer`: AdamW's step.

Nothing in TRL or the package is changed: the wrappers only time and measure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.memory import PhaseMeter

TRAIN_TASKS = ("2048_3x3_target_16", "2048_3x3_target_32", "2048_3x3_target_64", "2048_3x3_target_128")
FEW_SHOT = Path("configs/train/2048-few-shot.json")  # two example turns; without them SmolLM2 writes no tool call


@dataclass
class TrainSettings:
    """The learning check's training options (bench/learn_cpu.py's flags)."""

    steps: int = 12
    num_generations: int = 4
    batch: int = 4
    learning_rate: float = 2e-5
    max_turns: int = 4
    turn_tokens: int = 12
    seed: int = 0
    output: Path = Path("outputs/learn-cpu")
    grpo_overrides: dict[str, Any] = field(default_factory=dict)  # GRPOConfig fields set on top (bench variants)
    reuse_cache: bool = True  # the rollout's generator keeps the KV cache between turns (False: the old re-reads)
    share_prompts: bool = True  # HUDGRPOTrainer scores a group in one sequence that reads the prompt once
    release_host_memory: bool | None = None  # None: HUDGRPOTrainer's default (on, on CPU)


def load_tasks(names: Sequence[str]) -> list[Any]:
    """The named built-in 2048 tasks."""
    from hud_vf_gym.tasks.loading import load_taskset

    by_id = {task.id: task for task in load_taskset("2048").tasks}
    return [by_id[name] for name in names]


@dataclass
class StepClock:
    """Wall and CPU seconds (all threads of the process) of every optimizer step, filled while training runs."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def build_trainer(
    model: Any, tokenizer: Any, config: Any, tasks: list[Any], few_shot: list[Any], settings: TrainSettings
) -> tuple[Any, Any, StepClock]:
    """GRPO with HUDRollout as the learning check runs it; returns the trainer, the rollout and the step clock."""
    from transformers import TrainerCallback
    from trl import GRPOConfig

    from hud_vf_gym.training import (
        HUDGRPOTrainer,
        HUDRollout,
        TransformersGenerator,
        reward_functions,
        training_dataset,
    )

    clock = StepClock()

    class StepTimer(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, *_: Any, **__: Any) -> None:
            self.started, self.started_cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            clock.wall.append(time.perf_counter() - self.started)
            clock.cpu.append(time.process_time() - self.started_cpu)
            print(f"  step {len(clock.wall)}: {clock.wall[-1]:.1f} s wall, {clock.cpu[-1]:.1f} s CPU", flush=True)

    reward_funcs, reward_weights = reward_functions(config.rubric.weights)
    options: dict[str, Any] = {
        "output_dir": str(settings.output / "trainer"),
        "use_cpu": True,
        "bf16": False,
        "max_steps": settings.steps,
        # a whole group per micro-batch, so HUDGRPOTrainer reads its shared prompt (few-shot turns and all, ~95% of
        # every row here) once for the group's rollouts instead of once per rollout
        "per_device_train_batch_size": settings.batch,
        "gradient_accumulation_steps": 1,
        "num_generations": settings.num_generations,
        "max_completion_length": settings.max_turns * (settings.turn_tokens + 200),  # turns plus 3x3 boards
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": "constant",
        "beta": 0.0,
        "temperature": 1.0,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "gradient_checkpointing": True,  # keeps one layer's activations, not 30
        "reward_weights": reward_weights,
        "seed": settings.seed,
    }
    options.update(settings.grpo_overrides)
    model.train()
    rollout = HUDRollout(config, tasks, turn_tokens=settings.turn_tokens, few_shot=few_shot)
    trainer = HUDGRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=reward_funcs,
        args=GRPOConfig(**options),
        train_dataset=training_dataset(tasks),
        rollout_func=rollout,
        callbacks=[StepTimer()],
        share_prompts=settings.share_prompts,
        release_host_memory=settings.release_host_memory,
    )
    if not settings.reuse_cache:
        rollout.generator = TransformersGenerator(trainer, reuse_cache=False)
    return trainer, rollout, clock


def _wrap(owner: Any, name: str, meter: PhaseMeter, phase: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        with meter.phase(phase):
            return original(*args, **kwargs)

    setattr(owner, name, timed)


def instrument(trainer: Any, rollout: Any, meter: PhaseMeter) -> None:
    """Route the trainer's phases through `meter` (see the module docs); call before `trainer.train()`."""
    from transformers import TrainerCallback

    from hud_vf_gym.training.generation import select_generator

    trainer.rollout_func = _timed_callable(trainer.rollout_func, meter, "rollout")

    class _Optimizer(TrainerCallback):  # type: ignore[misc]
        def on_pre_optimizer_step(self, *_: Any, **__: Any) -> None:
            self.context = meter.phase("optimizer")
            self.context.__enter__()

        def on_optimizer_step(self, *_: Any, **__: Any) -> None:
            self.context.__exit__(None, None, None)

    trainer.add_callback(_Optimizer())
    _wrap(trainer, "compute_loss", meter, "loss forward")
    _wrap(trainer.accelerator, "backward", meter, "backward")
    generator = rollout.generator if rollout.generator is not None else select_generator(trainer)
    _wrap(generator, "generate", meter, "  generate")
    rollout.generator = generator


def _timed_callable(function: Callable[..., Any], meter: PhaseMeter, phase: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        with meter.phase(phase):
            return function(*args, **kwargs)

    return timed
