"""The options of `hud-vf-gym train`: what to train (train/grpo.py's options) and where (the placement).

A field whose metadata has `grpo` is passed to train/grpo.py as that flag when it is set (None: the training YAML's
value); `--train-args` carries any other grpo.py flag (TRL's GRPOConfig and ModelConfig have ~200). `config`,
`dataset`, `model` and `output_dir` are found from the project when unset (see `hud_vf_gym.cli.train.inputs`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from hud_vf_gym.errors import ConfigError
from hud_vf_gym.training.names import ACCELERATE_CONFIGS, PROVIDERS

__all__ = ["DEFAULT_CLUSTER", "TrainOptions"]

DEFAULT_CLUSTER = "hud-vf-gym-train"


@dataclass
class TrainOptions:
    """Options of `hud-vf-gym train`; each field is the flag of the same name with dashes."""

    # -- what to train (train/grpo.py) ---------------------------------------------------------------------------
    project: str = field(
        default=".",
        metadata={"help": "The project folder: hud.lock.yaml, configs/, .env and outputs/.", "metavar": "DIR"},
    )
    config: str | None = field(
        default=None,
        metadata={
            "help": "Environment config: a YAML file or a built-in name (default: configs/<env>.yaml for "
            "hud.lock.yaml's image, else the built-in 2048).",
            "metavar": "PATH",
            "grpo": "config_path",
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Tasks: a .json/.jsonl file, a saved dataset folder, a built-in name or a hub id (default: "
            "hud.lock.yaml's primary_dataset, else the built-in 2048 tasks).",
            "grpo": "taskset",
        },
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "HF model id or local folder (default: the training YAML's: the embedded SmolLM2-135M on the "
            "CPU, Qwen2.5-1.5B-Instruct on GPUs).",
            "grpo": "model_name_or_path",
        },
    )
    train_config: str | None = field(
        default=None,
        metadata={
            "help": "train/grpo.py's YAML (default: configs/train/2048-cpu.yaml on the CPU, 2048-gpu.yaml on GPUs).",
            "metavar": "PATH",
        },
    )
    max_steps: int | None = field(default=None, metadata={"help": "GRPO steps.", "grpo": "max_steps", "metavar": "N"})
    num_tasks: int | None = field(
        default=None, metadata={"help": "Train on the first N tasks.", "grpo": "num_tasks", "metavar": "N"}
    )
    max_turns: int | None = field(
        default=None, metadata={"help": "Model turns per episode.", "grpo": "max_turns", "metavar": "N"}
    )
    num_generations: int | None = field(
        default=None, metadata={"help": "Rollouts per task in a GRPO group.", "grpo": "num_generations", "metavar": "N"}
    )
    learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate.", "grpo": "learning_rate", "metavar": "LR"}
    )
    save_steps: int | None = field(
        default=None, metadata={"help": "A checkpoint every N steps.", "grpo": "save_steps", "metavar": "N"}
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "'latest' (the newest checkpoint in the output folder) or a checkpoint folder.",
            "grpo": "resume_from_checkpoint",
            "metavar": "CHECKPOINT",
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Checkpoints and the final model (default: outputs/<the training YAML's output folder name> in "
            "the project; cloud runs copy them back here).",
            "metavar": "DIR",
        },
    )
    train_args: str | None = field(
        default=None,
        metadata={
            "help": "More train/grpo.py flags as one string, e.g. --train-args '--beta 0.01 --use_peft true'.",
            "metavar": "'FLAGS'",
        },
    )

    # -- where (the placement) -------------------------------------------------------------------------------------
    gpus: str | None = field(
        default=None,
        metadata={"help": "GPUs per machine: N or NxTYPE, e.g. 1, 4 or 8xH100 (default: the CPU).", "metavar": "GPUS"},
    )
    provider: str = field(
        default="local",
        metadata={"help": "local, skypilot (any cloud), prime (SkyPilot on Prime Intellect).", "choices": PROVIDERS},
    )
    infra: str | None = field(
        default=None,
        metadata={"help": "With skypilot: the cloud[/region] (aws, gcp/us-central1, k8s; default: the cheapest)."},
    )
    nodes: int = field(
        default=1, metadata={"help": "Machines; several need a SkyPilot cloud that allows it.", "metavar": "N"}
    )
    vllm_gpus: int = field(
        default=1, metadata={"help": "GPUs of the head machine for the vLLM generation server.", "metavar": "N"}
    )
    accelerate: str | None = field(
        default=None,
        metadata={
            "help": "configs/accelerate/ file (default: single_gpu for one training GPU, else zero2).",
            "choices": ACCELERATE_CONFIGS,
        },
    )
    cluster: str = field(default=DEFAULT_CLUSTER, metadata={"help": "SkyPilot cluster name.", "metavar": "NAME"})
    disk_size: int | None = field(
        default=None, metadata={"help": "Disk per machine in GB (default: SkyPilot's).", "metavar": "GB"}
    )
    keep: bool = field(default=False, metadata={"help": "Leave the cluster up at the end (stop it with sky down)."})

    # -- how ---------------------------------------------------------------------------------------------------------
    yes: bool = field(
        default=False, metadata={"help": "Never ask: start at once (as without a terminal).", "short": "-y"}
    )
    plan: bool = field(default=False, metadata={"help": "Print the plan (and the SkyPilot YAML) and exit."})

    def __post_init__(self) -> None:
        """Reject values no run can use, all at once."""
        problems = [
            f"--{name.replace('_', '-')} must be at least 1, got {value}"
            for name, value in (
                ("max_steps", self.max_steps),
                ("num_tasks", self.num_tasks),
                ("max_turns", self.max_turns),
                ("num_generations", self.num_generations),
                ("save_steps", self.save_steps),
                ("disk_size", self.disk_size),
            )
            if value is not None and value < 1
        ]
        if self.num_generations == 1:
            problems.append("--num-generations must be at least 2: GRPO compares rollouts of the same task")
        if self.learning_rate is not None and self.learning_rate <= 0:
            problems.append(f"--learning-rate must be above 0, got {self.learning_rate}")
        try:
            self.extra_args()
        except ValueError as exc:
            problems.append(f"--train-args {self.train_args!r}: {exc}; quote it as one shell string")
        if problems:
            count = len(problems)
            header = f"{count} invalid option{'s' if count != 1 else ''} for hud-vf-gym train"
            raise ConfigError("\n  ".join([header, *problems]))

    def extra_args(self) -> list[str]:
        """`--train-args` split into words as a shell would."""
        return shlex.split(self.train_args) if self.train_args else []
