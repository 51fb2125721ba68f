"""What a training job runs: its folder layout and its command line (`training_command`, the one place to change).

A job's process is `training_command(...)`. Today that is this repository's GRPO script,

    python train/grpo.py --taskset <job>/tasks.jsonl --config_path 2048 --model_name_or_path embedded
        --max_steps N --per_device_train_batch_size B ... --output_dir <state>/models/<project>/<model>
        --logging_steps 1 --disable_tqdm true [--resume_from_checkpoint latest]

and when `hud-vf-gym train` lands it becomes `hud-vf-gym train --yes ...` with the same values: nothing else in the
service knows the command. Whatever runs must print the Trainer's per-step log dicts to stdout (`logging_steps=1`,
see `hud_vf_gym.service.logparse`) and write `checkpoint-<step>` folders into `--output_dir`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import hud_vf_gym
from hud_vf_gym.errors import ConfigError
from hud_vf_gym.service.models import TrainRequest
from hud_vf_gym.service.sources import DEFAULT_TASKSET

__all__ = [
    "BUILTIN_FEW_SHOT",
    "JobPaths",
    "grpo_script",
    "training_command",
    "training_environment",
    "write_few_shot",
]

BUILTIN_FEW_SHOT = "train/2048-few-shot.json"  # under configs/: the examples that make SmolLM2 call tools on 2048
_SCRIPT = Path("train") / "grpo.py"


@dataclass(frozen=True, slots=True)
class JobPaths:
    """The files of one job."""

    folder: Path  # <state>/jobs/<job id>
    output_dir: Path  # <state>/models/<project>/<model_name>: the model and its checkpoints

    @property
    def tasks_file(self) -> Path:
        """The checked tasks, as a JSONL taskset."""
        return self.folder / "tasks.jsonl"

    @property
    def few_shot_file(self) -> Path:
        """The few-shot example turns, when the job has any."""
        return self.folder / "few_shot.json"

    @property
    def log_file(self) -> Path:
        """The log: stdout and stderr of every attempt, appended."""
        return self.folder / "log.txt"

    def exit_file(self, attempt: int) -> Path:
        """Where the supervisor records how attempt N ended."""
        return self.folder / f"exit-{attempt}.json"


def grpo_script() -> Path:
    """train/grpo.py of the checkout this package runs from.

    Raises:
        ConfigError: the package is installed without its repository (a wheel), so the script is missing.
    """
    script = Path(hud_vf_gym.__file__).resolve().parent.parent / _SCRIPT
    if not script.is_file():
        raise ConfigError(
            f"training jobs run {_SCRIPT}, which is not next to this installation of hud_vf_gym ({script}); run the "
            "service from a clone of the repository (pip install -e '.[service,train]')"
        )
    return script


def _builtin_few_shot() -> Path | None:
    checkout = Path(hud_vf_gym.__file__).resolve().parent.parent / "configs" / BUILTIN_FEW_SHOT
    packaged = Path(str(resources.files("hud_vf_gym") / "_configs" / BUILTIN_FEW_SHOT))
    return next((path for path in (checkout, packaged) if path.is_file()), None)


def write_few_shot(spec: TrainRequest, paths: JobPaths) -> Path | None:
    """Write the job's few-shot turns (the request's, or the built-in 2048 ones for the built-in 2048 taskset)."""
    if spec.few_shot is not None:
        messages = [message.model_dump() for message in spec.few_shot]
    elif spec.tasks is None and (spec.taskset or DEFAULT_TASKSET) == DEFAULT_TASKSET:
        builtin = _builtin_few_shot()
        if builtin is None:
            return None
        messages = json.loads(builtin.read_text(encoding="utf-8"))
    else:
        return None
    if not messages:
        return None
    paths.few_shot_file.write_text(json.dumps(messages, indent=1), encoding="utf-8")
    return paths.few_shot_file


def training_command(spec: TrainRequest, paths: JobPaths, *, config: str, resume: bool) -> list[str]:
    """The command line of a training job (see the module docstring); the only place that knows what runs.

    Args:
        spec: the request, already validated.
        paths: the job's files; `paths.tasks_file` holds its checked tasks.
        config: the environment config's name or resolved path.
        resume: continue from the newest checkpoint in `paths.output_dir`.
    """
    on_cpu = not spec.gpus
    flags: dict[str, object] = {
        # environment and episodes
        "taskset": paths.tasks_file,
        "config_path": config,
        "max_turn_tokens": spec.max_turn_tokens,
        # model
        "model_name_or_path": spec.base_model,
        "dtype": "float32" if on_cpu else "bfloat16",  # CPU matmuls in bf16 are slower than fp32
        "use_peft": spec.use_peft,
        "lora_r": spec.lora_r,
        # GRPO
        "use_cpu": on_cpu,
        "bf16": not on_cpu,
        "max_steps": spec.num_steps,
        "per_device_train_batch_size": spec.batch_size,
        "num_generations": spec.num_generations,
        "learning_rate": spec.learning_rate,
        "lr_scheduler_type": "constant",
        "max_completion_length": spec.max_completion_length,
        "temperature": spec.temperature,
        "beta": spec.beta,
        "loss_type": spec.loss_type,
        "seed": spec.seed,
        "gradient_checkpointing": False,
        # logging and checkpoints: one metrics dict per step on stdout, no progress bar to parse around
        "output_dir": paths.output_dir,
        "logging_steps": 1,
        "disable_tqdm": True,
        "save_steps": spec.save_steps,
        "save_total_limit": 2,
        "report_to": "none",
    }
    if spec.max_turns is not None:
        flags["max_turns"] = spec.max_turns
    if paths.few_shot_file.is_file():
        flags["few_shot_path"] = paths.few_shot_file
    if spec.use_ruler:
        flags["extra_reward_funcs"] = "hud_vf_gym.service.ruler_reward.ruler_reward"
    if resume:
        flags["resume_from_checkpoint"] = "latest"
    command = [sys.executable, "-u", str(grpo_script())]  # -u: each log line reaches the log file at once
    for name, value in flags.items():
        command += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return command


def training_environment(spec: TrainRequest, judge_environment: dict[str, str]) -> dict[str, str]:
    """Variables the job's process gets on top of the service's environment (minus the service token)."""
    variables = {"PYTHONUNBUFFERED": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "WANDB_PROJECT": spec.project}
    variables["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in spec.gpus)  # "" hides every GPU from a CPU job
    if spec.use_ruler:
        variables.update(judge_environment)
    return variables
