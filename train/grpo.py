"""GRPO training on HUD tasks with TRL: multi-turn episodes through the evaluation harness, rubric rewards.

    python train/grpo.py --config configs/train/2048-cpu.yaml                      # CPU smoke run, embedded SmolLM2
    python train/grpo.py --config configs/train/2048-cpu.yaml --max_steps 2 --learning_rate 1e-5
    train/launch.sh --num-gpus 4 --model Qwen/Qwen2.5-1.5B-Instruct                # vLLM on GPU 0, training on 1-3

Options come from three dataclasses parsed by TRL's `TrlParser`: `HUDGRPOArguments` (below: environment, turns,
extra rewards), TRL's `GRPOConfig` (batch sizes, `num_generations`, `learning_rate`, `beta`, `loss_type`,
`max_completion_length` = the episode's token cap, `use_cpu`, `use_vllm`, `output_dir`, `save_steps`,
`resume_from_checkpoint`, `report_to`, `seed`, ...) and TRL's `ModelConfig` (`model_name_or_path`, `dtype`, and the
LoRA options `use_peft`, `lora_r`, `lora_alpha`, `lora_target_modules`, ...). A YAML file given with `--config`
sets defaults; command-line flags override it.

The model is an HF id, a local folder, or "embedded" (the default: SmolLM2-135M-Instruct converted once to a local
folder). Rewards are the environment config's rubric components with its weights (`rewards/<component>/mean` in
the logs). W&B is used when WANDB_API_KEY is set and `report_to` is left at none. The trainer is
`HUDGRPOTrainer`: TRL's, with a log-probability pass that reads a group's shared prompt once when the whole group is
in one micro-batch (`per_device_train_batch_size` a multiple of `num_generations`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

TRUE_WORDS = ("true", "latest", "last")  # resume_from_checkpoint values that mean "the newest checkpoint in output_dir"
INSTALL_TRAIN = 'pip install torch==2.13.0 && pip install "hud-vf-gym[train]"'  # CPU torch first, or pip pulls CUDA


@dataclass
class HUDGRPOArguments:
    """Options of this script that TRL's GRPOConfig and ModelConfig do not have."""

    # -- environment ----------------------------------------------------------------------------------------------
    taskset: str = field(
        default="2048",
        metadata={"help": "Tasks to train on: a built-in name (2048), a .json/.jsonl file, a saved dataset, an HF id."},
    )
    config_path: str = field(
        default="2048", metadata={"help": "Environment config: a built-in name (2048, default) or a YAML file."}
    )
    num_tasks: int | None = field(default=None, metadata={"help": "Train on the first N tasks only (all: unset)."})
    split: str = field(default="train", metadata={"help": "Dataset split for hub ids and saved dataset dicts."})
    max_turns: int | None = field(
        default=None, metadata={"help": "Model turns per episode (unset: the config's defaults.max_turns)."}
    )
    few_shot_path: str | None = field(
        default=None,
        metadata={"help": "JSON list of example user/assistant messages, placed between system prompt and task."},
    )

    # -- rollout --------------------------------------------------------------------------------------------------
    max_turn_tokens: int = field(
        default=64,
        metadata={
            "help": "New tokens the model may write per turn; the whole episode is capped by max_completion_length."
        },
    )

    # -- host memory ----------------------------------------------------------------------------------------------
    release_host_memory: bool | None = field(
        default=None,
        metadata={
            "help": "Return memory PyTorch freed to the OS during training (unset: on CPU only). false: faster CPU "
            "steps for more peak RSS (the learning check: 25 instead of 34 s, 3.8 instead of 2.8 GiB)."
        },
    )

    # -- extra rewards --------------------------------------------------------------------------------------------
    extra_reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "Import paths (pkg.module.function) of reward functions added to the rubric's components."},
    )
    extra_reward_weights: list[float] | None = field(
        default=None, metadata={"help": "Weights of extra_reward_funcs, in order (unset: 1.0 each)."}
    )

    def __post_init__(self) -> None:
        """Reject values no run can use, with the fix."""
        problems = []
        if self.num_tasks is not None and self.num_tasks < 1:
            problems.append(f"num_tasks must be at least 1 or unset, got {self.num_tasks}")
        if self.max_turns is not None and self.max_turns < 1:
            problems.append(f"max_turns must be at least 1 or unset, got {self.max_turns}")
        if self.max_turn_tokens < 1:
            problems.append(f"max_turn_tokens must be at least 1, got {self.max_turn_tokens}")
        if self.extra_reward_weights is not None and len(self.extra_reward_weights) != len(self.extra_reward_funcs):
            problems.append(
                f"extra_reward_weights has {len(self.extra_reward_weights)} weight(s) for "
                f"{len(self.extra_reward_funcs)} extra_reward_funcs; give one weight per function or leave it unset"
            )
        if problems:
            raise ValueError("; ".join(problems))


def load_reward_func(path: str) -> Any:
    """Import `pkg.module.function` (or `pkg.module:function`)."""
    import importlib

    module_name, _, name = path.replace(":", ".").rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"extra_reward_funcs: cannot import {path!r} ({exc}); expected an import path such as "
            "my_package.rewards.length_penalty"
        ) from exc
    if not callable(function):
        raise ValueError(f"extra_reward_funcs: {path!r} is not a function; expected pkg.module.function")
    return function


def import_trl() -> Any:
    """Import TRL, or raise DependencyNotInstalled with the pip command."""
    try:
        import trl
    except ImportError as exc:
        from hud_vf_gym.errors import DependencyNotInstalled

        raise DependencyNotInstalled(f"train/grpo.py needs TRL, which is not installed; run: {INSTALL_TRAIN}") from exc
    return trl


def main(script_args: HUDGRPOArguments, training_args: Any, model_args: Any) -> Any:
    """Build the environment, rollout, rewards and trainer from the options, train, save; return the trainer."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is "experimental" in TRL 1.16; we rely on it
    trl = import_trl()

    from hud_vf_gym.config import load_config
    from hud_vf_gym.errors import ConfigError
    from hud_vf_gym.tasks.loading import load_taskset
    from hud_vf_gym.training import (
        HUDGRPOTrainer,
        HUDRollout,
        load_few_shot,
        resolve_model,
        resolve_report_to,
        reward_functions,
        training_dataset,
    )

    config = load_config(script_args.config_path, max_turns=script_args.max_turns)
    tasks = load_taskset(script_args.taskset, split=script_args.split, num_tasks=script_args.num_tasks).tasks
    reward_funcs, reward_weights = reward_functions(config.rubric.weights)
    reward_funcs += [load_reward_func(path) for path in script_args.extra_reward_funcs]
    reward_weights += script_args.extra_reward_weights or [1.0] * len(script_args.extra_reward_funcs)
    if training_args.reward_weights is not None:
        raise ConfigError(
            "reward_weights come from the environment config's rubric.weights (and extra_reward_weights); "
            "leave reward_weights unset and edit the config instead"
        )
    training_args.reward_weights = reward_weights
    training_args.report_to = resolve_report_to(training_args.report_to, os.environ)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "dtype": model_args.dtype,
        "attn_implementation": model_args.attn_implementation,
        **(training_args.model_init_kwargs or {}),
    }
    few_shot = load_few_shot(script_args.few_shot_path) if script_args.few_shot_path else []
    rollout = HUDRollout(config, tasks, turn_tokens=script_args.max_turn_tokens, few_shot=few_shot)
    trainer = HUDGRPOTrainer(
        model=resolve_model(model_args.model_name_or_path),
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=training_dataset(tasks),
        peft_config=trl.get_peft_config(model_args),
        rollout_func=rollout,
        release_host_memory=script_args.release_host_memory,
    )
    resume = training_args.resume_from_checkpoint
    try:
        trainer.train(resume_from_checkpoint=True if str(resume).lower() in TRUE_WORDS else resume)
    finally:
        rollout.close()  # no MCP server outlives training, even when it fails
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}")
    return trainer


def make_parser(prog: str | None = None) -> Any:
    """The TrlParser over HUDGRPOArguments, GRPOConfig and ModelConfig (`--config file.yaml` sets defaults)."""
    trl = import_trl()
    return trl.TrlParser((HUDGRPOArguments, trl.GRPOConfig, trl.ModelConfig), prog=prog)


if __name__ == "__main__":
    parser = make_parser()
    main(*parser.parse_args_and_config())
