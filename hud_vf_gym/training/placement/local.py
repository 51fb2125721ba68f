"""The command line of a run on this machine, and the training command every machine of a cloud run executes.

    CPU          python train/grpo.py --config configs/train/2048-cpu.yaml ARGS
    one GPU      accelerate launch --config_file configs/accelerate/single_gpu.yaml --num_processes 1
                     train/grpo.py --config ... --model_name_or_path M --use_vllm false ARGS
    N >= 2 GPUs  bash train/launch.sh --num-gpus N --vllm-gpus 1 --accelerate zero2 --model M --config ... -- ARGS

With one GPU there is no room for a vLLM server (it must not share the trainer's GPU), so the trainer generates with
its own model. With two or more, `train/launch.sh` runs what `hud_vf_gym.training.launch.plan_launch` plans; the
split is checked here with the same function, so a bad one fails before anything starts. Every command runs in the
repository checkout (the folder holding train/grpo.py), where the configs' relative paths point.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from hud_vf_gym.training.launch import plan_launch
from hud_vf_gym.training.placement.gpus import GpuSplit
from hud_vf_gym.training.placement.steps import Step

__all__ = ["SCRIPT", "default_accelerate", "local_step", "training_argv"]

SCRIPT = "train/grpo.py"
LAUNCH_SH = "train/launch.sh"


def default_accelerate(split: GpuSplit, nodes: int = 1) -> str:
    """`single_gpu` for one training process in all, else DeepSpeed ZeRO-2 (`configs/accelerate/`)."""
    return "single_gpu" if split.trainer * nodes == 1 else "zero2"


def training_argv(
    split: GpuSplit | None,
    *,
    model: str,
    train_config: str,
    grpo_args: Sequence[str],
    accelerate: str | None = None,
    nodes: int = 1,
    python: str = sys.executable,
) -> list[str]:
    """The training command for a machine with `split` (None: the CPU).

    With `nodes > 1` it expects the shell variables MACHINE_RANK and MASTER_ADDR (the SkyPilot run script sets them).

    Raises:
        ConfigError: the split does not work (checked by `plan_launch`, the planner `train/launch.sh` runs).
    """
    if split is None:
        return [python, SCRIPT, "--config", train_config, *grpo_args]
    if not split.uses_vllm:
        argv = ["accelerate", "launch", "--config_file", "configs/accelerate/single_gpu.yaml", "--num_processes", "1"]
        return [*argv, SCRIPT, "--config", train_config, "--model_name_or_path", model, "--use_vllm", "false",
                *grpo_args]  # fmt: skip
    accelerate = accelerate or default_accelerate(split, nodes)
    plan_launch(  # the same checks launch.sh's planner makes, before anything starts
        model=model,
        gpus=[str(index) for index in range(split.gpus)],
        vllm_gpus=split.vllm,
        accelerate_config=accelerate,
        train_config=train_config,
        num_machines=nodes,
        main_process_ip="head" if nodes > 1 else None,
    )
    argv = ["bash", LAUNCH_SH, "--num-gpus", str(split.gpus), "--vllm-gpus", str(split.vllm)]
    argv += ["--accelerate", accelerate]
    if nodes > 1:
        argv += ["--num-machines", str(nodes), "--machine-rank", "$MACHINE_RANK", "--main-process-ip", "$MASTER_ADDR"]
    return [*argv, "--model", model, "--config", train_config, "--", *grpo_args]


def local_step(
    split: GpuSplit | None,
    *,
    source_root: Path,
    model: str,
    train_config: str,
    grpo_args: Sequence[str],
    accelerate: str | None = None,
    python: str = sys.executable,
) -> Step:
    """The one command of a run on this machine, in the checkout; launch.sh is told which Python to use."""
    argv = training_argv(
        split, model=model, train_config=train_config, grpo_args=grpo_args, accelerate=accelerate, python=python
    )
    env = {"PYTHON": python} if split is not None and split.uses_vllm else {}
    return Step(tuple(argv), cwd=source_root, env=env)
