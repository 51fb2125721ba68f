"""The options of ART training on a HUD environment: one dataclass for the CLI flags and `train_hud_with_art`.

A field left None takes its value from the `--config` file's `training` section (`default`, then the
environment's own entry), else from the defaults here (seed 000's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from hud_vf_gym.errors import ConfigError
from hud_vf_gym.integrations.art.backends import BACKENDS, RULER_ONLY
from hud_vf_gym.integrations.art.environments import TrainingDefaults

__all__ = ["DEFAULTS", "ARTOptions"]

DEFAULTS = TrainingDefaults(
    base_model="Qwen/Qwen2.5-3B-Instruct",
    scenarios=20,
    steps=10,
    rollouts_per_group=4,
    learning_rate=1e-5,
    use_ruler=False,
    max_tokens=256,
    temperature=1.0,
)


@dataclass
class ARTOptions:
    """Options of `python -m hud_vf_gym.integrations.art`; every field is a flag of the same name with dashes."""

    env: str = field(default="2048", metadata={"help": "Environment: 2048, browser, miniwob or one in --config."})
    config: str | None = field(
        default=None, metadata={"help": "A config.yaml with environments and training defaults.", "metavar": "YAML"}
    )
    backend: str = field(
        default="local",
        metadata={
            "help": "Where to train: " + "; ".join(f"{k}: {v}" for k, v in BACKENDS.items()),
            "choices": tuple(BACKENDS),
        },
    )
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "The model to train (an HF id), or with --base-url the name that endpoint serves "
            f"(default: {DEFAULTS.base_model})"
        },
    )
    base_url: str | None = field(
        default=None,
        metadata={
            "help": "ruler-only: an OpenAI-compatible endpoint serving --base-model, e.g. http://127.0.0.1:8000/v1"
        },
    )
    api_key_env: str | None = field(
        default=None, metadata={"help": "The variable holding --base-url's API key (not needed on 127.0.0.1)."}
    )
    scenarios: int | None = field(
        default=None, metadata={"help": f"Tasks to train on: the first N (default: {DEFAULTS.scenarios})"}
    )
    steps: int | None = field(default=None, metadata={"help": f"Training steps (default: {DEFAULTS.steps})"})
    groups_per_step: int | None = field(
        default=None, metadata={"help": "Tasks (groups) per step, taken in turn (default: every scenario)"}
    )
    rollouts_per_group: int | None = field(
        default=None, metadata={"help": f"Rollouts per task per step (default: {DEFAULTS.rollouts_per_group})"}
    )
    learning_rate: float | None = field(
        default=None, metadata={"help": f"Learning rate (default: {DEFAULTS.learning_rate})"}
    )
    use_ruler: bool = field(
        default=False, metadata={"help": "Score every group with RULER (ruler-only always does); keeps the own reward."}
    )
    judge_model: str | None = field(
        default=None,
        metadata={
            "help": "RULER judge: a LiteLLM model (openai/o4-mini), or a name served at --judge-base-url "
            "(default: the policy's own endpoint and model)"
        },
    )
    judge_base_url: str | None = field(default=None, metadata={"help": "An OpenAI-compatible endpoint for the judge."})
    judge_api_key_env: str | None = field(
        default=None, metadata={"help": "The variable holding the judge's key (not needed on 127.0.0.1)."}
    )
    max_turns: int | None = field(default=None, metadata={"help": "Model turns per episode (default: the config's)"})
    max_tokens: int | None = field(
        default=None, metadata={"help": f"Most tokens per turn (default: {DEFAULTS.max_tokens})"}
    )
    temperature: float | None = field(
        default=None, metadata={"help": f"Sampling temperature (default: {DEFAULTS.temperature})"}
    )
    seed: int | None = field(default=None, metadata={"help": "Sampling seed; rollout i of a group sends seed + i."})
    request_timeout: float = field(
        default=1200.0,
        metadata={"help": "Seconds one --base-url request may take, queueing included (a busy local model queues)."},
    )
    concurrency: int = field(default=8, metadata={"help": "MCP sessions open at once."})
    project: str = field(default="hud-vf-gym", metadata={"help": "ART project name (W&B project, .art folder)."})
    run_name: str | None = field(
        default=None, metadata={"help": "Run name; the same name resumes its checkpoints (default: ENV-DATE-TIME)"}
    )
    art_dir: str = field(default=".art", metadata={"help": "Where ART keeps checkpoints and logs."})
    output: str | None = field(
        default=None, metadata={"help": "Write each step's trajectory groups to OUTPUT/step-NNNN.jsonl (ART format)."}
    )

    def __post_init__(self) -> None:
        """Reject bad values and combinations, all at once."""
        problems = [*self._range_problems(), *self._combination_problems()]
        if len(problems) == 1:
            raise ConfigError(problems[0])
        if problems:
            raise ConfigError("\n  ".join([f"{len(problems)} invalid options", *problems]))

    def _range_problems(self) -> list[str]:
        problems = []
        for flag in ("scenarios", "steps", "groups_per_step", "rollouts_per_group", "max_turns", "max_tokens"):
            value = getattr(self, flag)
            if value is not None and value < 1:
                problems.append(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
        if self.concurrency < 1:
            problems.append(f"--concurrency must be at least 1, got {self.concurrency}")
        for flag, number in (("learning-rate", self.learning_rate), ("request-timeout", self.request_timeout)):
            if number is not None and number <= 0:
                problems.append(f"--{flag} must be above 0, got {number}")
        return problems

    def _combination_problems(self) -> list[str]:
        problems = []
        if self.backend == RULER_ONLY and self.base_url is None:
            problems.append("--backend ruler-only samples from --base-url (an endpoint serving --base-model); give it")
        if self.backend != RULER_ONLY and self.base_url is not None:
            problems.append(f"--base-url is for ruler-only; --backend {self.backend} serves the trained model itself")
        if self.judge_base_url is not None and self.judge_model is None:
            problems.append("--judge-base-url needs --judge-model, the name that endpoint serves")
        return problems

    @property
    def ruler(self) -> bool:
        """Whether groups are scored with RULER (asked for, or implied by ruler-only)."""
        return self.use_ruler or self.backend == RULER_ONLY

    def resolved(self, defaults: TrainingDefaults) -> ARTOptions:
        """A copy with every None that `defaults` (a config file's) or `DEFAULTS` fills, filled."""
        merged = {**DEFAULTS.model_dump(exclude_none=True), **defaults.model_dump(exclude_none=True)}
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("base_model", "scenarios", "steps", "groups_per_step", "rollouts_per_group", "learning_rate",
                     "judge_model", "max_tokens", "temperature"):  # fmt: skip
            if values[name] is None and name in merged:
                values[name] = merged[name]
        values["use_ruler"] = self.use_ruler or bool(merged.get("use_ruler"))
        if values["run_name"] is None:
            values["run_name"] = f"{self.env}-{time.strftime('%Y%m%d-%H%M%S')}"
        return ARTOptions(**values)
